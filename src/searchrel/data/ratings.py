"""The rating sheet: the CSV that raters fill in, its validation against a dataset, the store that imported ratings
land in, and how ratings become judgments.

A sheet has one row per (query, item) to grade. ``searchrel rate suggest`` writes one with the ``grade`` and
``rater`` columns blank; the workbench writes the same format as a rater grades with key presses::

    query_id, item_id, language, query, item_title, reason, grade, rater    (further columns are kept as context)

Only ``query_id``, ``item_id``, ``grade`` and ``rater`` are read back. Validation collects every problem of a sheet
at once, each with its row (the data record, header not counted) and line, and what to do about it: unknown query
or item ids, a grade that is empty or off the dataset's scale, an empty rater, the same rater twice on one pair
(in the sheet, or already imported), and queries outside the train split — ratings of valid or test queries would
change what models are selected and measured on, so they are refused.

The store (``ratings.parquet``: ``query_id, item_id, grade, rater, source, imported``) keeps every rating with who
gave it and from which sheet. ``merge_ratings`` turns it into judgments: per pair the median of its ratings
(halves round up) with their variance as ``rater_variance``; a rated pair's label replaces the dataset's.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.data.dataset import Dataset, DatasetError

SHEET_COLUMNS = ("query_id", "item_id", "language", "query", "item_title", "reason", "grade", "rater")
REQUIRED = ("query_id", "item_id", "grade", "rater")
STORE_COLUMNS = ("query_id", "item_id", "grade", "rater", "source", "imported")
SHOWN = 20  # problems listed in one error message; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One bad row of a sheet: where it is and what to fix."""

    row: int  # the data record, 1-based, header not counted
    line: int  # the physical line it starts on (a quoted field may span lines)
    message: str

    def __str__(self) -> str:
        return f"row {self.row} (line {self.line}): {self.message}"


class RatingsError(DatasetError):
    """A sheet that cannot be imported: every problem, row-numbered, with what to fix."""

    def __init__(self, source: str, problems: list[Problem]):
        self.problems = problems
        lines = [str(p) for p in problems[:SHOWN]]
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(lines) + more)


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The sheet's rows as text (``_row``, ``_line`` added); a missing required column is an error."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:  # a sheet saved by a spreadsheet may carry a BOM
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: the sheet is empty (expected a header: {', '.join(SHEET_COLUMNS)})")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DatasetError(f"{path}: column(s) {', '.join(missing)} missing (has: {', '.join(header)}); a "
                               f"sheet needs {', '.join(REQUIRED)}")
        rows, starts, line = [], [], reader.line_num + 1
        for record in reader:
            if any(v.strip() for v in record):  # blank lines at the end of a spreadsheet export
                rows.append(dict(zip(header, (v.strip() for v in record))))
                starts.append(line)
            line = reader.line_num + 1
    df = pd.DataFrame(rows, columns=header).fillna("")
    return df.assign(_row=np.arange(1, len(df) + 1), _line=starts)


def validate_ratings(sheet: pd.DataFrame, ds: Dataset, source: str, known: pd.DataFrame | None = None,
                     skip_unrated: bool = False) -> tuple[pd.DataFrame, int]:
    """``(ratings, unrated)``: the sheet's graded rows as ``query_id, item_id, grade, rater``, and how many rows
    had no grade (left out with ``skip_unrated``, else errors). ``known`` is the store the ratings would join: a
    rater already in it for a pair is a duplicate. Raises ``RatingsError`` listing every bad row."""
    scale = ds.info.scale
    split = ds.split_of()
    items = set(ds.items["item_id"].astype(str))
    seen: dict[tuple[str, str, str], int] = {}
    before = {} if known is None or known.empty else {
        (q, i, r): s for q, i, r, s in zip(known["query_id"], known["item_id"], known["rater"], known["source"])}
    problems: list[Problem] = []
    keep, unrated = [], 0
    for rec in sheet.to_dict("records"):
        qid, iid, grade, rater = (str(rec[c]) for c in REQUIRED)
        if not grade and skip_unrated:
            unrated += 1
            continue
        msgs: list[str] = []  # what is wrong with this row
        keep_ids = "keep the ids the sheet came with"
        if not qid:
            msgs.append(f"query_id is empty: {keep_ids}")
        elif qid not in split.index:
            msgs.append(f"query_id {qid!r} is not a query of dataset {ds.info.name!r}: {keep_ids}")
        elif split[qid] != "train":
            msgs.append(f"query {qid} is in the {split[qid]} split: ratings of held-out queries would leak into "
                        f"evaluation; delete the row")
        if not iid:
            msgs.append(f"item_id is empty: {keep_ids}")
        elif iid not in items:
            msgs.append(f"item_id {iid!r} is not an item of dataset {ds.info.name!r}: {keep_ids}")
        value = None
        if not grade:
            msgs.append(f"grade is empty: grade the pair {scale.min}..{scale.max}, or import with --skip-unrated")
        else:
            try:
                value = float(grade)
            except ValueError:
                value = None
            if value is None or value != round(value) or not scale.min <= value <= scale.max:
                msgs.append(f"grade {grade!r} is off the scale: a whole number {scale.min}..{scale.max} "
                            f"({', '.join(f'{g} {n}' for g, n in zip(scale.grades, scale.names))})")
        if not rater:
            msgs.append("rater is empty: write who graded the pair (a name or an id)")
        key = (qid, iid, rater)
        if rater and qid and iid:
            if key in seen:
                msgs.append(f"rater {rater!r} grades {qid} / {iid} twice (also row {seen[key]}): keep one of the "
                            f"two rows")
            elif key in before:
                msgs.append(f"rater {rater!r} already rated {qid} / {iid} (imported from {before[key]}): delete the "
                            f"row, or give a second rater's grade under their own name")
            seen.setdefault(key, rec["_row"])
        problems += [Problem(rec["_row"], rec["_line"], m) for m in msgs]
        if not msgs:
            keep.append({"query_id": qid, "item_id": iid, "grade": int(value), "rater": rater})
    if problems:
        raise RatingsError(source, problems)
    return pd.DataFrame(keep, columns=["query_id", "item_id", "grade", "rater"]), unrated


