"""Online-experiment statistics as pure functions: team-draft interleaving, bootstrap intervals, power, rank agreement.

Conventions (stated once, used by ``searchrel simulate`` and its tests):
- The unit of an online experiment is the **search**: intervals resample searches with replacement, A/B traffic is
  split by search, and an interleaved search yields one outcome.
- Intervals are percentile bootstrap intervals (``level`` = 0.95: the 2.5th and 97.5th percentiles of ``reps``
  resampled statistics), vectorised with numpy and seeded.
- Team-draft interleaving (Radlinski, Kurup and Joachims, *How does clickthrough data reflect retrieval quality?*,
  CIKM 2008): per round a fair coin says which ranker picks first; each picks its highest-ranked item not yet
  shown, and that item joins its team. A click credits the team of the clicked item; a search is won by the team
  with more credited clicks. The preference for A is ``(wins_A - wins_B) / searches with a credited click``, in
  [-1, 1]; positive means users preferred A.
- Power (two-sided test at level ``alpha``, power ``1 - beta``, normal approximation, z_p the standard normal's
  p-quantile): an A/B test of a difference of means Δ between arms whose per-search variances are σ_A², σ_B²
  needs ``n = (z_{1-alpha/2} + z_{1-beta})² (σ_A² + σ_B²) / Δ²`` searches *per arm*; an interleaving experiment
  with per-search outcome d (+1 A won, -1 B won, 0 otherwise: a tie or no click) of mean μ_d and variance σ_d²
  needs ``n = (z_{1-alpha/2} + z_{1-beta})² σ_d² / μ_d²`` searches in all (a one-sample test of μ_d = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

CHUNK = 64  # bootstrap replicates drawn at once: reps x searches indices stay a few tens of MB


def team_draft(a: Sequence, b: Sequence, k: int, first_a: np.ndarray) -> tuple[list, np.ndarray]:
    """Interleave rankings ``a`` and ``b`` (best first) into at most ``k`` distinct items.

    ``first_a[r]`` says whether A picks first in round r (a fair coin per round; a round is one pick per team, so
    ``ceil(k / 2)`` coins are used, up to ``k`` when one ranking runs out of new items and the other fills the
    list). Returns the interleaved list and, per position, True where the item is A's pick."""
    shown: list = []
    seen: set = set()
    team: list[bool] = []
    ia = ib = 0
    r = 0
    while len(shown) < k:
        order = (True, False) if first_a[r] else (False, True)
        r += 1
        picked = False
        for from_a in order:
            if len(shown) >= k:
                break
            ranking, i = (a, ia) if from_a else (b, ib)
            while i < len(ranking) and ranking[i] in seen:
                i += 1
            if i < len(ranking):
                shown.append(ranking[i])
                seen.add(ranking[i])
                team.append(from_a)
                picked = True
                i += 1
            if from_a:
                ia = i
            else:
                ib = i
        if not picked:
            break
    return shown, np.array(team, dtype=bool)


def credit(team_a: np.ndarray, clicks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per interleaved search (rows of ``team_a`` and ``clicks``, searches x positions): the clicks credited to A
    and to B (each click counts for the team whose item it was) and the outcome: +1 A won, -1 B won, 0 a tie,
    nan no click."""
    clicks = np.asarray(clicks, dtype=bool)
    a, b = (clicks & team_a).sum(-1), (clicks & ~team_a).sum(-1)
    outcome = np.sign(a - b).astype(float)
    return a, b, np.where(a + b > 0, outcome, np.nan)


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.nanpercentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _resampled_sums(values: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, ...]``: the column sums of ``values`` (searches x statistics) over ``reps`` resamples of its rows."""
    n = len(values)
    out = np.empty((reps,) + values.shape[1:])
    for start in range(0, reps, CHUNK):
        idx = rng.integers(0, n, (min(CHUNK, reps - start), n))
        out[start:start + len(idx)] = values[idx].sum(1)
    return out


def bootstrap_ratios(num: np.ndarray, den: np.ndarray, reps: int = 1000, seed: int = 0,
                     level: float = 0.95) -> np.ndarray:
    """Column by column, ``sum(num) / sum(den)`` over searches (rows) and its bootstrap interval, every column
    from the same resamples: ``[columns, 3]`` of (estimate, lo, hi); nan where a column's ``den`` sums to 0."""
    num, den = np.atleast_2d(np.asarray(num, dtype=float).T).T, np.atleast_2d(np.asarray(den, dtype=float).T).T
    m = num.shape[1]
    out = np.full((m, 3), np.nan)
    if len(num) == 0:
        return out
    sums = _resampled_sums(np.concatenate([num, den], 1), reps, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = sums[:, :m] / sums[:, m:]
    for j in range(m):
        if den[:, j].sum() > 0:
            out[j] = (num[:, j].sum() / den[:, j].sum(), *_percentiles(stats[:, j], level))
    return out


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, reps: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float, float]:
    """``sum(num) / sum(den)`` over searches and its bootstrap interval: ``(estimate, lo, hi)``. With ``den``
    all ones it is a mean (fulfilment rate, saves per search); an interleaving preference is
    ``num`` = outcome (0 where no click), ``den`` = 1 where a click was credited."""
    est, lo, hi = bootstrap_ratios(np.asarray(num, dtype=float)[:, None], np.asarray(den, dtype=float)[:, None],
                                   reps, seed, level)[0]
    return float(est), float(lo), float(hi)


def bootstrap_mean(values: np.ndarray, reps: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """The mean of per-search ``values`` and its bootstrap interval: ``(mean, lo, hi)``."""
    values = np.asarray(values, dtype=float)
    return bootstrap_ratio(values, np.ones_like(values), reps, seed, level)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, reps: int = 1000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` of two independent arms and its bootstrap interval (each arm resampled on its own)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mean_a = _resampled_sums(a[:, None], reps, rng)[:, 0] / len(a)
    stats = mean_a - _resampled_sums(b[:, None], reps, rng)[:, 0] / len(b)
    return (float(a.mean() - b.mean()), *_percentiles(stats, level))


def _z(alpha: float, power: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)


def ab_searches_needed(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """Searches per arm for a two-sided two-sample test to detect the measured ``mean(a) - mean(b)``:
    ``(z_{1-alpha/2} + z_{power})² (var(a) + var(b)) / (mean(a) - mean(b))²`` (sample variances, ddof 1);
    inf when the measured difference is 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    delta = a.mean() - b.mean()
    if delta == 0:
        return float("inf")
    return float(_z(alpha, power) ** 2 * (a.var(ddof=1) + b.var(ddof=1)) / delta**2)


def interleaving_searches_needed(outcome: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """Interleaved searches (all, clicked or not) for a two-sided one-sample test to detect the measured mean
    per-search outcome d (+1, -1, 0; nan = no click counts as 0): ``(z_{1-alpha/2} + z_{power})² var(d) / mean(d)²``;
    inf when the mean is 0."""
    d = np.nan_to_num(np.asarray(outcome, dtype=float), nan=0.0)
    mu = d.mean()
    if mu == 0:
        return float("inf")
    return float(_z(alpha, power) ** 2 * d.var(ddof=1) / mu**2)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-a of two scorings of the same systems: (concordant - discordant) / all pairs; a pair tied in
    either scoring counts as neither. nan for fewer than two systems."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, 1)
    s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return float(s.sum() / len(s))
