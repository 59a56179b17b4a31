"""Is system A better than system B on these queries? A paired comparison of two systems' predictions on the same
judged queries, overall and per language.

Conventions (stated once, used by ``searchrel eval --against`` and its tests):
- The unit is the **query**: each system's per-query NDCG@k (or P@k) is computed as ``searchrel eval`` does
  (``eval.evaluate``: the same joins and checks, the same tie-breaking); only queries both systems score count.
- The difference is ``mean(A) - mean(B)`` over those queries. Its interval is a percentile bootstrap over queries
  (the per-query differences resampled with replacement, ``reps`` times, seeded), and its p-value a two-sided paired
  randomization test (each query's difference keeps or flips its sign at random: Fisher's sign-flip test, the test
  Smucker, Allan and Carterette, *A comparison of statistical significance tests for information retrieval
  evaluation*, CIKM 2007, recommend), ``(1 + #{|mean(flipped)| >= |mean(observed)|}) / (1 + reps)``.
- QWK, pooled over pairs, is compared the same way through each query's confusion matrix: a bootstrap resample
  pools the drawn queries' pairs for both systems (the same draws), and the randomization test swaps the two
  systems' grades query by query — the exchange the null hypothesis allows. Its differences are in kappa, not points.
- A slice (a language) is tested on its own queries; nothing corrects for testing several slices at once.
- A system given as several runs (student seeds) is compared through each query's mean over its runs: the interval
  and the test then treat those runs as fixed — they say how sure the difference between *these* students is on new
  queries, not how another set of seeds would do (the seeds' own spread is ``curve-seeds.md``'s).
- The percentile bootstrap of a mean is a little narrow on few queries (no t-quantile, and the plug-in variance; on
  36 queries about 5% narrower than a t-interval): an interval that barely excludes zero can come with p slightly
  above 0.05.

On 36 queries a language, a 1.5-point NDCG@8 difference is often inside its interval: what a target of that size can
and cannot show is what this module measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from searchrel.data.dataset import Dataset, DatasetError
from searchrel.eval.evaluate import attach_predictions, query_metrics, ranking_metric
from searchrel.eval.metrics import qwk_from_counts
from searchrel.eval.online import CHUNK


class PairedRow(BaseModel):
    """One slice's comparison: both systems' means, the difference, its interval and the test's p-value."""

    slice: str
    queries: int
    a: float
    b: float
    diff: float
    lo: float
    hi: float
    p_value: float


class PairedResult(BaseModel):
    metric: str
    split: str
    reps: int
    level: float
    rows: list[PairedRow]


def per_query(ds: Dataset, preds: pd.DataFrame, split: str, metric: str = "ndcg@8") -> pd.DataFrame:
    """``query_id, language, value``: one system's per-query ``metric`` (``ndcg@K`` or ``p@K``) on ``split``; queries
    whose metric is undefined (NDCG with no relevant candidate) are left out, as in ``evaluate``."""
    df, _ = attach_predictions(ds, preds, split)
    if df.empty:
        raise DatasetError(f"split {split!r} has no judged pairs to compare on")
    return query_values(ds, df, metric)


