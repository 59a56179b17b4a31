"""Assembling an import into a dataset and saving it: stable ids, the pairs table turned into items, queries
and judgments, the report's totals, and the dataset plus its quarantine file on disk.

Every importer follows the same path: read the source into raw rows (``_read``) → set bad rows aside
(``_report.BadRows``) → clean texts (``_clean``) → build a *pairs* table (one judged query–item pair per row) →
:func:`assemble` it → :func:`save_import`."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pandas as pd

from searchrel.data.dataset import LIST_FIELDS, Dataset
from searchrel.data.importers._report import QUARANTINE_NAME, ROW, BadInputError, ImportReport
from searchrel.io import sha256_file


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
