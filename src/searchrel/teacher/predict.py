"""Cross-encoder inference: grade probabilities for (query, item) pairs, batched by length, on the model's device.

A model loaded for inference (``teacher.model.load_cross_encoder``) may carry the shared fast path (bf16
TorchScript with shape buckets, ``models.encode``): its backbone then pools the pairs and the head runs in fp32.
Otherwise — a model in training, a GPU, a decoder LLM — the model runs eager, under bf16 autocast where the device
is native at it (capable CPUs, Ampere+ GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from searchrel.models.device import autocast, bf16_native
from searchrel.models.pairs import collate, encode_pairs, length_batches
from searchrel.progress import step, track
from searchrel.teacher.features import pair_features
from searchrel.teacher.model import CrossEncoder


@torch.inference_mode()
def cross_encoder_probs(model: CrossEncoder, tokenizer, queries: Sequence[str], items: Sequence[str],
                        batch_size: int = 64, bf16: bool | None = None, progress: str | None = "teacher scoring",
                        features: np.ndarray | None = None) -> np.ndarray:
    """Probability of each grade for pair i = (queries[i], items[i]); rows in input order.
    ``features``: the pair features the teacher takes, if already computed (else computed here)."""
    cfg = model.config
    ids = encode_pairs(tokenizer, queries, items, cfg.max_length, cfg.is_decoder, cfg.query_prefix, cfg.passage_prefix)
    model.eval()
    if model.fast is not None:  # pair features are never on the fast path (load_cross_encoder checks)
        if progress:
            with step(progress, total=len(ids)) as advance:
                pooled = model.fast.encode_ids(ids, batch_size, advance=advance)
        else:
            pooled = model.fast.encode_ids(ids, batch_size)
        return torch.softmax(model.head(torch.from_numpy(pooled)), -1).numpy()
    device = next(model.parameters()).device
    bf16 = bf16_native(device) if bf16 is None else bf16
    if features is None:
        features = pair_features(cfg, queries, items)
    batches = length_batches([len(x) for x in ids], batch_size)
    out = np.zeros((len(ids), cfg.scale.n_grades), dtype=np.float32)
    for b in track(batches, progress) if progress else batches:
        input_ids, mask = collate([ids[i] for i in b], tokenizer.pad_token_id)
        feats = None if features is None else torch.from_numpy(features[b]).to(device)
        with autocast(bf16, device):
            logits = model(input_ids.to(device), mask.to(device), feats)
        out[b] = torch.softmax(logits.float(), -1).cpu().numpy()
    return out
