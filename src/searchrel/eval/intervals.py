"""How precise is one system's number? Bootstrap intervals over queries for NDCG@k and QWK, overall and per language.

Conventions (stated once, used by ``searchrel eval --intervals`` and its tests):
- The unit is the **query**, as in ``eval.paired``: a resample draws the slice's queries with replacement, ``reps``
  times (seeded), and the interval is the percentile interval of the statistic over the resamples.
- NDCG@k is the mean of the resampled queries' values (the queries ``evaluate`` leaves out stay out).
- QWK is pooled over pairs, so a resample pools the pairs of its queries (a query drawn twice counts twice): each
  query's confusion matrix is counted once and a resample's kappa comes from the weighted sum of them — the same
  number ``evaluate`` gives when every query is drawn once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from searchrel.data.dataset import Dataset, DatasetError
from searchrel.eval.evaluate import attach_predictions
from searchrel.eval.metrics import qwk_from_counts
from searchrel.eval.paired import check_resampling, confusion_by_query, query_values, resampled_sums


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
    """NDCG@k and, where the predictions carry grades, QWK, each with its bootstrap interval over queries: one slice
    for all queries, then one per query language."""
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
    return IntervalResult(split=split, reps=reps, level=level, rows=rows)


def markdown(result: IntervalResult, name: str = "system") -> str:
    pct = round(result.level * 100)
    lines = [f"{name} on the {result.split} split, with {pct}% bootstrap intervals over queries "
             f"({result.reps:,} resamples)", "", f"| slice | metric | queries | value | {pct}% interval |",
             "|---|---|---:|---:|---|"]
    lines += [f"| {r.slice} | {r.metric} | {r.queries} | {r.value:.3f} | [{r.lo:.3f}, {r.hi:.3f}] |"
              for r in result.rows]
    return "\n".join(lines)
