"""Shared importer plumbing: reading source files row by row, bad rows and quarantine, text cleaning, assembly.

Every importer follows the same path: read the source into a DataFrame of raw values with a ``_row`` number
(1-based, header not counted) → drop bad rows through :class:`BadRows` (each with a reason) → clean texts →
build a *pairs* table (one judged query–item pair per row) → :func:`assemble` it into a
:class:`~searchrel.data.dataset.Dataset`. :func:`save_import` writes the dataset and the quarantine file.

Text cleaning (:func:`clean_text`): HTML entities unescaped, tags stripped (``<style>``/``<script>`` bodies
dropped, block tags such as ``<p>``/``<br>``/``<li>`` become line breaks), mojibake fixed with ``ftfy``, and
whitespace collapsed: runs of spaces/tabs become one space, and every run of line breaks (blank lines included)
becomes a single ``\\n`` — paragraphs stay apart, empty lines do not survive. Titles and queries are cleaned the
same way and then put on one line (:func:`clean_line`). Empty text stays ``""``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import ftfy
import pandas as pd
from ftfy.fixes import uncurl_quotes

from searchrel.data.dataset import LIST_FIELDS, Dataset, DatasetError
from searchrel.io import sha256_file
from searchrel.progress import track

ROW = "_row"    # 1-based record number in the source (header not counted)
LINE = "_line"  # physical line where the record starts (CSV/JSONL only), for finding it in an editor
QUARANTINE_NAME = "quarantine.csv"


class BadInputError(DatasetError):
    """The source file is unusable or holds bad rows; the message names the file, the row and the reason."""


# --- the report ----------------------------------------------------------------------------------

@dataclass
class ImportReport:
    """What an import did: every row read is accounted for as imported, skipped (bad) or duplicate."""

    source: str
    rows_read: int = 0
    queries: int = 0
    items: int = 0
    judgments: int = 0
    skipped: int = 0                 # bad rows (quarantined with skip_bad; otherwise the import stops)
    duplicates: int = 0              # repeated judged (query, item) pairs: the first is kept, these dropped
    duplicate_conflicts: int = 0     # ... of which carried a different label than the kept one
    quarantine: Path | None = None   # where the bad rows went (set by save_import)
    out: Path | None = None          # where the dataset went (set by save_import)
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)  # importer-specific counts, e.g. translated_queries
    bad_rows: pd.DataFrame | None = field(default=None, repr=False)  # original columns + row + reason

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) lines for printing; nothing dropped goes unmentioned."""
        lines = [("source", self.source), ("rows read", f"{self.rows_read:,}"), ("queries", f"{self.queries:,}"),
                 ("items", f"{self.items:,}"), ("judgments", f"{self.judgments:,}"),
                 ("bad rows skipped", f"{self.skipped:,}"),
                 ("duplicate pairs dropped (first kept)",
                  f"{self.duplicates:,} ({self.duplicate_conflicts:,} with a different label)")]
        lines += [(k.replace("_", " "), f"{v:,}") for k, v in self.extra.items()]
        if self.quarantine is not None:
            lines.append(("quarantine", str(self.quarantine)))
        if self.out is not None:
            lines.append(("dataset", str(self.out)))
        lines.append(("time", f"{self.seconds:.1f} s"))
        return lines


# --- bad rows ------------------------------------------------------------------------------------

