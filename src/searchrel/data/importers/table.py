"""Import any CSV/TSV, JSONL or Parquet file with one judged (query, item) pair per row, given a column mapping.

- Queries: rows with the same cleaned query text and language are one query (id hashed from both).
- Items: rows with the same ``item_id`` column value are one item; without an id column, rows with the same
  cleaned field texts are one item (id hashed from them). An item's fields and language come from its first row.
- Language: from the ``language`` column if given (an empty cell is a bad row), else ``default_language``.
  Items take ``item_language`` if given, else the language of the row that first mentions them.
- ``query_group``: rows with equal values there share a ``group_id`` (e.g. a query and its translations), so a
  split keeps them together; an empty cell leaves the query in a group of its own.
- Labels must be integers within ``scale``; anything else is a bad row, as is an empty query or item id.
- Field ``description`` (and every field but ``title``) keeps line breaks; ``title`` is put on one line.
  ``board_titles``/``engaged_queries`` take lists (a list cell, a JSON list in text, or one text → one element).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pydantic import ValidationError

from searchrel.data.dataset import LIST_FIELDS, Dataset, DatasetInfo, Scale
from searchrel.data.importers._assemble import assemble, file_digest, fill_report, languages_of, stable_id
from searchrel.data.importers._clean import clean_column, clean_line
from searchrel.data.importers._read import as_text, parse_labels, read_rows, require_columns, require_file
from searchrel.data.importers._report import ROW, BadInputError, BadRows, ImportReport
from searchrel.data.splits import make_splits

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"item_id", "language"}


def parse_fields(specs: list[str]) -> dict[str, str]:
    """``["title=product_title", ...]`` → {field name: source column}."""
    fields: dict[str, str] = {}
    for spec in specs:
        name, sep, col = spec.partition("=")
        name, col = name.strip(), col.strip()
        if not sep or not name or not col:
            raise BadInputError(f"--field must look like NAME=COLUMN (e.g. title=product_title), got {spec!r}")
        if not _NAME.match(name) or name in _RESERVED:
            raise BadInputError(f"--field name {name!r} must be lower_snake_case and not {' or '.join(_RESERVED)}")
        if name in fields:
            raise BadInputError(f"--field {name} is given twice")
        fields[name] = col
    if not fields:
        raise BadInputError("give at least one --field NAME=COLUMN (e.g. --field title=product_title)")
    return fields


def parse_scale(text: str) -> Scale:
    """``"1:4"`` → Scale; a clear error otherwise."""
    try:
        return Scale.parse(text)
    except ValidationError as e:  # pydantic's own text spans lines; one line is enough
        raise BadInputError(f"--scale {text!r}: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    except ValueError as e:
        raise BadInputError(f"--scale {text!r}: {e}") from None


def import_table(path: str | Path, *, query: str, label: str, fields: dict[str, str] | list[str],
                 scale: Scale | str, relevant_min: int | None = None, item_id: str | None = None,
                 language: str | None = None, country: str | None = None, query_group: str | None = None,
                 default_language: str = "en", item_language: str | None = None, skip_bad: bool = False,
                 name: str | None = None) -> tuple[Dataset, ImportReport]:
    """Read a table of judged pairs into a validated Dataset with the default query-grouped splits."""
    started = time.perf_counter()
    path = require_file(path, "table")
    fields = parse_fields(fields) if isinstance(fields, list) else dict(fields)
    scale = parse_scale(scale) if isinstance(scale, str) else scale
    try:
        info = DatasetInfo(name=name or path.stem, scale=scale, relevant_min=relevant_min,
                           source=f"table {path.name} sha256:{file_digest(path)}")
    except ValueError as e:
        raise BadInputError(f"--relevant-min {relevant_min}: outside the scale {scale.min}..{scale.max}") from e
    raw, unreadable = read_rows(path)
    cols = [query, label, *fields.values(), *(c for c in (item_id, language, country, query_group) if c)]
    require_columns(path, raw, list(dict.fromkeys(cols)))
    report = ImportReport(source=str(path), rows_read=len(raw))
    bad = BadRows(path, raw, skip_bad)
    df = raw
    if unreadable:
        df = bad.drop(df, df[ROW].isin([r for r, _ in unreadable]), df[ROW].map(dict(unreadable)))

    df = df.assign(text=clean_column(as_text(df[query]), True, "queries"))
    df = bad.drop(df, df["text"] == "", f"query ({query}) is empty")
    labels, why = parse_labels(df[label], scale.min, scale.max, label)
    df = bad.drop(df.assign(label=labels), why != "", why)
    if language:
        df = df.assign(language=as_text(df[language]).str.strip())
        df = bad.drop(df, df["language"] == "", f"language ({language}) is empty")
    else:
        df = df.assign(language=default_language)
    values = {}
    for fname, col in fields.items():
        if fname in LIST_FIELDS:
            values[fname] = df[col].map(_as_list)
        else:
            values[fname] = clean_column(as_text(df[col]), fname == "title", fname)
    df = df.assign(**{f"f_{k}": v for k, v in values.items()})
    text_fields = [f"f_{k}" for k in fields if k not in LIST_FIELDS]
    if item_id:
        df = df.assign(item_id=as_text(df[item_id]).str.strip())
        df = bad.drop(df, df["item_id"] == "", f"item id ({item_id}) is empty")
    else:
        if not text_fields:
            raise BadInputError("without --item-id, items are told apart by their text: give a text --field")
        df = bad.drop(df, (df[text_fields] == "").all(axis=1), "every item field is empty")
        df = df.assign(item_id=[stable_id(*vals) for vals in zip(*(df[c] for c in text_fields))])
    quarantined = bad.finish()

    group = None
    if query_group:
        g = as_text(df[query_group]).str.strip()
        group = g.where(g != "", None)
    pairs = df.assign(query_id=[stable_id("q", lang, t) for lang, t in zip(df["language"], df["text"])],
                      country=as_text(df[country]).str.strip().replace("", None) if country else None,
                      group_id=group, item_language=item_language or df["language"], rater_variance=float("nan"))
    pairs = pairs.rename(columns={f"f_{k}": k for k in fields})
    # a column named like a field would clash with the renamed one: the mapped value wins
    pairs = pairs.loc[:, ~pairs.columns.duplicated(keep="last")]
    queries, items, judgments, counts = assemble(pairs, list(fields))
    info.languages = languages_of(queries, items)
    info.description = f"imported from {path.name}: query={query}, label={label}, " + ", ".join(
        f"{k}={v}" for k, v in fields.items())
    ds = Dataset(info=info, items=items, queries=queries, judgments=judgments)
    ds.splits = make_splits(ds.queries)
    ds.validate()
    return ds, fill_report(report, ds, counts, quarantined, started)


def _as_list(v: object) -> list[str] | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                v = json.loads(s)
            except json.JSONDecodeError:
                v = [s]
        else:
            v = [s] if s else []
    if not isinstance(v, (list, tuple)):
        v = [v]
    return [clean_line(str(x)) for x in v if x is not None]
