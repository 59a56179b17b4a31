"""From grade probabilities to what evaluation reads: the prediction table and the predicted grade.

Every model — teacher, ensemble, student — hands out grade probabilities per pair; ``pair_frame`` turns them into
the one prediction table (``query_id, item_id, p_<grade>..., score, grade``) that ``searchrel eval`` reads.
Ranking uses the expected grade. The predicted grade is the most probable one, or — for QWK — the expected
grade cut at points fitted on validation pairs (``fit_thresholds``): the most probable grade of a model trained
on imbalanced labels rarely leaves the majority grade; cutting the expected grade keeps the model's ordering
and spreads the grades the way QWK rewards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from searchrel.data.dataset import Scale
from searchrel.eval.metrics import quadratic_weighted_kappa


def fit_thresholds(probs: np.ndarray, labels: np.ndarray, scale: Scale, rounds: int = 3) -> list[float]:
    """``n_grades - 1`` increasing cut points maximising QWK of the cut expected grade (coordinate search)."""
    grades = np.array(scale.grades, dtype=float)
    expected = probs @ grades
    cuts = grades[:-1] + 0.5

    def qwk(c: np.ndarray) -> float:
        pred = grades[np.searchsorted(c, expected, side="right")].astype(int)
        return quadratic_weighted_kappa(labels, pred, scale.grades)

    candidates = np.unique(np.quantile(expected, np.linspace(0, 1, 201)))
    best = qwk(cuts)
    for _ in range(rounds):
        improved = False
        for j in range(len(cuts)):
            lo = cuts[j - 1] if j > 0 else -np.inf
            hi = cuts[j + 1] if j + 1 < len(cuts) else np.inf
            for v in candidates[(candidates > lo) & (candidates < hi)]:
                trial = cuts.copy()
                trial[j] = v
                score = qwk(trial)
                if score > best + 1e-9:
                    best, cuts, improved = score, trial, True
        if not improved:
            break
    return [float(c) for c in cuts]


def decode_grades(probs: np.ndarray, scale: Scale, thresholds: list[float] | None) -> np.ndarray:
    """Predicted grade per row: the most probable grade, or the expected grade cut at fitted thresholds."""
    grades = np.array(scale.grades)
    if thresholds is None:
        return grades[probs.argmax(1)]
    expected = probs @ grades
    return grades[np.searchsorted(np.asarray(thresholds), expected, side="right")]


def pair_frame(scale: Scale, thresholds: list[float] | None, probs: np.ndarray, pairs: pd.DataFrame) -> pd.DataFrame:
    """``query_id, item_id, p_<grade>..., score`` (the expected grade, used for ranking) ``, grade``."""
    out = pairs[["query_id", "item_id"]].reset_index(drop=True).copy()
    for j, g in enumerate(scale.grades):
        out[f"p_{g}"] = probs[:, j]
    out["score"] = probs @ np.array(scale.grades, dtype=float)
    out["grade"] = decode_grades(probs, scale, thresholds)
    return out
