"""Numbers the report derives from predictions and human grades: confusion matrices, calibration of the grade
probabilities, and the pairs where the teacher and the student disagree most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from searchrel.data.dataset import Dataset
from searchrel.report.collect import System

BINS = 10


def labelled(ds: Dataset, system: System, split: str | None) -> pd.DataFrame:
    """The system's predictions on the judged pairs of ``split``, with the human ``label``, query and language."""
    pairs = ds.pairs(split or "all")
    pairs = pairs.assign(query_id=pairs["query_id"].astype(str), item_id=pairs["item_id"].astype(str))
    preds = system.predictions.drop(columns=[c for c in ("label", "query", "language", "country")
                                             if c in system.predictions])
    return pairs.merge(preds, on=["query_id", "item_id"], how="inner")


def confusion(labels: np.ndarray, predicted: np.ndarray, grades: list[int]) -> np.ndarray:
    """Counts: row = human grade, column = predicted grade, in scale order."""
    index = {g: i for i, g in enumerate(grades)}
    out = np.zeros((len(grades), len(grades)), dtype=int)
    np.add.at(out, ([index[int(v)] for v in labels], [index[int(v)] for v in predicted]), 1)
    return out


@dataclass
class Calibration:
    """Reliability of one system's grade probabilities on the judged pairs.

    ``curves[g]`` = (mean predicted p_g, observed frequency of grade g, pairs) per equal-width bin of p_g.
    ``classwise_ece``: per grade, the bin-weighted mean |observed - predicted|, averaged over the grades.
    ``top_label_ece``: the same for the most probable grade's probability against how often it was right.
    ``brier``: mean over pairs of the summed squared error of the probability vector against the one-hot grade.
    """

    curves: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    classwise_ece: float
    top_label_ece: float
    brier: float
    n: int


def _binned(p: np.ndarray, hit: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.bincount(idx, weights=p, minlength=bins) / count
        freq = np.bincount(idx, weights=hit.astype(float), minlength=bins) / count
    keep = count > 0
    ece = float((count[keep] * np.abs(freq[keep] - pred[keep])).sum() / max(1, len(p)))
    return pred, freq, count, ece


def calibration(probs: np.ndarray, labels: np.ndarray, grades: list[int], bins: int = BINS) -> Calibration:
    probs = np.clip(np.asarray(probs, dtype=float), 0, 1)
    labels = np.asarray(labels, dtype=int)
    onehot = labels[:, None] == np.array(grades)[None, :]
    curves, eces = {}, []
    for j, g in enumerate(grades):
        pred, freq, count, ece = _binned(probs[:, j], onehot[:, j], bins)
        curves[g] = (pred, freq, count)
        eces.append(ece)
    top = probs.argmax(1)
    *_, top_ece = _binned(probs[np.arange(len(top)), top], np.array(grades)[top] == labels, bins)
    brier = float(((probs - onehot) ** 2).sum(1).mean()) if len(labels) else float("nan")
    return Calibration(curves, float(np.mean(eces)), top_ece, brier, len(labels))


def expected_grade(df: pd.DataFrame, cols: list[str], grades: list[int]) -> np.ndarray:
    """Σ p_g · g per row."""
    return df[cols].to_numpy(float) @ np.array(grades, dtype=float)


def disagreements(ds: Dataset, teacher: System, student: System, split: str | None, n: int = 15) -> pd.DataFrame:
    """The ``n`` pairs both systems scored where their expected grades differ most, most different first
    (ties by query and item id, so the list is stable), with query text and language, item title and the
    human grade where the pair is judged. Columns: query_id, item_id, query, language, title, caption, label,
    teacher, student (expected grades), diff (student - teacher), teacher_p, student_p (probability arrays)."""
    grades = ds.info.scale.grades
    tcols, scols = teacher.prob_columns(grades), student.prob_columns(grades)
    t = teacher.predictions[["query_id", "item_id", *tcols]].assign(teacher=lambda d: expected_grade(d, tcols, grades))
    s = student.predictions[["query_id", "item_id", *scols]].assign(student=lambda d: expected_grade(d, scols, grades))
    both = t.merge(s, on=["query_id", "item_id"], suffixes=("_t", "_s"))
    both["diff"] = both["student"] - both["teacher"]
    both = (both.assign(_abs=both["diff"].abs()).sort_values(["_abs", "query_id", "item_id"],
                                                             ascending=[False, True, True]).head(n))
    both["teacher_p"] = list(both[[f"{c}_t" for c in tcols]].to_numpy(float))
    both["student_p"] = list(both[[f"{c}_s" for c in scols]].to_numpy(float))
    queries = ds.queries.assign(query_id=ds.queries["query_id"].astype(str))[["query_id", "text", "language"]]
    items = _item_text(ds.items)
    judg = ds.judgments.assign(query_id=ds.judgments["query_id"].astype(str),
                               item_id=ds.judgments["item_id"].astype(str))[["query_id", "item_id", "label"]]
    out = (both.merge(queries.rename(columns={"text": "query"}), on="query_id", how="left")
           .merge(items, on="item_id", how="left").merge(judg, on=["query_id", "item_id"], how="left"))
    return out[["query_id", "item_id", "query", "language", "title", "caption", "label", "teacher", "student",
                "diff", "teacher_p", "student_p"]].reset_index(drop=True)


def _item_text(items: pd.DataFrame) -> pd.DataFrame:
    """item_id, title and image caption ("" where absent): a thin item's title says little, its caption more."""
    def col(name: str) -> pd.Series:
        return items[name].fillna("").astype(str).str.strip() if name in items else pd.Series("", index=items.index)

    return pd.DataFrame({"item_id": items["item_id"].astype(str), "title": col("title"),
                         "caption": col("image_caption")})
