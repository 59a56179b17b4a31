"""Import the Amazon Shopping Queries (ESCI) dataset: the examples and products Parquet files as published.

Examples: ``example_id, query, query_id, product_id, product_locale, esci_label, small_version, large_version,
split``. Products: ``product_id, product_title, product_description, product_bullet_point, product_brand,
product_color, product_locale``.

- Labels E/S/C/I → 4/3/2/1 (exact, substitute, complement, irrelevant); relevant_min 3 (exact or substitute).
- Locales us/es/jp → language en/es/ja and country US/ES/JP, for queries and items alike.
- Items are keyed by (product_id, product_locale): ``item_id`` is ``"{product_id}-{locale}"``. Fields: title,
  description (HTML cleaned), bullet_point, brand, color; missing text is ``""``.
- Queries keep ESCI's ``query_id``; rows naming a query_id with another text or locale are bad rows.
- Splits keep ESCI's own: test → test; train queries are cut into train/valid (``valid_fraction``), hashed per
  query and stratified by language, so the cut is deterministic. A query whose rows disagree goes to test.
- ``small_version``: keep only rows with ``small_version == 1`` (the "reduced" task-1 set).
- Bad rows (of examples): label not E/S/C/I, unknown locale, empty query, product missing from the products file,
  split not train/test. Products repeated under one key keep their first row (counted).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from searchrel.data.dataset import Dataset, DatasetInfo, Scale
from searchrel.data.importers._assemble import assemble, file_digest, fill_report, languages_of
from searchrel.data.importers._clean import clean_column
from searchrel.data.importers._read import as_text, read_parquet_rows, require_columns, require_file
from searchrel.data.importers._report import BadRows, ImportReport
from searchrel.data.splits import make_splits

EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label")
PRODUCT_COLUMNS = ("product_id", "product_title", "product_description", "product_bullet_point", "product_brand",
                   "product_color", "product_locale")
LABELS = {"E": 4, "S": 3, "C": 2, "I": 1}
SCALE = Scale(min=1, max=4, names=["irrelevant", "complement", "substitute", "exact"])
RELEVANT_MIN = 3
LOCALES = {"us": ("en", "US"), "es": ("es", "ES"), "jp": ("ja", "JP")}
# item field ← products column, and whether it keeps line breaks
FIELDS = {"title": ("product_title", True), "description": ("product_description", False),
          "bullet_point": ("product_bullet_point", False), "brand": ("product_brand", True),
          "color": ("product_color", True)}


def import_esci(examples: str | Path, products: str | Path, *, small_version: bool = False, skip_bad: bool = False,
                valid_fraction: float = 0.1, name: str = "esci") -> tuple[Dataset, ImportReport]:
    """Read the ESCI examples and products Parquet files into a validated Dataset with ESCI's splits."""
    started = time.perf_counter()
    ex_path, pr_path = require_file(examples, "examples file"), require_file(products, "products file")
    raw = read_parquet_rows(ex_path)
    require_columns(ex_path, raw, EXAMPLE_COLUMNS)
    prod = read_parquet_rows(pr_path)
    require_columns(pr_path, prod, PRODUCT_COLUMNS)
    report = ImportReport(source=f"{ex_path} + {pr_path}", rows_read=len(raw))
    bad = BadRows(ex_path, raw, skip_bad)

    df = raw
    if small_version:
        require_columns(ex_path, raw, ["small_version"])
        keep = pd.to_numeric(df["small_version"], errors="coerce") == 1
        report.extra["rows_outside_small_version"] = int((~keep).sum())
        df = df[keep]
    df = df.assign(locale=as_text(df["product_locale"]).str.strip().str.lower(),
                   esci=as_text(df["esci_label"]).str.strip().str.upper(),
                   product=as_text(df["product_id"]).str.strip(),
                   source_qid=as_text(df["query_id"]).str.strip())
    df = bad.drop(df, ~df["esci"].isin(list(LABELS)), df["esci"].map(lambda v: f"esci_label {v!r} is not E/S/C/I"))
    df = bad.drop(df, ~df["locale"].isin(list(LOCALES)),
                  df["locale"].map(lambda v: f"product_locale {v!r} is not one of {', '.join(LOCALES)}"))
    df = bad.drop(df, df["source_qid"] == "", "query_id is empty")
    df = bad.drop(df, df["product"] == "", "product_id is empty")
    df = df.assign(text=clean_column(as_text(df["query"]), True, "queries"))
    df = bad.drop(df, df["text"] == "", "query is empty")
    has_split = "split" in df
    if has_split:
        df = df.assign(src_split=as_text(df["split"]).str.strip().str.lower())
        df = bad.drop(df, ~df["src_split"].isin(["train", "test"]),
                      df["src_split"].map(lambda v: f"split {v!r} is not train or test"))
    # one query_id, one (text, locale): later rows that disagree are bad rows
    first = df.drop_duplicates("source_qid").set_index("source_qid")[["text", "locale"]]
    clash = ((df["text"] != df["source_qid"].map(first["text"]))
             | (df["locale"] != df["source_qid"].map(first["locale"])))
    df = bad.drop(df, clash, df["source_qid"].map(lambda q: f"query_id {q} already names query {first.at[q, 'text']!r}"
                                                            f" ({first.at[q, 'locale']})"))

    items = _products(prod, report)
    df = df.assign(item_id=df["product"] + "-" + df["locale"])
    df = bad.drop(df, ~df["item_id"].isin(items.index),
                  df["item_id"].map(lambda i: f"product {i.rsplit('-', 1)[0]} ({i.rsplit('-', 1)[1]}) "
                                              f"is not in {pr_path.name}"))
    quarantined = bad.finish()

    lang = df["locale"].map(lambda l: LOCALES[l][0])
    pairs = df.assign(query_id=df["source_qid"], language=lang, country=df["locale"].map(lambda l: LOCALES[l][1]),
                      group_id=None, item_language=lang, label=df["esci"].map(LABELS), rater_variance=float("nan"))
    pairs = pairs.join(items[list(FIELDS)], on="item_id")
    queries, items_t, judgments, counts = assemble(pairs, list(FIELDS))
    report.extra["products_not_judged"] = len(items) - len(items_t)

    info = DatasetInfo(name=name, scale=SCALE, relevant_min=RELEVANT_MIN, languages=languages_of(queries, items_t),
                       source=f"esci {ex_path.name} sha256:{file_digest(ex_path)} + {pr_path.name} "
                              f"sha256:{file_digest(pr_path)}",
                       description="Amazon Shopping Queries (ESCI): E/S/C/I → 4/3/2/1"
                                   + ("; small_version only" if small_version else ""))
    ds = Dataset(info=info, items=items_t, queries=queries, judgments=judgments)
    ds.splits = _splits(ds.queries, df if has_split else None, valid_fraction, report)
    ds.validate()
    return ds, fill_report(report, ds, counts, quarantined, started)


