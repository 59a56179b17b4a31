"""The teacher as the rest of the system uses it: load any teacher directory, get grade probabilities.

One path for every caller — ``searchrel eval``, ``teacher predict``, labelling (local and Ray) and the
workbench: ``load_teacher`` gives ``(model, tokenizer)`` for a cross-encoder (on the shared fast path where it
pays, see ``teacher.model.load_cross_encoder``) or ``(EnsembleTeacher, None)`` for an ensemble, and
``predict_probs`` scores pairs with either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.eval.grades import pair_frame
from searchrel.io import read_config
from searchrel.teacher.config import TeacherConfig
from searchrel.teacher.ensemble import EnsembleConfig, EnsembleTeacher, is_ensemble
from searchrel.teacher.model import CONFIG_FILE, CrossEncoder, load_cross_encoder
from searchrel.teacher.predict import cross_encoder_probs

Teacher = CrossEncoder | EnsembleTeacher


def read_teacher_config(path: str | Path) -> TeacherConfig | EnsembleConfig:
    """A teacher directory's config (scale, item text, thresholds, ...) without loading any weights."""
    raw = read_config(path, CONFIG_FILE, "teacher")
    return (EnsembleConfig if raw.get("kind") == "ensemble" else TeacherConfig).model_validate(raw)


def load_teacher(path: str | Path, device: str = "cpu", fast: bool | None = None) -> tuple[Teacher, object]:
    """A saved teacher for prediction: ``(CrossEncoder, tokenizer)`` or ``(EnsembleTeacher, None)``."""
    if is_ensemble(path):  # members + stacker: no tokenizer of its own (each member has its own)
        return EnsembleTeacher.load(path, device), None
    return load_cross_encoder(path, device, fast=fast)


def predict_probs(model: Teacher, tokenizer, queries: Sequence[str], items: Sequence[str], batch_size: int = 64,
                  bf16: bool | None = None, progress: str | None = "teacher scoring") -> np.ndarray:
    """Probability of each grade for pair i = (queries[i], items[i]), whichever kind of teacher."""
    if isinstance(model, EnsembleTeacher):
        return model.predict_probs(list(queries), list(items))
    return cross_encoder_probs(model, tokenizer, queries, items, batch_size=batch_size, bf16=bf16, progress=progress)


def predict_dataset(model: Teacher, tokenizer, ds: Dataset, split: str = "all", batch_size: int = 64,
                    bf16: bool | None = None, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The prediction table of a dataset's judged pairs of ``split`` (or the given ``query_id, item_id`` pairs)."""
    if model.config.scale.grades != ds.info.scale.grades:
        raise ValueError(f"the model predicts grades {model.config.scale.min}..{model.config.scale.max} "
                         f"but the dataset's scale is {ds.info.scale.min}..{ds.info.scale.max}")
    if pairs is None:
        pairs = ds.pairs(split)
    elif "query" not in pairs:
        pairs = pairs.merge(ds.queries[["query_id", "text"]].rename(columns={"text": "query"}), on="query_id", how="left")
    texts = build_item_texts(ds.items, model.config.text)
    unknown = ~pairs["item_id"].isin(texts.index) | pairs["query"].isna()
    if unknown.any():
        row = pairs[unknown].iloc[0]
        raise ValueError(f"{int(unknown.sum())} pair(s) name an unknown query or item, e.g. ({row['query_id']}, {row['item_id']})")
    probs = predict_probs(model, tokenizer, pairs["query"].tolist(), texts.loc[pairs["item_id"]].tolist(),
                          batch_size=batch_size, bf16=bf16)
    return pair_frame(model.config.scale, model.config.thresholds, probs, pairs)
