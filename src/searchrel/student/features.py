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

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from searchrel.baselines.bm25 import tokenize

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
class TextMatch:
    """BM25 (Lucene IDF, k1 1.2, b 0.75), query-term coverage, all terms present: 3 columns."""

    size = 3

    def __init__(self, state: dict, **_):
        self.vocab: dict[str, int] = state.get("vocab", {})
        self.idf = np.asarray(state.get("idf", []), np.float32)
        self.avgdl = float(state.get("avgdl", 1.0))
        self.k1, self.b = float(state.get("k1", 1.2)), float(state.get("b", 0.75))

    def fit(self, item_texts: Sequence[str]) -> "TextMatch":
        docs = [tokenize(t) for t in item_texts]
        df: Counter = Counter()
        for d in docs:
            df.update(set(d))
        n = max(1, len(docs))
        self.vocab = {t: i for i, t in enumerate(sorted(df))}
        self.idf = np.array([math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in sorted(df)], np.float32)
        self.avgdl = float(np.mean([len(d) for d in docs])) if docs else 1.0
        return self

    def state(self) -> dict:
        return {"vocab": self.vocab, "idf": self.idf.tolist(), "avgdl": self.avgdl, "k1": self.k1, "b": self.b}

    def item_side(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Per item, the BM25 term weight ``tf / (tf + k1 (1 - b + b dl/avgdl))`` of each known term (Lucene's form,
        as bm25s computes it)."""
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            tokens = tokenize(text)
            norm = self.k1 * (1 - self.b + self.b * len(tokens) / self.avgdl)
            for term, tf in Counter(tokens).items():
                col = self.vocab.get(term)
                if col is not None:
                    rows.append(r)
                    cols.append(col)
                    vals.append(tf / (tf + norm))
        return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(texts), len(self.vocab)))

    def query_side(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Distinct query terms per query (as vocabulary columns) and how many distinct terms it has."""
        out = []
        for q in queries:
            terms = list(dict.fromkeys(tokenize(q)))
            out.append((np.array([self.vocab[t] for t in terms if t in self.vocab], np.int64), max(1, len(terms))))
        return out

    def pairs(self, qside, q_idx: np.ndarray, iside: sp.csr_matrix, i_idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(q_idx), self.size), np.float32)
        order = np.argsort(q_idx, kind="stable")
        bounds = np.flatnonzero(np.diff(q_idx[order])) + 1
        for rows in np.split(order, bounds):
            if not len(rows):
                continue
            cols, n_terms = qside[q_idx[rows[0]]]
            if not len(cols):
                continue
            select = np.zeros((iside.shape[1], len(cols)), np.float32)  # picks the query's terms: a sparse x
            select[cols, np.arange(len(cols))] = 1.0  # dense product is cheaper than sparse column slicing
            w = np.asarray(iside[i_idx[rows]] @ select)
            present = (w > 0).sum(1)
            out[rows, 0] = np.log1p(w @ self.idf[cols])
            out[rows, 1] = present / n_terms
            out[rows, 2] = present == n_terms
        return out


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