def _products(prod: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Products indexed by item_id with cleaned fields; a repeated key keeps its first row (counted)."""
    locale = as_text(prod["product_locale"]).str.strip().str.lower()
    key = as_text(prod["product_id"]).str.strip() + "-" + locale
    dup = key.duplicated()
    report.extra["products_repeated_first_kept"] = int(dup.sum())
    prod, key = prod[~dup], key[~dup]
    out = pd.DataFrame(index=pd.Index(key.to_numpy(), name="item_id"))
    for fname, (col, one_line) in FIELDS.items():
        out[fname] = clean_column(as_text(prod[col]), one_line, f"product {fname}s").to_numpy()
    return out


def _splits(queries: pd.DataFrame, rows: pd.DataFrame | None, valid_fraction: float,
            report: ImportReport) -> pd.DataFrame:
    if rows is None:  # no split column: our default query-grouped split
        return make_splits(queries)
    per_query = rows.groupby("source_qid")["src_split"].agg(lambda s: "test" if (s == "test").any() else "train")
    mixed = rows.groupby("source_qid")["src_split"].nunique()
    report.extra["queries_with_mixed_split_rows_sent_to_test"] = int((mixed > 1).sum())
    split = queries["query_id"].map(per_query)
    train_q = queries[split == "train"]
    out = pd.DataFrame({"query_id": queries["query_id"], "split": split})
    if len(train_q):
        carved = make_splits(train_q, fractions=(1 - valid_fraction, valid_fraction, 0.0)).set_index("query_id")
        out.loc[split == "train", "split"] = train_q["query_id"].map(carved["split"]).to_numpy()
    return out.reset_index(drop=True)