class BadRows:
    """Collects bad rows with a reason each; ``finish`` stops at the first one unless bad rows are skipped."""

    def __init__(self, source: Path, raw: pd.DataFrame, skip_bad: bool):
        self.source, self.raw, self.skip_bad = source, raw, skip_bad
        self.rows: list[int] = []
        self.reasons: list[str] = []

    def add(self, row: int, reason: str) -> None:
        self.rows.append(int(row))
        self.reasons.append(reason)

    def drop(self, df: pd.DataFrame, mask: pd.Series, reason: str | pd.Series) -> pd.DataFrame:
        """Record the rows of ``df`` where ``mask`` holds (reason: one text, or one per row) and return the rest."""
        mask = mask.fillna(True).astype(bool)
        if mask.any():
            why = reason[mask] if isinstance(reason, pd.Series) else pd.Series(reason, index=df.index[mask])
            self.rows.extend(int(r) for r in df.loc[mask, ROW])
            self.reasons.extend(str(r) for r in why)
        return df[~mask]

    def __len__(self) -> int:
        return len(self.rows)

    def finish(self) -> pd.DataFrame | None:
        """Raise on the earliest bad row unless skipping; return the quarantine table (or None if none)."""
        if not self.rows:
            return None
        order = sorted(range(len(self.rows)), key=self.rows.__getitem__)
        if not self.skip_bad:
            i = order[0]
            more = f"; {len(self.rows) - 1:,} more bad row(s)" if len(self.rows) > 1 else ""
            raise BadInputError(f"{self.source.name}, {self.where(self.rows[i])}: {self.reasons[i]}{more} "
                                f"(use --skip-bad to quarantine bad rows and go on)")
        reasons = pd.DataFrame({"row": [self.rows[i] for i in order], "reason": [self.reasons[i] for i in order]})
        original = self.raw.set_index(ROW).drop(columns=[LINE], errors="ignore")
        original = original.loc[reasons["row"]].reset_index(drop=True)
        original = original.drop(columns=[c for c in ("row", "reason") if c in original])
        return pd.concat([original, reasons], axis=1)

    def where(self, row: int) -> str:
        if LINE in self.raw:
            line = self.raw.loc[self.raw[ROW] == row, LINE]
            if len(line):
                return f"row {row} (line {int(line.iloc[0])})"
        return f"row {row}"


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


# --- text cleaning -------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
               "dt", "dd", "section", "article", "blockquote", "pre", "hr"}
_SKIP_TAGS = {"style", "script", "head", "title"}
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newline (tabs, nbsp, ...)
_BREAKS = re.compile(r"\s*\n\s*")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Text content of an HTML fragment (entities unescaped); plain text passes through unchanged."""
    if _TAG_START.search(text):
        parser = _TextOnly()
        parser.feed(text)
        parser.close()
        return "".join(parser.parts)
    return html.unescape(text) if "&" in text else text


# UTF-8 read as Windows-1252, as ftfy sometimes leaves it: ftfy judges each line on its own, so a lone "â„¢"
# (™) in an otherwise clean line is not fixed. Only the leads Â/Ã (U+0080..U+00FF) and â (U+2000..U+2FFF), the
# common ones in English text, are tried; a run that does not decode as UTF-8 is left alone.
_CONT = "\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_LEFTOVER = re.compile(f"[ÂÃ][{_CONT}]|â[{_CONT}]{{2}}")
_STRAY_A = re.compile(r"(?<=[a-z])Â(?=['\s])")  # "GodÂ's": the rest of a quote that a re-encoding lost


def _redecode(m: re.Match) -> str:
    try:
        return m.group(0).encode("cp1252").decode("utf-8")
    except UnicodeError:
        return m.group(0)


def fix_mojibake(text: str) -> str:
    """ftfy, then the leftovers it judged too sparse to fix; curly quotes become straight ones."""
    text = ftfy.fix_text(text, unescape_html=False, uncurl_quotes=False)
    text = _STRAY_A.sub("", _LEFTOVER.sub(_redecode, text))
    return uncurl_quotes(text)


def clean_text(text: object) -> str:
    """HTML stripped, mojibake fixed, whitespace collapsed; line breaks kept as a single ``\\n``."""
    if not isinstance(text, str) or not text:
        return ""
    text = strip_html(text)
    if not text.isascii():  # pure ASCII cannot hold mojibake; skipping ftfy there saves most of its cost
        text = fix_mojibake(text)
    text = _SPACES.sub(" ", text)
    return _BREAKS.sub("\n", text).strip()


def clean_line(text: object) -> str:
    """:func:`clean_text` on one line (for titles and queries)."""
    return clean_text(text).replace("\n", " ")


def clean_column(s: pd.Series, one_line: bool, what: str) -> pd.Series:
    """Clean a column, each distinct value once (sources repeat products and queries a lot)."""
    uniq = pd.unique(s)
    fn = clean_line if one_line else clean_text
    it = track(uniq, f"cleaning {what}") if len(uniq) > 20_000 else uniq
    cleaned = {v: fn(v) for v in it}
    return s.map(cleaned).astype(object)


def stable_id(*parts: str, n: int = 16) -> str:
    """A short hex id from text parts: the same parts give the same id on every run and machine."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=n // 2).hexdigest()


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a source file's sha256, for a dataset's provenance line."""
    return sha256_file(path)[:16]


# --- assembly ------------------------------------------------------------------------------------

def assemble(pairs: pd.DataFrame, fields: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Queries, items and judgments from a pairs table.

    ``pairs`` columns: query_id, text, language, country, group_id, item_id, item_language, the item
    ``fields`` (title, description, ...), label, rater_variance, ``_row``. A repeated (query_id, item_id) keeps its
    first row; a query or item whose attributes differ between rows keeps those of its first row. Counts of both
    come back so the report can say so.
    """
    pairs = pairs.sort_values(ROW, kind="stable")
    dup = pairs.duplicated(["query_id", "item_id"], keep="first")
    kept = pairs[~dup]
    first_label = kept.set_index(["query_id", "item_id"])["label"]
    dropped = pairs[dup]
    conflicts = 0
    if len(dropped):
        key = pd.MultiIndex.from_frame(dropped[["query_id", "item_id"]])
        conflicts = int((first_label.reindex(key).to_numpy() != dropped["label"].to_numpy()).sum())
    qcols = ["query_id", "text", "language", "country", "group_id"]
    queries = kept.drop_duplicates("query_id")[qcols].reset_index(drop=True)
    query_variants = int(kept.drop_duplicates(qcols)["query_id"].duplicated().sum())
    icols = ["item_id", *fields, "item_language"]
    items = kept.drop_duplicates("item_id")[icols].rename(columns={"item_language": "language"})
    # lists cannot be compared by drop_duplicates; item_language is often a guess from the row (the query's)
    compared = [c for c in icols if c not in LIST_FIELDS and c != "item_language"]
    for core in ("title", "description"):
        if core not in items:
            items.insert(1, core, "")
    item_variants = int(kept.drop_duplicates(compared)["item_id"].duplicated().sum())
    judgments = kept[["query_id", "item_id", "label", "rater_variance"]].reset_index(drop=True)
    judgments["label"] = judgments["label"].astype("int64")
    judgments["rater_variance"] = judgments["rater_variance"].astype("float64")
    counts = {"duplicates": int(dup.sum()), "duplicate_conflicts": conflicts,
              "query_variants": query_variants, "item_variants": item_variants}
    return queries, items.reset_index(drop=True), judgments, counts


