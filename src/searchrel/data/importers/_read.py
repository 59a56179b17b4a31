"""Reading a source file row by row (CSV/TSV, JSONL, Parquet) with each record's number, and checking columns
and labels."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd

from searchrel.data.importers._report import LINE, ROW, BadInputError

# --- reading sources -----------------------------------------------------------------------------

def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {path}: no such file")
    return path


def read_csv_rows(path: Path, delimiter: str = ",") -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Read a CSV (UTF-8, quoted fields may hold newlines) into strings with ``_row``/``_line``.

    Returns the table and the records whose field count differs from the header's, as (row, reason);
    their fields are kept (missing ones as "", extra ones joined under ``_extra``) so they can be quarantined.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    ragged: list[tuple[int, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise BadInputError(f"{path.name}: the file is empty (no header row)")
            start = reader.line_num + 1
            for rec in reader:
                if rec:  # a blank line is no record
                    if len(rec) != len(header):
                        ragged.append((len(rows) + 1, f"has {len(rec)} fields, the header has {len(header)}"))
                        extra = rec[len(header):]
                        rec = rec[:len(header)] + [""] * (len(header) - len(rec)) + ["\x1f".join(extra)]
                    else:
                        rec = rec + [""]
                    rows.append(rec)
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path.name}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise BadInputError(f"{path.name}, line {reader.line_num}: unreadable CSV ({e})") from None
    df = pd.DataFrame(rows, columns=[*header, "_extra"], dtype=object)
    if not ragged:
        df = df.drop(columns="_extra")
    df[ROW] = range(1, len(df) + 1)
    df[LINE] = lines
    return df, ragged


def read_jsonl_rows(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Read JSON Lines (one object per line; blank lines ignored); unparsable lines come back as bad rows."""
    records: list[dict] = []
    lines: list[int] = []
    bad: list[tuple[int, str]] = []
    try:
        with path.open(encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    rec, why = {"_raw": line.rstrip("\n")}, f"not valid JSON ({e.msg})"
                    bad.append((len(records) + 1, why))
                else:
                    if not isinstance(rec, dict):
                        bad.append((len(records) + 1, "is not a JSON object"))
                        rec = {"_raw": line.rstrip("\n")}
                records.append(rec)
                lines.append(lineno)
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path.name}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    df = df.astype(object)
    df[ROW] = range(1, len(df) + 1)
    df[LINE] = lines
    return df, bad


def read_parquet_rows(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a broken or non-Parquet file
        raise BadInputError(f"{path.name}: not a readable Parquet file ({e})") from None
    df = df.reset_index(drop=True)
    df[ROW] = range(1, len(df) + 1)
    return df


def read_rows(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Read CSV/TSV, JSONL or Parquet by file extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_rows(path)
    if suffix == ".tsv":
        return read_csv_rows(path, delimiter="\t")
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl_rows(path)
    if suffix in (".parquet", ".pq"):
        return read_parquet_rows(path), []
    raise BadInputError(f"{path.name}: unknown file type {suffix or '(none)'}; use .csv, .tsv, .jsonl or .parquet")


def require_columns(path: Path, df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> None:
    have = [c for c in df.columns if c not in (ROW, LINE)]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BadInputError(f"{path.name}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, have))})")


def as_text(s: pd.Series) -> pd.Series:
    """Cell values as strings: null → "", integral floats (ints that met a null) without ".0"."""
    def one(v: object) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return v if isinstance(v, str) else str(v)
    return s.map(one).astype(object)


def parse_labels(values: pd.Series, lo: int, hi: int, what: str = "label") -> tuple[pd.Series, pd.Series]:
    """Integer grades from raw cells ("3", 3, "3.0"); returns (labels, reason per bad row or "")."""
    text = as_text(values).str.strip()
    num = pd.to_numeric(text, errors="coerce")
    reason = pd.Series("", index=values.index, dtype=object)
    not_int = num.isna() | (num != num.round())
    reason[not_int] = [f"{what} {v!r} is not an integer grade" for v in text[not_int]]
    outside = ~not_int & ((num < lo) | (num > hi))
    reason[outside] = [f"{what} {v} lies outside the scale {lo}..{hi}" for v in text[outside]]
    return num.where(reason == "", 0).astype("int64"), reason
