"""Grade decoding for QWK: cut points on the expected grade, fitted on validation pairs.

The most probable grade of a model trained on imbalanced labels rarely leaves the majority grade; cutting
the expected grade at fitted points keeps the model's ordering and spreads the grades the way QWK rewards.
"""

from __future__ import annotations

import numpy as np

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
