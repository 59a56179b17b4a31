"""The searchrel dataset: a directory of Parquet tables plus ``dataset.json``, loaded and validated.

Layout of a dataset directory::

    dataset.json        DatasetInfo: name, label scale, relevant_min, languages, source
    items.parquet       item_id, title, description, image_caption?, board_titles?, engaged_queries?,
                        language, and any further text fields of the source (brand, color, ...)
    queries.parquet     query_id, text, language, country?, group_id?
    judgments.parquet   query_id, item_id, label, rater_variance?
    search_log.parquet  (optional) ts, user_id, query_id, item_id, position, event, board_title
    splits.parquet      (optional) query_id, split — written by ``searchrel.data.splits``

``group_id`` ties queries that must stay on the same side of a split (a query and its translations).
Every check on load names the table, the column and, where it applies, the row that is wrong.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator

from searchrel.data.splits import make_splits

ITEM_CORE_FIELDS = ("title", "description", "image_caption", "board_titles", "engaged_queries")
LIST_FIELDS = ("board_titles", "engaged_queries")
LOG_EVENTS = ("impression", "click", "save", "long_click")
SPLITS = ("train", "valid", "test")


class DatasetError(ValueError):
    """Raised when a dataset on disk or in memory breaks the format; the message says where."""


class Scale(BaseModel):
    """An N-point graded relevance scale, ``min``..``max`` inclusive, with a name per grade."""

    min: int = 1
    max: int = 5
    names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "Scale":
        if self.max <= self.min:
            raise ValueError(f"scale max ({self.max}) must be greater than min ({self.min})")
        if not self.names:
            self.names = [str(g) for g in self.grades]
        if len(self.names) != self.n_grades:
            raise ValueError(f"scale has {self.n_grades} grades but {len(self.names)} names: {self.names}")
        return self

    @property
    def n_grades(self) -> int:
        return self.max - self.min + 1

    @property
    def grades(self) -> list[int]:
        return list(range(self.min, self.max + 1))

    @classmethod
    def parse(cls, text: str, names: list[str] | None = None) -> "Scale":
        """Parse ``"MIN:MAX"`` as given on the command line."""
        try:
            lo, hi = (int(p) for p in text.split(":"))
        except ValueError:
            raise ValueError(f"scale must look like MIN:MAX (e.g. 1:4), got {text!r}") from None
        return cls(min=lo, max=hi, names=names or [])


class DatasetInfo(BaseModel):
    """What ``dataset.json`` holds."""

    name: str
    scale: Scale = Field(default_factory=Scale)
    relevant_min: int | None = Field(default=None, description="lowest grade that counts as relevant; default: upper half")
    languages: list[str] = Field(default_factory=list)
    source: str = ""
    synthetic: bool = False
    description: str = ""
    # Per item field that a model filled: what made it (model, its content hash, settings, date, counts). Left out of
    # dataset.json while empty, so datasets that never had a field generated are written as before.
    provenance: dict[str, dict[str, Any]] = Field(default_factory=dict, exclude_if=lambda v: not v)

    @model_validator(mode="after")
    def _check(self) -> "DatasetInfo":
        if self.relevant_min is None:
            # the upper half of the scale: 1..4 -> 3, 1..5 -> 4, 0..2 -> 2
            self.relevant_min = self.scale.min + (self.scale.n_grades + 1) // 2
            self.relevant_min = min(self.relevant_min, self.scale.max)
        if not self.scale.min <= self.relevant_min <= self.scale.max:
            raise ValueError(f"relevant_min {self.relevant_min} lies outside the scale {self.scale.min}..{self.scale.max}")
        return self


# --- table schemas -------------------------------------------------------------------------------

_STR = pa.string()
_LIST = pa.list_(pa.string())

ITEMS_SCHEMA = {"item_id": _STR, "title": _STR, "description": _STR, "image_caption": _STR,
                "board_titles": _LIST, "engaged_queries": _LIST, "language": _STR}
QUERIES_SCHEMA = {"query_id": _STR, "text": _STR, "language": _STR, "country": _STR, "group_id": _STR}
JUDGMENTS_SCHEMA = {"query_id": _STR, "item_id": _STR, "label": pa.int64(), "rater_variance": pa.float64()}
LOG_SCHEMA = {"ts": pa.timestamp("s"), "user_id": _STR, "query_id": _STR, "item_id": _STR,
              "position": pa.int64(), "event": _STR, "board_title": _STR}
SPLITS_SCHEMA = {"query_id": _STR, "split": _STR}

_REQUIRED = {
    "items": ("item_id", "title", "description", "language"),
    "queries": ("query_id", "text", "language"),
    "judgments": ("query_id", "item_id", "label"),
    "search_log": ("ts", "user_id", "query_id", "item_id", "position", "event"),
    "splits": ("query_id", "split"),
}
_SCHEMAS = {"items": ITEMS_SCHEMA, "queries": QUERIES_SCHEMA, "judgments": JUDGMENTS_SCHEMA,
            "search_log": LOG_SCHEMA, "splits": SPLITS_SCHEMA}


@dataclass
class Dataset:
    """A dataset in memory: its info and pandas tables (list fields hold Python lists or None)."""

    info: DatasetInfo
    items: pd.DataFrame
    queries: pd.DataFrame
    judgments: pd.DataFrame
    search_log: pd.DataFrame | None = None
    splits: pd.DataFrame | None = None
    path: Path | None = field(default=None, compare=False)

    # -- derived views ----------------------------------------------------------------------------
    @property
    def extra_fields(self) -> list[str]:
        """Text fields of the source beyond the core ones (brand, color, bullet_point, ...)."""
        skip = set(ITEMS_SCHEMA) | {"item_id"}
        return [c for c in self.items.columns if c not in skip]

    @property
    def text_fields(self) -> list[str]:
        """Every item field that can feed the text builder."""
        return [f for f in ITEM_CORE_FIELDS if f in self.items.columns] + self.extra_fields

    def split_of(self) -> pd.Series:
        """query_id -> split name. Uses the stored split table, else computes the default one."""
        if self.splits is None:
            self.splits = make_splits(self.queries)
        return self.splits.set_index("query_id")["split"]

    def pairs(self, split: str = "all") -> pd.DataFrame:
        """Judged pairs joined with query language/country, optionally restricted to one split."""
        qcols = ["query_id", "text", "language"] + (["country"] if "country" in self.queries else [])
        df = self.judgments.merge(self.queries[qcols].rename(columns={"text": "query"}), on="query_id", how="left")
        if split != "all":
            if split not in SPLITS:
                raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
            df = df[df["query_id"].map(self.split_of()) == split]
        return df.reset_index(drop=True)

    def with_judgments(self, judgments: pd.DataFrame) -> "Dataset":
        return Dataset(self.info, self.items, self.queries, judgments, self.search_log, self.splits, self.path)

    # -- validation -------------------------------------------------------------------------------
    def validate(self) -> "Dataset":
        """Check every table; raise DatasetError naming table, column and row on the first problem."""
        _check_columns("items", self.items)
        _check_columns("queries", self.queries)
        _check_columns("judgments", self.judgments)
        _check_unique("items", self.items, "item_id")
        _check_unique("queries", self.queries, "query_id")
        _check_not_null("items", self.items, ("item_id", "language"))
        _check_not_null("queries", self.queries, ("query_id", "text", "language"))
        _check_not_null("judgments", self.judgments, ("query_id", "item_id", "label"))
        for col in LIST_FIELDS:
            if col in self.items:
                bad = self.items[col].map(lambda v: v is not None and not isinstance(v, (list, tuple)) and not hasattr(v, "tolist"))
                _raise_first("items", col, bad, "must be a list of strings or null")
        labels = pd.to_numeric(self.judgments["label"], errors="coerce")
        s = self.info.scale
        bad = labels.isna() | (labels != labels.round()) | (labels < s.min) | (labels > s.max)
        _raise_first("judgments", "label", bad, f"must be an integer grade in {s.min}..{s.max}",
                     values=self.judgments["label"])
        unknown_q = ~self.judgments["query_id"].isin(self.queries["query_id"])
        _raise_first("judgments", "query_id", unknown_q, "names no query in the queries table",
                     values=self.judgments["query_id"])
        unknown_i = ~self.judgments["item_id"].isin(self.items["item_id"])
        _raise_first("judgments", "item_id", unknown_i, "names no item in the items table",
                     values=self.judgments["item_id"])
        dup = self.judgments.duplicated(["query_id", "item_id"])
        _raise_first("judgments", "query_id,item_id", dup, "repeats a judged pair (one label per pair)",
                     values=self.judgments["query_id"] + " / " + self.judgments["item_id"])
        if self.search_log is not None:
            log = self.search_log
            _check_columns("search_log", log)
            bad = ~log["event"].isin(LOG_EVENTS)
            _raise_first("search_log", "event", bad, f"must be one of {', '.join(LOG_EVENTS)}", values=log["event"])
            _raise_first("search_log", "query_id", ~log["query_id"].isin(self.queries["query_id"]),
                         "names no query in the queries table", values=log["query_id"])
            _raise_first("search_log", "item_id", ~log["item_id"].isin(self.items["item_id"]),
                         "names no item in the items table", values=log["item_id"])
        if self.splits is not None:
            _check_columns("splits", self.splits)
            _raise_first("splits", "split", ~self.splits["split"].isin(SPLITS),
                         f"must be one of {', '.join(SPLITS)}", values=self.splits["split"])
        return self

    # -- I/O --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Validate, then write atomically: a half-written dataset never appears at ``path``."""
        self.validate()
        path = Path(path)
        if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "dataset.json").exists())):
            raise DatasetError(f"{path} exists and is not a dataset: refusing to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (tmp / "dataset.json").write_text(self.info.model_dump_json(indent=2) + "\n")
            for name in ("items", "queries", "judgments", "search_log", "splits"):
                df = getattr(self, name)
                if df is not None:
                    _write_table(df, _SCHEMAS[name], tmp / f"{name}.parquet")
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = path
        return path


def load_dataset(path: str | os.PathLike, validate: bool = True) -> Dataset:
    """Read a dataset directory; with ``validate`` (default) check it fully."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no dataset directory here (expected dataset.json and Parquet tables)")
    meta = path / "dataset.json"
    if not meta.exists():
        raise DatasetError(f"{path}: dataset.json is missing")
    try:
        info = DatasetInfo.model_validate_json(meta.read_text())
    except ValueError as e:
        raise DatasetError(f"{meta}: {e}") from None
    tables = {}
    for name in ("items", "queries", "judgments", "search_log", "splits"):
        f = path / f"{name}.parquet"
        if not f.exists():
            if name in ("items", "queries", "judgments"):
                raise DatasetError(f"{path}: table {name}.parquet is missing")
            tables[name] = None
            continue
        df = pq.read_table(f).to_pandas()
        for col in LIST_FIELDS:
            if col in df:
                df[col] = df[col].map(lambda v: None if v is None else [str(x) for x in v])
        tables[name] = df
    ds = Dataset(info=info, path=path, **tables)
    return ds.validate() if validate else ds


# --- helpers -------------------------------------------------------------------------------------

def _write_table(df: pd.DataFrame, schema: dict[str, pa.DataType], path: Path) -> None:
    fields = []
    for col in df.columns:
        typ = schema.get(col)
        if typ is None:  # extra text fields of a source are kept as strings
            typ = _LIST if col in LIST_FIELDS else _STR
        fields.append(pa.field(col, typ))
    data = {}
    for f in fields:
        col = df[f.name]
        if pa.types.is_string(f.type):
            col = col.map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
        elif pa.types.is_list(f.type):
            col = col.map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else [str(x) for x in v])
        data[f.name] = pa.array(col.tolist(), type=f.type, from_pandas=True)
    pq.write_table(pa.table(data, schema=pa.schema(fields)), path)


def _check_columns(table: str, df: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED[table] if c not in df.columns]
    if missing:
        raise DatasetError(f"table {table}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")


def _check_unique(table: str, df: pd.DataFrame, col: str) -> None:
    _raise_first(table, col, df[col].duplicated(), "is not unique", values=df[col])


def _check_not_null(table: str, df: pd.DataFrame, cols: tuple[str, ...]) -> None:
    for col in cols:
        _raise_first(table, col, df[col].isna(), "is empty (null)")


def _raise_first(table: str, col: str, bad: pd.Series, what: str, values: pd.Series | None = None) -> None:
    if bool(bad.any()):
        pos = int(bad.to_numpy().argmax())
        n = int(bad.sum())
        value = values.iloc[pos] if values is not None else None
        shown = f" (value {value.item() if hasattr(value, 'item') else value!r})" if values is not None else ""
        more = f"; {n - 1} more row(s) like it" if n > 1 else ""
        raise DatasetError(f"table {table}, column {col}, row {pos}{shown}: {what}{more}")
