"""Import the CrowdFlower Search Results Relevance CSV (1–4 scale), optionally with query translations.

Source columns: ``id, query, product_title, product_description, median_relevance, relevance_variance``.

- Texts are cleaned (HTML, mojibake, whitespace; see ``_clean``); an empty description stays ``""``.
- Products carry no id: an item is keyed by its cleaned (title, description), hashed to a stable 16-hex id, so a
  product judged for several queries is one item. Queries are keyed by cleaned text (language ``en``).
- A (query, item) pair judged twice keeps its first row; the report counts the dropped repeats and how many
  of them disagreed on the label.
- Bad rows: query empty, label not an integer in 1..4, variance not a number ≥ 0, product with neither title
  nor description, wrong field count. By default the import stops at the first; with ``skip_bad`` they go to
  the quarantine table.
- ``translations``: JSON Lines of ``{"en": query, "es": ..., "de": ...}``. Each English query found there gains
  one query per other language (``group_id`` = the English query's, so a split keeps them together) with the
  English judgments copied (same items, same labels). Untranslated queries are counted, not errors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from searchrel.data.dataset import Dataset, DatasetInfo, Scale
from searchrel.data.importers._assemble import assemble, file_digest, fill_report, languages_of, stable_id
from searchrel.data.importers._clean import clean_column, clean_line
from searchrel.data.importers._read import as_text, parse_labels, read_csv_rows, require_columns, require_file
from searchrel.data.importers._report import ROW, BadInputError, BadRows, ImportReport
from searchrel.data.splits import make_splits

COLUMNS = ("id", "query", "product_title", "product_description", "median_relevance", "relevance_variance")
SCALE = Scale(min=1, max=4)
RELEVANT_MIN = 3
LANGUAGE = "en"


def import_crowdflower(csv_path: str | Path, *, translations: str | Path | None = None, skip_bad: bool = False,
                       name: str = "crowdflower") -> tuple[Dataset, ImportReport]:
    """Read a CrowdFlower CSV (and optional translations) into a validated Dataset with splits."""
    started = time.perf_counter()
    path = require_file(csv_path, "CrowdFlower CSV")
    raw, ragged = read_csv_rows(path)
    require_columns(path, raw, [c for c in COLUMNS if c != "id"])
    report = ImportReport(source=str(path), rows_read=len(raw))
    bad = BadRows(path, raw, skip_bad)
    df = raw
    if ragged:
        df = bad.drop(df, df[ROW].isin([r for r, _ in ragged]), df[ROW].map(dict(ragged)))

    df = df.assign(text=clean_column(as_text(df["query"]), True, "queries"),
                   title=clean_column(as_text(df["product_title"]), True, "titles"),
                   description=clean_column(as_text(df["product_description"]), False, "descriptions"))
    df = bad.drop(df, df["text"] == "", "query is empty")
    df = bad.drop(df, (df["title"] == "") & (df["description"] == ""), "product has neither title nor description")
    labels, why = parse_labels(df["median_relevance"], SCALE.min, SCALE.max, "median_relevance")
    df = bad.drop(df.assign(label=labels), why != "", why)
    var_text = as_text(df["relevance_variance"]).str.strip()
    variance = pd.to_numeric(var_text, errors="coerce")
    var_bad = (var_text != "") & (variance.isna() | (variance < 0))
    df = bad.drop(df.assign(rater_variance=variance), var_bad,
                  var_text.map(lambda v: f"relevance_variance {v!r} is not a number ≥ 0"))
    quarantined = bad.finish()

    qid = df["text"].map(lambda t: stable_id("q", LANGUAGE, t))
    pairs = df.assign(query_id=qid, language=LANGUAGE, country=None, group_id=qid, item_language=LANGUAGE,
                      item_id=[stable_id(t, d) for t, d in zip(df["title"], df["description"])])
    queries, items, judgments, counts = assemble(pairs, ["title", "description"])
    if translations is not None:
        queries, judgments = _add_translations(Path(translations), queries, judgments, report)

    info = DatasetInfo(name=name, scale=SCALE, relevant_min=RELEVANT_MIN, languages=languages_of(queries, items),
                       source=f"crowdflower {path.name} sha256:{file_digest(path)}",
                       description="CrowdFlower Search Results Relevance (median of 3+ raters, 1–4)"
                                   + (f"; queries translated from {Path(translations).name}" if translations else ""))
    ds = Dataset(info=info, items=items, queries=queries, judgments=judgments)
    ds.splits = make_splits(ds.queries)
    ds.validate()
    return ds, fill_report(report, ds, counts, quarantined, started)


def read_translations(path: str | Path) -> dict[str, dict[str, str]]:
    """English query (cleaned) → {language: translated query (cleaned)} from a JSON Lines file."""
    path = require_file(path, "translations file")
    table: dict[str, dict[str, str]] = {}
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInputError(f"{path.name}, line {lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("en"), str) or not rec["en"].strip():
                raise BadInputError(f"{path.name}, line {lineno}: expected an object with an \"en\" query text")
            en = clean_line(rec["en"])
            other = {}
            for lang, text in rec.items():
                if lang == "en":
                    continue
                if not isinstance(text, str) or not clean_line(text):
                    raise BadInputError(f"{path.name}, line {lineno}: translation {lang!r} is empty or not text")
                other[str(lang)] = clean_line(text)
            if en in table and table[en] != other:
                raise BadInputError(f"{path.name}, line {lineno}: query {en!r} appears again with other translations")
            table[en] = other
    return table


def _add_translations(path: Path, queries: pd.DataFrame, judgments: pd.DataFrame,
                      report: ImportReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = read_translations(path)
    new_queries, new_judgments = [], []
    by_query = judgments.groupby("query_id", sort=False)
    untranslated = 0
    for q in queries.itertuples(index=False):
        langs = table.get(q.text)
        if not langs:
            untranslated += 1
            continue
        for lang, text in langs.items():
            # the id comes from the source query, so two queries that translate alike stay two queries
            tid = stable_id("q", lang, q.query_id)
            new_queries.append({"query_id": tid, "text": text, "language": lang, "country": None,
                                "group_id": q.group_id})
            new_judgments.append(by_query.get_group(q.query_id).assign(query_id=tid))
    report.extra["translated_queries_added"] = len(new_queries)
    report.extra["queries_without_translation"] = untranslated
    report.extra["translation_entries_unused"] = len(set(table) - set(queries["text"]))
    if new_queries:
        texts = pd.DataFrame(new_queries)
        report.extra["translated_texts_shared_by_several_queries"] = int(
            texts.duplicated(["text", "language"], keep=False).sum())
        queries = pd.concat([queries, texts], ignore_index=True)
        judgments = pd.concat([judgments, *new_judgments], ignore_index=True)
    return queries, judgments
