"""Aggregate the search log with DuckDB into each item's ``board_titles`` and ``engaged_queries``.

Per item: the top-k board titles its saves went to, and the top-k query texts whose searches led to an
engagement (click, save, long click) with it, within a time window. Queries of held-out splits are left
out so that their text never reaches the features that the same split is evaluated on.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pandas as pd
from pydantic import BaseModel, Field

from searchrel.data.dataset import SPLITS, Dataset, DatasetError


class AnnotateConfig(BaseModel):
    """How log signals become item fields."""

    top_k_boards: int = Field(8, ge=1, description="board titles kept per item, most saved first")
    top_k_queries: int = Field(8, ge=1, description="engaged queries kept per item, most engaged first")
    window_days: int | None = Field(None, ge=1, description="only log events this many days before the last one")
    min_count: int = Field(1, ge=1, description="a title or query must occur this often to be kept")
    exclude_splits: list[str] = Field(default_factory=lambda: ["valid", "test"],
                                      description="query splits whose text must not leak into item features")


class AnnotateReport(BaseModel):
    items_with_boards: int
    items_with_queries: int
    events_used: int
    events_excluded_split: int


def annotate(ds: Dataset, config: AnnotateConfig = AnnotateConfig()) -> tuple[Dataset, AnnotateReport]:
    """Return a copy of ``ds`` whose items carry aggregated ``board_titles`` and ``engaged_queries``."""
    if ds.search_log is None:
        raise DatasetError("this dataset has no search_log table: there is nothing to annotate from")
    for s in config.exclude_splits:
        if s not in SPLITS:
            raise DatasetError(f"unknown split {s!r} to exclude; choose from {', '.join(SPLITS)}")
    log = ds.search_log
    split = ds.split_of()
    held_out = ds.queries[ds.queries["query_id"].map(split).isin(config.exclude_splits)]
    # Exclude by normalised text as well as by id: the same words typed again must not leak either.
    held_text = pd.DataFrame({"t": held_out["text"].str.strip().str.lower().unique()})
    queries = ds.queries[["query_id", "text"]]
    since = None
    if config.window_days is not None and len(log):
        since = pd.Timestamp(log["ts"].max()) - timedelta(days=config.window_days)

    con = duckdb.connect()
    try:
        con.register("log", log)
        con.register("queries", queries)
        con.register("held", held_text)
        window = "AND l.ts >= $since" if since is not None else ""
        params = {"since": since} if since is not None else {}
        base = f"""
            SELECT l.item_id, l.event, l.board_title, q.text AS query,
                   lower(trim(q.text)) IN (SELECT t FROM held) AS held_out
            FROM log l JOIN queries q USING (query_id)
            WHERE l.event IN ('click', 'save', 'long_click') {window}"""
        con.execute(f"CREATE TEMP TABLE engaged AS {base}", params)
        used, excluded = con.execute(
            "SELECT count(*) FILTER (WHERE NOT held_out), count(*) FILTER (WHERE held_out) FROM engaged").fetchone()
        boards = con.execute("""
            SELECT item_id, list(board_title ORDER BY n DESC, board_title) AS board_titles FROM (
                SELECT item_id, board_title, count(*) AS n FROM engaged
                WHERE event = 'save' AND board_title IS NOT NULL AND trim(board_title) <> '' AND NOT held_out
                GROUP BY item_id, board_title HAVING count(*) >= $min_count
                QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY n DESC, board_title) <= $k)
            GROUP BY item_id""", {"min_count": config.min_count, "k": config.top_k_boards}).df()
        engaged = con.execute("""
            SELECT item_id, list(query ORDER BY n DESC, query) AS engaged_queries FROM (
                SELECT item_id, query, count(*) AS n FROM engaged WHERE NOT held_out
                GROUP BY item_id, query HAVING count(*) >= $min_count
                QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY n DESC, query) <= $k)
            GROUP BY item_id""", {"min_count": config.min_count, "k": config.top_k_queries}).df()
    finally:
        con.close()

    items = ds.items.drop(columns=["board_titles", "engaged_queries"], errors="ignore")
    items = items.merge(boards, on="item_id", how="left").merge(engaged, on="item_id", how="left")
    for col in ("board_titles", "engaged_queries"):
        items[col] = items[col].map(lambda v: list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else None)
    out = Dataset(ds.info, items, ds.queries, ds.judgments, ds.search_log, ds.splits, ds.path)
    report = AnnotateReport(items_with_boards=int(items["board_titles"].notna().sum()),
                            items_with_queries=int(items["engaged_queries"].notna().sum()),
                            events_used=int(used), events_excluded_split=int(excluded))
    return out.validate(), report