# --- the store -----------------------------------------------------------------------------------

def read_store(path: str | Path) -> pd.DataFrame:
    """Every imported rating (``STORE_COLUMNS``); empty when nothing was imported yet."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "grade" else "object") for c in STORE_COLUMNS})
    return pd.read_parquet(path)


def append_ratings(path: str | Path, ratings: pd.DataFrame, source: str) -> pd.DataFrame:
    """Add validated ratings to the store at ``path`` (written to a temporary file and renamed: a store is never
    half-written); return the whole store."""
    path = Path(path)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    new = ratings[["query_id", "item_id", "grade", "rater"]].assign(source=source, imported=stamp)
    old = read_store(path)
    store = new if old.empty else pd.concat([old, new], ignore_index=True)
    store = store.astype({"grade": "int64"})[list(STORE_COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        store.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return store


def aggregate(ratings: pd.DataFrame) -> pd.DataFrame:
    """One judgment per rated pair: ``query_id, item_id, label`` (the median grade, halves up), ``rater_variance``
    (of the grades, 0 for one rater) and ``n_ratings``."""
    if ratings.empty:
        return pd.DataFrame(columns=["query_id", "item_id", "label", "rater_variance", "n_ratings"])
    g = ratings.groupby(["query_id", "item_id"], sort=True)["grade"]
    out = pd.DataFrame({"label": np.floor(g.median().astype(float) + 0.5).astype("int64"),
                        "rater_variance": g.var(ddof=0).astype(float), "n_ratings": g.size()})
    return out.reset_index()


def merge_ratings(ds: Dataset, ratings: pd.DataFrame) -> tuple[Dataset, dict]:
    """The dataset with ``ratings`` (store rows) as judgments, and what changed: rated pairs the dataset did not
    judge are added, rated pairs it did judge take the ratings' label (newer, and asked for)."""
    agg = aggregate(ratings)
    j = ds.judgments
    key = j["query_id"].astype(str) + "\0" + j["item_id"].astype(str)
    rated = set(agg["query_id"].astype(str) + "\0" + agg["item_id"].astype(str))
    replaced = key.isin(rated)
    cols = list(j.columns) if "rater_variance" in j.columns else [*j.columns, "rater_variance"]
    merged = pd.concat([j[~replaced.to_numpy()], agg.drop(columns="n_ratings")], ignore_index=True)
    merged = merged.reindex(columns=cols)
    merged["label"] = merged["label"].astype("int64")
    out = ds.with_judgments(merged.reset_index(drop=True)).validate()
    return out, {"ratings": len(ratings), "rated_pairs": len(agg), "new_pairs": int(len(agg) - replaced.sum()),
                 "replaced_labels": int(replaced.sum()), "judgments": int(len(merged))}


def import_ratings(sheet: str | Path, ds: Dataset, store: str | Path, skip_unrated: bool = False) -> dict:
    """Validate a completed sheet against ``ds`` and the store, then append it to the store; what was imported."""
    sheet = Path(sheet)
    ratings, unrated = validate_ratings(read_sheet(sheet), ds, str(sheet), read_store(store), skip_unrated)
    if ratings.empty:
        raise DatasetError(f"{sheet}: no graded row to import ({unrated} row(s) without a grade)")
    all_ratings = append_ratings(store, ratings, sheet.name)
    language = ratings["query_id"].map(ds.queries.set_index("query_id")["language"])
    return {"ratings": int(len(ratings)), "pairs": int(ratings[["query_id", "item_id"]].drop_duplicates().shape[0]),
            "queries": int(ratings["query_id"].nunique()), "raters": sorted(ratings["rater"].unique().tolist()),
            "unrated_rows": unrated,
            "by_language": {k: int(v) for k, v in language.value_counts().sort_index().items()},
            "store_ratings": int(len(all_ratings)), "store": str(store)}


# --- writing sheets ------------------------------------------------------------------------------

def write_sheet(rows: pd.DataFrame, path: str | Path) -> Path:
    """Write ``rows`` as a sheet: the sheet's columns first (blank where ``rows`` lacks them), then the rest."""
    path = Path(path)
    out = rows.copy()
    for c in SHEET_COLUMNS:
        if c not in out:
            out[c] = ""
    out = out[[*SHEET_COLUMNS, *[c for c in rows.columns if c not in SHEET_COLUMNS]]]
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


def upsert_sheet_row(path: str | Path, row: dict) -> int:
    """Put one graded row into the sheet at ``path`` (created with a header when missing), replacing the same
    rater's earlier grade of the same pair, so a corrected key press never becomes a duplicate; returns the
    number of rows. The caller serialises writers."""
    path = Path(path)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(
        columns=list(SHEET_COLUMNS))
    new = pd.DataFrame([{c: str(row.get(c, "")) for c in rows.columns.union(list(row), sort=False)}])
    same = ((rows["query_id"] == new.at[0, "query_id"]) & (rows["item_id"] == new.at[0, "item_id"])
            & (rows["rater"] == new.at[0, "rater"])) if len(rows) else pd.Series([], dtype=bool)
    rows = pd.concat([rows[~same.to_numpy()], new], ignore_index=True).fillna("")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_sheet(rows, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return len(rows)