def fill_report(report: ImportReport, ds: Dataset, counts: dict[str, int], bad: pd.DataFrame | None,
                started: float) -> ImportReport:
    report.queries, report.items, report.judgments = len(ds.queries), len(ds.items), len(ds.judgments)
    report.duplicates, report.duplicate_conflicts = counts["duplicates"], counts["duplicate_conflicts"]
    for k in ("query_variants", "item_variants"):
        if counts.get(k):  # attributes that differed between rows of one query/item; the first row's were kept
            report.extra[k.replace("variants", "rows_with_differing_attributes_first_kept")] = counts[k]
    report.bad_rows = bad
    report.skipped = 0 if bad is None else len(bad)
    report.seconds = time.perf_counter() - started
    return report


def languages_of(queries: pd.DataFrame, items: pd.DataFrame) -> list[str]:
    return sorted(set(queries["language"].dropna()) | set(items["language"].dropna()))


# --- saving --------------------------------------------------------------------------------------

def save_import(ds: Dataset, report: ImportReport, out: str | Path, quarantine: str | Path | None = None) -> Path:
    """Save the dataset atomically at ``out``, then write bad rows (if any) to ``quarantine``.

    The quarantine file defaults to ``out/quarantine.csv``: it travels with the dataset, and a re-import that
    replaces ``out`` also replaces it (or leaves none when no row was bad). Refuses to replace a directory that
    is not a searchrel dataset, since saving replaces ``out`` wholesale.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "dataset.json").exists())):
        raise BadInputError(f"{out} exists and is not a searchrel dataset; refusing to replace it (pick a new path)")
    started = time.perf_counter()
    ds.save(out)
    report.out = out
    if report.bad_rows is not None and len(report.bad_rows):
        q = Path(quarantine) if quarantine is not None else out / QUARANTINE_NAME
        q.parent.mkdir(parents=True, exist_ok=True)
        tmp = q.with_name(f".{q.name}.tmp")
        report.bad_rows.to_csv(tmp, index=False)
        shutil.move(tmp, q)
        report.quarantine = q
    report.seconds += time.perf_counter() - started
    return out