def query_values(ds: Dataset, df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``per_query`` of predictions already joined onto their judged pairs (``evaluate.attach_predictions``)."""
    ranking_metric(metric)  # a clear error for a bad metric, even with no rows
    rows = []
    for qid, g in df.groupby("query_id", sort=True):
        (value,) = query_metrics(g, ds, [metric])
        if value is not None:
            rows.append((qid, g["language"].iloc[0], value))
    return pd.DataFrame(rows, columns=["query_id", "language", "value"])


def check_resampling(reps: int, level: float) -> None:
    """A clear error for a resample count or an interval level that cannot work."""
    if reps < 1 or not 0 < level < 1:
        raise ValueError(f"reps must be positive and level in (0, 1) (got {reps}, {level})")


def draw_counts(n: int, reps: int, rng: np.random.Generator):
    """``reps`` bootstrap resamples of ``n`` rows, in chunks of at most ``CHUNK``: each an ``[m, n]`` array of how
    often every row is drawn."""
    for start in range(0, reps, CHUNK):
        m = min(CHUNK, reps - start)
        counts = np.zeros((m, n))
        np.add.at(counts, (np.repeat(np.arange(m), n), rng.integers(0, n, (m, n)).ravel()), 1.0)
        yield counts


def resampled_sums(rows: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, ...]``: sums of ``rows`` (one per query, any shape) over ``reps`` bootstrap resamples of the rows."""
    flat = rows.reshape(len(rows), -1)
    out = np.concatenate([counts @ flat for counts in draw_counts(len(rows), reps, rng)])
    return out.reshape((reps,) + rows.shape[1:])


def confusion_by_query(df: pd.DataFrame, grades: list[int]) -> pd.Series:
    """Each query's confusion matrix ``[n_grades, n_grades]`` (true grade by predicted, scale order) of joined pairs
    with ``label`` and ``pred_grade``, indexed by query_id in order of appearance."""
    position = {g: i for i, g in enumerate(grades)}
    true, pred = df["label"].map(position).to_numpy(), df["pred_grade"].map(position).to_numpy()
    qid, queries = pd.factorize(df["query_id"])
    counts = np.zeros((len(queries), len(grades), len(grades)))
    np.add.at(counts, (qid, true, pred), 1.0)
    return pd.Series(list(counts), index=queries)


def paired_test(diffs: np.ndarray, reps: int = 10_000, seed: int = 0,
                level: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` of per-query differences: the mean, its percentile bootstrap interval over queries and
    the two-sided sign-flip randomization p-value (see the module docstring)."""
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_test needs a non-empty 1-d array of per-query differences")
    check_resampling(reps, level)
    rng = np.random.default_rng(seed)
    n, observed = len(d), abs(d.mean())
    boot = np.empty(reps)
    extreme = 0
    for start in range(0, reps, CHUNK):
        m = min(CHUNK, reps - start)
        boot[start:start + m] = d[rng.integers(0, n, (m, n))].mean(1)
        signs = rng.integers(0, 2, (m, n)) * 2 - 1
        extreme += int((np.abs((signs * d).mean(1)) >= observed - 1e-12).sum())
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(d.mean()), float(lo), float(hi), (1 + extreme) / (1 + reps)


def _runs(runs: pd.DataFrame | list[pd.DataFrame]) -> list[pd.DataFrame]:
    """A system's runs of predictions: one table, or several (seeds)."""
    runs = [runs] if isinstance(runs, pd.DataFrame) else list(runs)
    if not runs:
        raise ValueError("a system needs at least one run of predictions")
    return runs


def _per_query_mean(ds: Dataset, runs: pd.DataFrame | list[pd.DataFrame], split: str, metric: str) -> pd.DataFrame:
    """``per_query`` of one system, or the per-query mean over several runs of it (e.g. seeds): the queries every
    run scores."""
    frames = [per_query(ds, r, split, metric).set_index(["query_id", "language"])["value"] for r in _runs(runs)]
    return pd.concat(frames, axis=1, join="inner").mean(axis=1).rename("value").reset_index()


def compare_predictions(ds: Dataset, a: pd.DataFrame | list[pd.DataFrame], b: pd.DataFrame | list[pd.DataFrame],
                        split: str = "test", metric: str = "ndcg@8", reps: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> PairedResult:
    """A against B on ``split``: one row for all queries, then one per query language. A system given as a list of
    prediction tables (runs of it: seeds) is its per-query mean over them. ``metric`` ``qwk`` compares the systems'
    decoded grades (both need them)."""
    if metric == "qwk":
        return _compare_qwk(ds, a, b, split, reps, seed, level)
    qa, qb = _per_query_mean(ds, a, split, metric), _per_query_mean(ds, b, split, metric)
    both = qa.merge(qb[["query_id", "value"]], on="query_id", suffixes=("_a", "_b"))
    if both.empty:
        raise DatasetError(f"the two systems share no scored query on split {split!r}")
    slices = [("all", both)] + [(f"lang={lang}", g) for lang, g in both.groupby("language", sort=True)]
    rows = []
    for name, g in slices:
        mean, lo, hi, p = paired_test((g["value_a"] - g["value_b"]).to_numpy(), reps, seed, level)
        rows.append(PairedRow(slice=name, queries=len(g), a=float(g["value_a"].mean()), b=float(g["value_b"].mean()),
                              diff=mean, lo=lo, hi=hi, p_value=p))
    return PairedResult(metric=metric, split=split, reps=reps, level=level, rows=rows)


def _confusions(ds: Dataset, runs: pd.DataFrame | list[pd.DataFrame], split: str) -> pd.DataFrame:
    """``query_id, language, counts``: each query's confusion matrix, the mean over a system's runs."""
    grades = list(ds.info.scale.grades)
    per_run = []
    for r in _runs(runs):
        df, _ = attach_predictions(ds, r, split)
        if "pred_grade" not in df.columns:
            raise DatasetError("qwk compares decoded grades: give both systems p_<grade> columns or a grade column")
        per_run.append(confusion_by_query(df, grades))
        language = df.groupby("query_id", sort=False)["language"].first()
    common = per_run[0].index
    for other in per_run[1:]:
        common = common.intersection(other.index, sort=False)
    return pd.DataFrame({"query_id": common, "language": language.reindex(common).to_numpy(),
                         "counts": [np.mean([c[q] for c in per_run], 0) for q in common]})


def _compare_qwk(ds: Dataset, a, b, split: str, reps: int, seed: int, level: float) -> PairedResult:
    check_resampling(reps, level)
    both = _confusions(ds, a, split).merge(_confusions(ds, b, split)[["query_id", "counts"]], on="query_id",
                                           suffixes=("_a", "_b"))
    if both.empty:
        raise DatasetError(f"the two systems share no scored query on split {split!r}")
    tail = (1 - level) / 2 * 100
    rows = []
    for name, g in [("all", both)] + [(f"lang={lang}", s) for lang, s in both.groupby("language", sort=True)]:
        rng = np.random.default_rng(seed)
        ca, cb = np.stack(g["counts_a"].to_list()), np.stack(g["counts_b"].to_list())
        ka, kb = float(qwk_from_counts(ca.sum(0))), float(qwk_from_counts(cb.sum(0)))
        boot = resampled_sums(np.stack([ca, cb], 1), reps, rng)  # the same query draws for both systems
        diffs = qwk_from_counts(boot[:, 0]) - qwk_from_counts(boot[:, 1])
        n, flat_a, flat_b = len(ca), ca.reshape(len(ca), -1), cb.reshape(len(cb), -1)
        extreme = 0
        for start in range(0, reps, CHUNK):
            m = min(CHUNK, reps - start)
            keep = rng.integers(0, 2, (m, n)).astype(float)  # 1: the query's grades stay, 0: the systems swap them
            sa = (keep @ flat_a + (1 - keep) @ flat_b).reshape((m,) + ca.shape[1:])
            sb = ((1 - keep) @ flat_a + keep @ flat_b).reshape((m,) + ca.shape[1:])
            extreme += int((np.abs(qwk_from_counts(sa) - qwk_from_counts(sb)) >= abs(ka - kb) - 1e-12).sum())
        lo, hi = np.percentile(diffs, [tail, 100 - tail])
        rows.append(PairedRow(slice=name, queries=n, a=ka, b=kb, diff=ka - kb, lo=float(lo), hi=float(hi),
                              p_value=(1 + extreme) / (1 + reps)))
    return PairedResult(metric="qwk", split=split, reps=reps, level=level, rows=rows)


def markdown(result: PairedResult, name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a Markdown table, differences in points (×100)."""
    pct = round(result.level * 100)
    kappa = result.metric == "qwk"
    fmt = (lambda x: f"{round(x, 3) + 0.0:+.3f}") if kappa else points
    lines = [f"{name_a} against {name_b}, {result.metric} on the {result.split} split; difference "
             f"{'in kappa' if kappa else 'in points'} with its {pct}% bootstrap interval over queries, two-sided "
             f"paired randomization p ({result.reps:,} resamples)",
             "", f"| slice | queries | {name_a} | {name_b} | difference | {pct}% interval | p |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for r in result.rows:
        lines.append(f"| {r.slice} | {r.queries} | {r.a:.3f} | {r.b:.3f} | {fmt(r.diff)} | "
                     f"[{fmt(r.lo)}, {fmt(r.hi)}] | {p_text(r.p_value)} |")
    return "\n".join(lines)


def p_text(p: float) -> str:
    """A p-value as the tables print it: three decimals, or "< 0.001"."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def points(x: float) -> str:
    """A difference of a [0, 1] metric in signed points (x 100, one decimal; never "-0.0")."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"
