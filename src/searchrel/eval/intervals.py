"""How precise is one system's number? Bootstrap intervals over queries for NDCG@k, QWK and AUROC per grade
threshold, overall and per language.

Conventions (stated once, used by ``searchrel eval --intervals`` and its tests):
- The unit is the **query**, as in ``eval.paired``: a resample draws the slice's queries with replacement, ``reps``
  times (seeded), and the interval is the percentile interval of the statistic over the resamples.
- NDCG@k is the mean of the resampled queries' values (the queries ``evaluate`` leaves out stay out).
- QWK is pooled over pairs, so a resample pools the pairs of its queries (a query drawn twice counts twice): each
  query's confusion matrix is counted once and a resample's kappa comes from the weighted sum of them — the same
  number ``evaluate`` gives when every query is drawn once.
- AUROC at threshold t (grade >= t against the rest, by score) is pooled over pairs too. Its rank statistic is a
  sum over (positive, negative) pairs of pairs, so with query q drawn c_q times it is ``c'Ac / ((c'p)(c'n))``:
  ``A[q, r]`` counts the positives of q ranked above the negatives of r (ties half), ``p`` and ``n`` each query's
  positives and negatives — computed once, exact for every resample, and ``evaluate``'s value when every c_q is 1.
  A resample without a positive or a negative has no AUROC and is left out of the percentiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from searchrel.data.dataset import Dataset, DatasetError
from searchrel.eval.evaluate import attach_predictions
from searchrel.eval.metrics import qwk_from_counts
from searchrel.eval.paired import check_resampling, confusion_by_query, draw_counts, query_values, resampled_sums


def auroc_parts(labels: np.ndarray, score: np.ndarray, query: np.ndarray, threshold: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A, p, n`` of the pooled AUROC at ``threshold`` over the queries ``0..Q-1`` (``query``: each pair's index):
    ``A[q, r]`` the (positive of q, negative of r) pairs where the positive scores higher, ties counting half.
    Compares every positive with every negative (O(positives x negatives) time), in blocks of bounded memory."""
    n_queries = int(query.max()) + 1 if len(query) else 0
    positive = np.asarray(labels) >= threshold
    score = np.asarray(score, float)
    pos_s, pos_q = score[positive], query[positive]
    by_query = np.argsort(query[~positive], kind="stable")  # negatives grouped by query, for one sum per query
    neg_s, neg_q = score[~positive][by_query], query[~positive][by_query]
    groups, starts = np.unique(neg_q, return_index=True)
    A = np.zeros((n_queries, n_queries))
    block = max(1, (1 << 22) // max(1, len(neg_s)))  # about 4M comparisons (32 MB) at a time
    for lo in range(0, len(pos_s) if len(neg_s) else 0, block):
        s = pos_s[lo:lo + block, None]
        wins = (s > neg_s[None, :]) + 0.5 * (s == neg_s[None, :])
        np.add.at(A, (pos_q[lo:lo + block, None], groups[None, :]), np.add.reduceat(wins, starts, axis=1))
    return (A, np.bincount(pos_q, minlength=n_queries).astype(float),
            np.bincount(query[~positive], minlength=n_queries).astype(float))


def auroc_from_counts(A: np.ndarray, p: np.ndarray, n: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pooled AUROC for each row of ``counts`` (``[reps, Q]``: how often each query is drawn); NaN where a draw has
    no positive or no negative."""
    denominator = (counts @ p) * (counts @ n)
    numerator = ((counts @ A) * counts).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


class IntervalRow(BaseModel):
    slice: str
    metric: str
    queries: int
    value: float
    lo: float
    hi: float


class IntervalResult(BaseModel):
    split: str
    reps: int
    level: float
    rows: list[IntervalRow]


def metric_intervals(ds: Dataset, preds: pd.DataFrame, split: str = "test", k: int = 8, reps: int = 10_000,
                     seed: int = 0, level: float = 0.95) -> IntervalResult:
    """NDCG@k, QWK where the predictions carry grades, and AUROC at each grade threshold above the lowest, each with
    its bootstrap interval over queries: one slice for all queries, then one per query language."""
    check_resampling(reps, level)
    df, _ = attach_predictions(ds, preds, split)
    if df.empty:
        raise DatasetError(f"split {split!r} has no judged pairs")
    ndcg = query_values(ds, df, f"ndcg@{k}").set_index("query_id")["value"]
    grades = list(ds.info.scale.grades)
    tail = (1 - level) / 2 * 100
    rows = []
    for name, g in [("all", df)] + [(f"lang={lang}", s) for lang, s in df.groupby("language", sort=True)]:
        rng = np.random.default_rng(seed)
        values = ndcg.reindex(g["query_id"].unique()).dropna().to_numpy()
        if len(values):
            means = resampled_sums(values[:, None], reps, rng)[:, 0] / len(values)
            lo, hi = np.percentile(means, [tail, 100 - tail])
            rows.append(IntervalRow(slice=name, metric=f"ndcg@{k}", queries=len(values), value=float(values.mean()),
                                    lo=float(lo), hi=float(hi)))
        if "pred_grade" in g.columns:
            counts = np.stack(confusion_by_query(g, grades).to_list())
            kappas = qwk_from_counts(resampled_sums(counts, reps, rng))
            lo, hi = np.percentile(kappas, [tail, 100 - tail])
            rows.append(IntervalRow(slice=name, metric="qwk", queries=len(counts),
                                    value=float(qwk_from_counts(counts.sum(0))), lo=float(lo), hi=float(hi)))
        qids, query = np.unique(g["query_id"].to_numpy(), return_inverse=True)
        draws = np.concatenate(list(draw_counts(len(qids), reps, rng)))  # [reps, Q]: how often each query is drawn
        for t in grades[1:]:
            A, p, n = auroc_parts(g["label"].to_numpy(), g["score"].to_numpy(), query, t)
            value = auroc_from_counts(A, p, n, np.ones((1, len(qids))))[0]
            if np.isnan(value):
                continue  # a slice without a positive or a negative at t: evaluate reports none either
            aurocs = auroc_from_counts(A, p, n, draws)
            lo, hi = np.percentile(aurocs[~np.isnan(aurocs)], [tail, 100 - tail])
            rows.append(IntervalRow(slice=name, metric=f"auroc@>={t}", queries=len(qids), value=float(value),
                                    lo=float(lo), hi=float(hi)))
    return IntervalResult(split=split, reps=reps, level=level, rows=rows)


def markdown(result: IntervalResult, name: str = "system") -> str:
    pct = round(result.level * 100)
    lines = [f"{name} on the {result.split} split, with {pct}% bootstrap intervals over queries "
             f"({result.reps:,} resamples)", "", f"| slice | metric | queries | value | {pct}% interval |",
             "|---|---|---:|---:|---|"]
    lines += [f"| {r.slice} | {r.metric} | {r.queries} | {r.value:.3f} | [{r.lo:.3f}, {r.hi:.3f}] |"
              for r in result.rows]
    return "\n".join(lines)
