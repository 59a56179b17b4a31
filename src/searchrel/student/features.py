"""Pair features the student's scorer takes beside the two towers' embeddings — pluggable by name.

A feature splits like the towers do: an item side computed offline (stored with the item embeddings), a query
side computed online (cacheable), and a cheap pair step combining the two for any (query, candidate) pairs.

* ``text_match`` — BM25 of the query against the item text, with document frequencies and average length of
  the catalogue it was fitted on (saved with the student, so a served score equals a trained one and unseen
  items can be scored too), the share of distinct query terms the item contains, and whether it has them all.
* ``zero_shot`` — cosine of the frozen zero-shot embedding model's query and item vectors (SearchSage's role).

Add one with ``@register("name")`` on a class with ``fit``/``state``/``item_side``/``query_side``/``pairs``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from searchrel.baselines.text_match import TextMatch as TextMatchBase

FEATURES: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        FEATURES[name] = cls
        return cls
    return deco


def make_feature(name: str, state: dict | None = None, **options):
    if name not in FEATURES:
        raise ValueError(f"unknown student feature {name!r} (known: {', '.join(FEATURES)})")
    return FEATURES[name](state or {}, **options)


@register("text_match")
class TextMatch(TextMatchBase):
    """BM25 (Lucene IDF, k1 1.2, b 0.75), query-term coverage, all terms present: 3 columns."""


@register("zero_shot")
class ZeroShot:
    """Cosine of the frozen zero-shot model's query and item embeddings: 1 column."""

    size = 1

    def __init__(self, state: dict, model: str = "me5-small", **_):
        self.model = state.get("model", model)

    def fit(self, item_texts: Sequence[str]) -> "ZeroShot":
        return self

    def state(self) -> dict:
        return {"model": self.model}

    EAGER_BELOW = 256  # item batches smaller than this (an index refresh) skip the jit's per-shape compile

    def _encode(self, texts: Sequence[str], kind: str) -> np.ndarray:
        from searchrel.models.encode import load_encoder

        # queries (served one at a time, shapes compiled once) and large item batches use the jit path; a small
        # item batch would pay a compile per new shape that costs more than running it eagerly
        backend = "eager" if kind == "passage" and len(texts) < self.EAGER_BELOW else "auto"
        return load_encoder(self.model, backend=backend).encode(list(texts), kind=kind,
                                                                 progress=False if len(texts) < 256 else None)

    def item_side(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage")

    def query_side(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries, "query")

    def pairs(self, qside: np.ndarray, q_idx: np.ndarray, iside: np.ndarray, i_idx: np.ndarray) -> np.ndarray:
        return np.einsum("nd,nd->n", qside[q_idx], iside[i_idx])[:, None].astype(np.float32)
