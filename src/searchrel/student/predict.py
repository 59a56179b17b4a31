"""Student inference over a dataset: embed each distinct query and item once, then score the pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.eval.grades import pair_frame
from searchrel.student.model import Side, Student


def predict_pairs(student: Student, ds: Dataset, pairs: pd.DataFrame, bf16: bool | None = None) -> np.ndarray:
    """Grade probabilities for ``pairs`` (``query_id, item_id``) of ``ds``, in row order."""
    return student.predict(*pair_sides(student, ds, pairs, bf16=bf16))


def pair_sides(student: Student, ds: Dataset, pairs: pd.DataFrame, bf16: bool | None = None,
               pooled: bool = False) -> tuple[Side, np.ndarray, Side, np.ndarray]:
    """The query and item sides of ``pairs`` and each row's index into them: what ``Student.predict`` takes (with
    ``pooled``, the sides hold the towers' pooled states instead of their embeddings)."""
    texts = build_item_texts(ds.items, student.config.text)
    query_text = ds.queries.set_index("query_id")["text"]
    bad = ~pairs["item_id"].isin(texts.index) | ~pairs["query_id"].isin(query_text.index)
    if bad.any():
        row = pairs[bad].iloc[0]
        raise ValueError(f"{int(bad.sum())} pair(s) name an unknown query or item, e.g. ({row['query_id']}, {row['item_id']})")
    q_ids, q_idx = np.unique(pairs["query_id"].to_numpy(), return_inverse=True)
    i_ids, i_idx = np.unique(pairs["item_id"].to_numpy(), return_inverse=True)
    queries = student.side(query_text.loc[q_ids].tolist(), "query", bf16=bf16, pooled=pooled)
    items = student.side(texts.loc[i_ids].tolist(), "item", bf16=bf16, pooled=pooled)
    return queries, q_idx, items, i_idx


def predict_dataset(student: Student, ds: Dataset, split: str = "all", pairs: pd.DataFrame | None = None,
                    bf16: bool | None = None) -> pd.DataFrame:
    """The prediction table of a dataset's judged pairs of ``split`` (or the given ``query_id, item_id`` pairs)."""
    scale = student.config.scale
    if scale.grades != ds.info.scale.grades:
        raise ValueError(f"the model predicts grades {scale.min}..{scale.max} "
                         f"but the dataset's scale is {ds.info.scale.min}..{ds.info.scale.max}")
    pairs = ds.pairs(split) if pairs is None else pairs
    return pair_frame(scale, student.config.thresholds, predict_pairs(student, ds, pairs, bf16=bf16), pairs)
