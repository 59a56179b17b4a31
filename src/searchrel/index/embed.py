"""Item embedding for an index build: the student's item tower and the item side of every feature source, on one
process (``local``, the last student kept loaded) or on a Ray actor pool (``ray``: the actors compute the towers
and every feature that ``needs_model``; the others — cheap text features with sparse state — run on the driver).

Feature item states are keyed by source (``student.features.source_of``): features of one source (``zero_shot`` and
``zero_shot_product`` of one model) have one item state, computed, shipped and stored once; ``feature_sources``
maps the student's feature names to them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from searchrel.index.layout import IndexConfig, concat_states
from searchrel.models.encode import default_threads
from searchrel.progress import step
from searchrel.ray_pool import map_shards
from searchrel.student.features import make_feature, sides_by_source, source_of
from searchrel.student.model import FEATURES_FILE, load_student


# -- embedding -------------------------------------------------------------------------------------
class ItemEmbedder:
    """One student (loaded once) embedding item texts: tower vectors and every feature source's item state.
    The local backend makes one; each Ray actor makes its own and is called on ``row, text`` batches."""

    def __init__(self, student: str, batch_size: int = 64, bf16: bool | None = None,
                 skip_features: Sequence[str] = ()):
        torch.set_num_threads(default_threads())
        self.student = load_student(student)
        self.batch_size, self.bf16 = batch_size, bf16
        self.features = [f for f in self.student.features if f.name not in set(skip_features)]

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, object]]:
        texts = list(texts)
        emb = self.student.embed(texts, "item", batch_size=self.batch_size, bf16=self.bf16)
        return emb, sides_by_source(self.features, texts, "item")

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        emb, states = self.embed(batch["text"].tolist())
        out = {"row": batch["row"].to_numpy(np.int64), "emb": emb}
        for source, state in states.items():
            if not isinstance(state, np.ndarray):
                raise TypeError(f"feature source {source!r} gives a {type(state).__name__} item state, which the ray "
                                "backend cannot ship back: a feature without a model (needs_model = False) is "
                                "computed on the driver instead")
            out[f"feature__{source}"] = state
        return out


_EMBEDDER: dict[tuple, ItemEmbedder] = {}  # the last student the local backend loaded, for refreshes in one process


def local_embedder(student_dir: str, version: str, batch_size: int = 64, bf16: bool | None = None) -> ItemEmbedder:
    """The local backend's embedder, kept while the student (by model version) and settings stay the same: a
    long-lived process refreshing its index does not reload the student (seconds) for a handful of items."""
    key = (student_dir, version, batch_size, bf16)
    if key not in _EMBEDDER:
        _EMBEDDER.clear()
        _EMBEDDER[key] = ItemEmbedder(student_dir, batch_size, bf16)
    return _EMBEDDER[key]


_TOWER = "\0tower"  # the tower vectors' key next to the feature names while embedding (no feature is named so)


def embed_local(student_dir: str, texts: list[str], cfg: IndexConfig,
                 version: str) -> tuple[np.ndarray, dict[str, object]]:
    """Tower vectors and feature states (by source) of ``texts``, a shard at a time. Dense results are written into
    arrays allocated once for every row (no list of shards concatenated at the end: at a million items that copy is
    2.5 GB); sparse states are stacked once at the end."""
    embedder = local_embedder(student_dir, version, cfg.batch_size, cfg.bf16)
    n, dense, sparse = len(texts), {}, {}
    with step("embedding items", total=n) as advance:
        for start in range(0, n, cfg.shard_size):
            chunk = texts[start:start + cfg.shard_size]
            emb, st = embedder.embed(chunk)
            for name, part in ((_TOWER, emb), *st.items()):
                if isinstance(part, np.ndarray):
                    if name not in dense:
                        dense[name] = np.empty((n, *part.shape[1:]), part.dtype)
                    dense[name][start:start + len(chunk)] = part
                else:
                    sparse.setdefault(name, []).append(part)
            advance(len(chunk))
    states = {name: concat_states(parts) for name, parts in sparse.items()} | dense
    return states.pop(_TOWER), states


def driver_features(student_dir: str | Path, scfg) -> list:
    """The student's feature objects from its config and features.json alone (no towers loaded)."""
    path = Path(student_dir) / FEATURES_FILE
    states = json.loads(path.read_text()) if path.is_file() else {}
    return [make_feature(n, states.get(n), model=scfg.zero_shot_model) for n in scfg.features]


def feature_sources(features: Sequence) -> dict[str, str]:
    """The feature names (in the student's order), each with the source whose item state it reads."""
    return {f.name: source_of(f) for f in features}


def embed_ray(student_dir: str, texts: list[str], cfg: IndexConfig, scfg,
              features: Sequence) -> tuple[np.ndarray, dict[str, object]]:
    """Tower vectors and feature states (by source) of ``texts`` on a Ray actor pool; ``features`` (the student's,
    from ``driver_features``) say which run on the driver."""
    n = len(texts)
    emb = np.zeros((n, scfg.dim), np.float32)
    states: dict[str, np.ndarray] = {}
    driver = [f for f in features if not f.needs_model]
    # results are placed by "row": shards come back in any order
    frame = pd.DataFrame({"row": np.arange(n, dtype=np.int64), "text": texts})
    kwargs = {"student": student_dir, "batch_size": cfg.batch_size, "bf16": cfg.bf16,
              "skip_features": sorted(f.name for f in driver)}
    seen = np.zeros(n, bool)
    with step("embedding items (ray)", total=n) as advance:
        for batch in map_shards(frame, ItemEmbedder, kwargs, cfg, batch_format="numpy"):
            rows = np.asarray(batch["row"], np.int64)
            if not len(rows):
                continue
            emb[rows] = np.asarray(batch["emb"], np.float32)
            for key, value in batch.items():
                if key.startswith("feature__"):
                    value = np.asarray(value)
                    source = key[len("feature__"):]
                    if source not in states:
                        states[source] = np.zeros((n, *value.shape[1:]), value.dtype)
                    states[source][rows] = value
            seen[rows] = True
            advance(len(rows))
    if not seen.all():
        raise RuntimeError(f"the ray backend returned {int(seen.sum()):,} of {n:,} items")
    return emb, states | sides_by_source(driver, texts, "item")
