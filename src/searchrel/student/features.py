"""Pair features the student's scorer takes beside the two towers' embeddings — pluggable by name.

A feature splits like the towers do: an item side computed offline (stored with the item embeddings), a query
side computed online (cacheable), and a cheap pair step combining the two for any (query, candidate) pairs.

* ``text_match`` — BM25 of the query against the item text, with document frequencies and average length of
  the catalogue it was fitted on (saved with the student, so a served score equals a trained one and unseen
  items can be scored too), the share of distinct query terms the item contains, and whether it has them all.
* ``text_match_gated`` — ``text_match``'s three columns, the share of the query's distinct words the catalogue knows
  at all, and the three columns times that share (7 columns; the default): a query in another language than the
  catalogue's scores 0 on text match for want of shared words, and the share tells the scorer so.
* ``zero_shot`` — cosine of the frozen zero-shot embedding model's query and item vectors (SearchSage's role).
* ``zero_shot_product`` — the same two vectors' elementwise product, one column per dimension (their sum is the
  cosine): the scorer learns its own weighting of the frozen model's similarity from the (distilled) labels.

Add one with ``@register("name")`` on a class with ``fit``/``state``/``item_side``/``query_side``/``pairs`` and
the two declarations serving and the index ask for instead of knowing features by name:

* ``needs_model`` — its sides run a model: the index computes its item side beside the towers (on a Ray actor
  that holds the model); without one it is a cheap text feature computed where the texts are (the driver), and its
  item state may be sparse;
* ``query_cached`` — its query side is worth caching with the query tower's vector (``query_dim`` columns of the
  cached row); otherwise the server computes it per request from the query as typed.

A feature's ``source`` names what its sides are: features with the same source (``zero_shot`` and
``zero_shot_product`` of one model) have the same item and query sides, which ``sides`` computes once and the index
stores once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from searchrel.baselines.text_match import TextMatch as TextMatchBase
from searchrel.models.encode import load_encoder

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


def source_of(feature) -> str:
    """What a feature's sides are made of: its own name unless it declares a ``source`` shared with others."""
    return getattr(feature, "source", feature.name)


def sides_by_source(features: Sequence, texts: Sequence[str], kind: str) -> dict[str, object]:
    """The item (``kind`` "item") or query side of ``texts`` for each distinct source among ``features``, computed
    once per source (by its first feature), by source."""
    out: dict[str, object] = {}
    for f in features:
        key = source_of(f)
        if key not in out:
            out[key] = f.query_side(texts) if kind == "query" else f.item_side(texts)
    return out


def sides(features: Sequence, texts: Sequence[str], kind: str) -> dict[str, object]:
    """Each feature's item or query side of ``texts``, by feature name; features of one source share one computed
    side (the same object)."""
    by_source = sides_by_source(features, texts, kind)
    return {f.name: by_source[source_of(f)] for f in features}


@register("text_match")
class TextMatch(TextMatchBase):
    """BM25 (Lucene IDF, k1 1.2, b 0.75), query-term coverage, all terms present: 3 columns."""

    needs_model = False  # a tokenizer and a vocabulary lookup; a sparse item state
    query_cached = False  # the query's known terms: cheaper to compute than to fetch


@register("text_match_gated")
class TextMatchGated(TextMatch):
    """``text_match``'s 3 columns, the share of the query's words the catalogue knows at all, and the 3 columns
    multiplied by that share: 7 columns. A query in another language than the catalogue's scores 0 on text match
    for want of shared words, not of relevance; the share tells the scorer which case it is in (the ensemble
    teacher's "known-word gate")."""

    size = 7

    def pairs(self, qside, q_idx: np.ndarray, iside, i_idx: np.ndarray) -> np.ndarray:
        base = super().pairs(qside, q_idx, iside, i_idx)
        known = np.array([len(cols) / n_terms for cols, n_terms in qside], np.float32)[q_idx][:, None]
        return np.concatenate([base, known, base * known], 1)


@register("zero_shot")
class ZeroShot:
    """Cosine of the frozen zero-shot model's query and item embeddings: 1 column."""

    size = 1
    needs_model = True
    query_cached = True  # a transformer pass per query: cached with the query tower's vector

    def __init__(self, state: dict, model: str = "me5-small", **_):
        self.model = state.get("model", model)

    @property
    def source(self) -> str:
        """The frozen model's normalised vectors: the same sides for the cosine and the product."""
        return f"zero_shot:{self.model}"

    @property
    def query_dim(self) -> int:
        return load_encoder(self.model).dim

    def fit(self, item_texts: Sequence[str]) -> "ZeroShot":
        return self

    def state(self) -> dict:
        return {"model": self.model}

    @property
    def query_model(self) -> str:
        """The embedding model whose query vector is this feature's query side (served on ONNX Runtime when it
        exports: ``searchrel.serve.onnx_tower``)."""
        return self.model

    EAGER_BELOW = 256  # item batches smaller than this (an index refresh) skip the jit's per-shape compile

    def _encode(self, texts: Sequence[str], kind: str) -> np.ndarray:
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


@register("zero_shot_product")
class ZeroShotProduct(ZeroShot):
    """Elementwise product of the frozen zero-shot model's query and item vectors: one column per dimension.

    The same vectors as ``zero_shot`` (the embedding cache computes them once), so a student may carry both: the
    cosine for its residual start, the product for a learned re-weighting of the frozen model's similarity that
    needs no tower pass to train — the part of the student that many distilled pairs can teach cheaply."""

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.query_dim

    def pairs(self, qside: np.ndarray, q_idx: np.ndarray, iside: np.ndarray, i_idx: np.ndarray) -> np.ndarray:
        return (qside[q_idx] * iside[i_idx]).astype(np.float32)
