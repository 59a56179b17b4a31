"""Text-match features of (query, item) pairs with catalogue statistics: BM25, query-term coverage, all terms.

Split like the student's towers: the item side (BM25 term weights) is computed once per item, the query side
(its known terms) once per query, and ``pairs`` combines them for any (query, candidate) pairs. Document
frequencies and the average length come from the catalogue it was fitted on and are saved in ``state()``, so a
score does not depend on which other pairs are scored with it. Used by the student's ``text_match`` feature and
by the ensemble teacher.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from searchrel.baselines.bm25 import tokenize


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
        out = np.zeros((len(q_idx), TextMatch.size), np.float32)  # its own 3 columns, whatever a subclass adds
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

    def known_share(self, queries: Sequence[str]) -> np.ndarray:
        """Per query, the share of its distinct terms that occur in the catalogue at all: how much lexical evidence
        the query can have. A query typed in another language than the catalogue's scores ~0 on every text-match
        feature for lack of shared words, not for lack of relevance; this tells a model which case it is in."""
        out = np.zeros(len(queries), np.float32)
        for i, (cols, n_terms) in enumerate(self.query_side(queries)):
            out[i] = len(cols) / n_terms
        return out

    def score(self, queries: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """``[n, 3]`` features of pair i = (queries[i], items[i]), each distinct text processed once."""
        uq, q_idx = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
        ui, i_idx = np.unique(np.asarray(items, dtype=object), return_inverse=True)
        return self.pairs(self.query_side(list(uq)), q_idx.astype(np.int64), self.item_side(list(ui)),
                          i_idx.astype(np.int64))
