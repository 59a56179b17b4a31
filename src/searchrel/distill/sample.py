"""Candidate sampling: the (query, item) pairs the teacher will label — many times more than the human labels.

Where the dataset has a search log, pairs are drawn from its impressions: events are sampled uniformly, so each
query appears in proportion to its traffic (head queries often, the long tail sometimes), and a pair shown many
times is as likely as its impressions make it. Where there is no log, or it runs out, pairs come from retrieval
over the whole catalogue: per query, the top items by BM25 (matches only) and by the zero-shot embedding (the candidates a
production retriever would return, hard ones included) plus random items as easy negatives. Queries of held-out
splits (valid, test by default) are never sampled, so a student's evaluation stays clean.

Without a log, the dataset's judged queries are few (a few hundred on CrowdFlower), and more items for the same
queries teach a student little about queries it has never seen; so retrieval can also run for pseudo-queries cut
from the catalogue's titles (``distill.pseudo``: ``pseudo_queries`` N, or ``auto`` for as many as give each query
about ``candidates_per_query`` candidates). Their pairs carry the query text in a ``query`` column, since the dataset
does not know them; labelling and student training read it from there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from searchrel.annotate.text import TextConfig, build_item_texts
from searchrel.baselines.bm25 import BM25Scorer
from searchrel.data.dataset import Dataset
from searchrel.data.tables import is_parquet, read_parquet_table, read_table
from searchrel.distill.config import SampleConfig
from searchrel.distill.pseudo import PREFIX as PSEUDO_PREFIX
from searchrel.distill.pseudo import pseudo_queries
from searchrel.models.encode import load_encoder
from searchrel.progress import console, track

PAIR_COLUMNS = ["query_id", "item_id", "source"]
META_KEY = b"searchrel.pairs"


def eligible_queries(ds: Dataset, cfg: SampleConfig) -> pd.DataFrame:
    """Queries whose split is not excluded."""
    split = ds.queries["query_id"].map(ds.split_of())
    keep = ds.queries[~split.isin(cfg.exclude_splits)]
    if keep.empty:
        raise ValueError(f"no queries left to sample once splits {', '.join(cfg.exclude_splits)} are excluded")
    return keep.reset_index(drop=True)


def sample_pairs(ds: Dataset, cfg: SampleConfig = SampleConfig(), text: TextConfig | None = None) -> pd.DataFrame:
    """``query_id, item_id, source`` (log, bm25, embed, random): about ``amplification x`` the human labels; and
    ``query`` (the text, for pseudo-queries only) when pseudo-queries were made."""
    target = max(1, round(cfg.amplification * len(ds.judgments)))
    queries = eligible_queries(ds, cfg)
    has_log = ds.search_log is not None and len(ds.search_log) > 0
    if cfg.source == "log" and not has_log:
        raise ValueError("source 'log' asked for, but the dataset has no search_log")
    if cfg.source == "log" and cfg.pseudo_queries not in (0, "auto"):
        raise ValueError("pseudo-queries get their candidates by retrieval, and source 'log' samples the log only")
    n_dataset = len(queries)
    queries = with_pseudo_queries(ds, queries, pseudo_count(cfg, target, n_dataset, has_log), cfg)
    # the log's share of the budget: all of it, or its queries' share where pseudo-queries stand beside them
    log_budget = round(target * n_dataset / len(queries))
    parts = []
    if cfg.source in ("auto", "log") and has_log:
        parts.append(_from_log(ds.search_log, set(queries["query_id"]), log_budget, cfg.seed))
    have = sum(len(p) for p in parts)
    if have < target and cfg.source != "log":
        taken = parts[0] if parts else pd.DataFrame(columns=PAIR_COLUMNS)
        # the rest by retrieval: for every query if the log fell short, else for the pseudo-queries alone
        parts.append(_from_retrieval(ds, queries if have < log_budget else queries.iloc[n_dataset:], target - have,
                                     cfg, text or TextConfig.default_for(ds.items), taken))
    pairs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIR_COLUMNS)
    pairs = pairs.drop_duplicates(["query_id", "item_id"]).head(target)
    pairs = pairs.sort_values(["query_id", "item_id"], kind="stable").reset_index(drop=True)[PAIR_COLUMNS]
    if len(queries) > n_dataset:  # pseudo-queries: the dataset does not know their text, the pairs carry it
        pseudo_text = queries["text"].iloc[n_dataset:].set_axis(queries["query_id"].iloc[n_dataset:])
        pairs["query"] = pairs["query_id"].map(pseudo_text)
    return pairs


def pseudo_count(cfg: SampleConfig, target: int, n_queries: int, has_log: bool) -> int:
    """How many pseudo-queries to make: ``cfg.pseudo_queries`` when it is a number; for ``auto``, none where there
    is a log, and without one as many as bring the candidates per query down to about ``cfg.candidates_per_query``."""
    if cfg.pseudo_queries != "auto":
        return int(cfg.pseudo_queries)
    if has_log or cfg.source == "log":
        return 0
    return max(0, -(-target // cfg.candidates_per_query) - n_queries)


def with_pseudo_queries(ds: Dataset, queries: pd.DataFrame, n: int, cfg: SampleConfig) -> pd.DataFrame:
    """``queries`` (the eligible ones) followed by ``n`` pseudo-queries from the catalogue's titles, never the text of
    a dataset query left out of them (a held-out one)."""
    if n == 0:
        return queries
    clash = ds.queries["query_id"].astype(str).str.startswith(PSEUDO_PREFIX)
    if clash.any():
        raise ValueError(f"query id {ds.queries['query_id'][clash].iloc[0]!r}: ids starting with {PSEUDO_PREFIX!r} "
                         "name pseudo-queries; rename the dataset's or pass pseudo_queries=0")
    held_out = ~ds.queries["query_id"].isin(queries["query_id"])
    made = pseudo_queries(ds.items, n, cfg.seed, exclude=set(ds.queries.loc[held_out, "text"]))
    console.print(f"pseudo-queries: {len(made):,} cut from item titles, beside {len(queries):,} dataset queries")
    return pd.concat([queries, made[["query_id", "text", "language"]]], ignore_index=True)


def _from_log(log: pd.DataFrame, queries: set[str], target: int, seed: int) -> pd.DataFrame:
    events = log[log["query_id"].isin(queries)]
    shown = events[events["event"] == "impression"]
    events = shown if len(shown) else events  # a log of engagements only still names (query, item) pairs
    order = np.random.default_rng(seed).permutation(len(events))
    pairs = events.iloc[order][["query_id", "item_id"]].drop_duplicates().head(target)
    return pairs.assign(source="log")


def _from_retrieval(ds: Dataset, queries: pd.DataFrame, target: int, cfg: SampleConfig, text: TextConfig,
                    taken: pd.DataFrame) -> pd.DataFrame:
    item_texts = build_item_texts(ds.items, text)
    item_ids = item_texts.index.to_numpy()
    n_items = len(item_ids)
    per_query = min(n_items, -(-target // len(queries)))
    k_bm25 = int(round(per_query * cfg.bm25_share))
    k_embed = int(round(per_query * cfg.embed_share))
    console.print(f"retrieval sampling: {len(queries):,} queries x {per_query:,} candidates "
                  f"(BM25 {k_bm25}, embedding {k_embed}, random the rest) over {n_items:,} items")

    bm25 = BM25Scorer(item_texts.tolist()) if k_bm25 else None
    q_emb = i_emb = None
    if k_embed:
        enc = load_encoder(cfg.embed_model)
        i_emb = enc.encode(item_texts.tolist(), kind="passage")
        q_emb = enc.encode(queries["text"].tolist(), kind="query")
    position = {item: i for i, item in enumerate(item_ids)}
    already = taken.groupby("query_id")["item_id"].agg(list).to_dict() if len(taken) else {}
    rng = np.random.default_rng(cfg.seed + 1)
    rows: list[tuple[str, str, str]] = []
    for qi, (qid, qtext) in enumerate(track(list(zip(queries["query_id"], queries["text"])), "retrieving candidates")):
        chosen = np.zeros(n_items, bool)
        chosen[[position[i] for i in already.get(qid, []) if i in position]] = True
        picks: list[tuple[int, str]] = []

        def take(order: np.ndarray, k: int, source: str) -> None:
            fresh = order[~chosen[order]][:k]
            chosen[fresh] = True
            picks.extend((int(i), source) for i in fresh)

        if bm25 is not None:
            scores = bm25.score_all(qtext)
            top = _top(scores, k_bm25 + chosen.sum())
            take(top[scores[top] > 0], k_bm25, "bm25")  # a lexical retriever returns matches only
        if q_emb is not None:
            take(_top(i_emb @ q_emb[qi], k_embed + chosen.sum()), k_embed, "embed")
        take(rng.permutation(n_items), per_query - len(picks), "random")
        rows.extend((qid, item_ids[i], source) for i, source in picks)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first."""
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, np.int64)
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def save_pairs(pairs: pd.DataFrame, out: Path, ds: Dataset, cfg: SampleConfig) -> Path:
    """Parquet, with where the pairs came from (dataset path, amplification) in the file's metadata."""
    meta = {"dataset": str(Path(ds.path).resolve()) if ds.path else None, "amplification": cfg.amplification,
            "human_labels": len(ds.judgments), "pairs": len(pairs), "config": cfg.model_dump(),
            "sources": pairs["source"].value_counts().to_dict()}
    table = pa.Table.from_pandas(pairs, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out


def read_pairs(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The pairs of a file written by ``save_pairs`` (or any Parquet/CSV with query_id, item_id) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    if is_parquet(path):  # by content: a pairs file need not be named .parquet
        table = read_parquet_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        df = table.to_pandas()
    else:
        df, meta = read_table(path, dtype=str), {}
    missing = {"query_id", "item_id"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: pairs need columns query_id, item_id (missing {', '.join(sorted(missing))})")
    return df, meta
