"""Relevance metrics as pure functions of numpy arrays; checked against scikit-learn in the tests.

Conventions (stated once, used everywhere):
- NDCG@k: gain ``2**(label - scale_min) - 1``, log2 discount, candidates ranked by score descending with
  ties broken by item_id ascending (deterministic, unlike averaging over ties). A query whose ideal DCG is
  0 (no candidate above the scale minimum) has no defined NDCG and is left out of the mean.
- Precision@k: share of the top ``min(k, n)`` candidates with ``label >= relevant_min`` — a query with
  fewer than k candidates is not punished for its short list.
- AUROC of "label >= t" for every t above the scale minimum, pooled over all pairs; undefined (None) when
  one class is absent.
"""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, grades: list[int]) -> float:
    """Unweighted mean F1 over the grades that occur in y_true or y_pred (scikit-learn's convention)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    f1s = []
    for g in grades:
        tp = np.sum((y_true == g) & (y_pred == g))
        fp = np.sum((y_true != g) & (y_pred == g))
        fn = np.sum((y_true == g) & (y_pred != g))
        if tp + fp + fn == 0:
            continue  # grade absent from both: scikit-learn leaves it out of the labels
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _grade_index(values: np.ndarray, grades: list[int]) -> np.ndarray:
    """Position of each value on the scale (vectorised; fitting QWK cut points calls this thousands of times)."""
    scale = np.asarray(grades)
    order = np.argsort(scale)
    values = np.asarray(values).astype(int)
    pos = np.clip(np.searchsorted(scale[order], values), 0, len(scale) - 1)
    off = scale[order][pos] != values
    if off.any():
        raise KeyError(f"grade {values[off][0]} is not on the scale {list(grades)}")
    return order[pos]


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, grades: list[int]) -> float:
    """Cohen's kappa with quadratic weights over the full scale."""
    n = len(grades)
    t, p = _grade_index(y_true, grades), _grade_index(y_pred, grades)
    return float(qwk_from_counts(np.bincount(t * n + p, minlength=n * n).reshape(n, n)))


def qwk_from_counts(counts: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa of confusion matrices ``[..., n, n]`` (rows: true grade, columns: predicted, in scale
    order), many at once — ``quadratic_weighted_kappa`` for one, bootstrap and randomization resamples for many; 0
    where it is undefined (no expected disagreement)."""
    counts = np.asarray(counts, dtype=float)
    n = counts.shape[-1]
    total = counts.sum((-2, -1), keepdims=True)
    expected = counts.sum(-1, keepdims=True) * counts.sum(-2, keepdims=True) / np.maximum(total, 1e-12)
    weights = (np.subtract.outer(np.arange(n), np.arange(n)) ** 2) / (n - 1) ** 2
    observed_cost, expected_cost = (weights * counts).sum((-2, -1)), (weights * expected).sum((-2, -1))
    safe = np.where(expected_cost > 0, expected_cost, 1.0)
    return np.where(expected_cost > 0, 1 - observed_cost / safe, 0.0)


def auroc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank statistic (ties count half); None if a class is missing."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rank_order(score: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """Indices that sort candidates by score descending, ties by item_id ascending."""
    return np.lexsort((np.asarray(item_ids, dtype=str), -np.asarray(score, dtype=float)))


def ndcg_at_k(labels: np.ndarray, score: np.ndarray, item_ids: np.ndarray, k: int, scale_min: int) -> float | None:
    """NDCG@k of one query's candidates; None when no candidate has positive gain."""
    gains = 2.0 ** (np.asarray(labels, dtype=float) - scale_min) - 1
    discounts = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(gains)[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    if idcg == 0:
        return None
    ranked = gains[rank_order(score, item_ids)][:k]
    return float((ranked * discounts[: len(ranked)]).sum() / idcg)


def precision_at_k(labels: np.ndarray, score: np.ndarray, item_ids: np.ndarray, k: int, relevant_min: int) -> float:
    top = np.asarray(labels)[rank_order(score, item_ids)][:k]
    return float(np.mean(top >= relevant_min)) if len(top) else 0.0
