"""Teacher inference: grade probabilities for (query, item) pairs, batched by length, on the model's device (bf16
where native: capable CPUs, Ampere+ GPUs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from searchrel.annotate.text import build_item_texts
from searchrel.data.dataset import Dataset
from searchrel.models.device import autocast, bf16_native
from searchrel.progress import track
from searchrel.teacher.model import CrossEncoder, decode_grades
from searchrel.teacher.pairs import collate, encode_pairs, length_batches


@torch.inference_mode()
def predict_probs(model: CrossEncoder, tokenizer, queries: Sequence[str], items: Sequence[str],
                  batch_size: int = 64, bf16: bool | None = None, progress: str | None = "teacher scoring",
                  features: np.ndarray | None = None) -> np.ndarray:
    """Probability of each grade for pair i = (queries[i], items[i]); rows in input order.
    ``features``: the pair features the teacher takes, if already computed (else computed here)."""
    from searchrel.teacher.ensemble import EnsembleTeacher
    from searchrel.teacher.features import pair_features

    if isinstance(model, EnsembleTeacher):
        return model.predict_probs(list(queries), list(items))
    cfg = model.config
    device = next(model.parameters()).device
    bf16 = bf16_native(device) if bf16 is None else bf16
    if features is None:
        features = pair_features(cfg, queries, items)
    ids = encode_pairs(tokenizer, queries, items, cfg.max_length, cfg.is_decoder, cfg.query_prefix, cfg.passage_prefix)
    batches = length_batches([len(x) for x in ids], batch_size)
    out = np.zeros((len(ids), cfg.scale.n_grades), dtype=np.float32)
    model.eval()
    it = track(batches, progress) if progress else batches
    for b in it:
        input_ids, mask = collate([ids[i] for i in b], tokenizer.pad_token_id)
        feats = None if features is None else torch.from_numpy(features[b]).to(device)
        with autocast(bf16, device):
            logits = model(input_ids.to(device), mask.to(device), feats)
        out[b] = torch.softmax(logits.float(), -1).cpu().numpy()
    return out


def pair_frame(model, probs: np.ndarray, pairs: pd.DataFrame) -> pd.DataFrame:
    """``query_id, item_id, p_<grade>..., score`` (the expected grade, used for ranking) ``, grade``: for any model
    with ``.config.scale`` and ``.config.thresholds`` (teachers and students alike)."""
    scale = model.config.scale
    out = pairs[["query_id", "item_id"]].reset_index(drop=True).copy()
    for j, g in enumerate(scale.grades):
        out[f"p_{g}"] = probs[:, j]
    out["score"] = probs @ np.array(scale.grades, dtype=float)
    out["grade"] = decode_grades(probs, scale, model.config.thresholds)
    return out


def predict_dataset(model: CrossEncoder, tokenizer, ds: Dataset, split: str = "all", batch_size: int = 64,
                    bf16: bool | None = None, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score a dataset's judged pairs of ``split`` (or the given ``query_id, item_id`` pairs)."""
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
    return pair_frame(model, probs, pairs)
