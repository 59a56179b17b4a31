"""Pair features a teacher may take beside the cross-encoded text: the zero-shot embedding cosine.

The frozen pretrained backbone, used as a bi-encoder, already ranks well in every language it was trained
on; giving its cosine to the head lets fine-tuning on (mostly English) labels add to that judgement rather
than replace it. Each distinct query and item text is embedded once, through the shared fast path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from searchrel.baselines.embed import embed_scores
from searchrel.teacher.config import TeacherConfig


def pair_features(config: TeacherConfig, queries: Sequence[str], items: Sequence[str]) -> np.ndarray | None:
    """``[n, n_features]`` float32 for pair i = (queries[i], items[i]), or None when the teacher takes none."""
    if not config.zero_shot_feature:
        return None
    idx = np.arange(len(queries))
    cos = embed_scores(list(queries), list(items), (idx, idx), model=config.backbone)
    return cos.astype(np.float32)[:, None]
