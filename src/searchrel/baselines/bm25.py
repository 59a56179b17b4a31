"""BM25 over the whole catalogue (bm25s), scoring given (query, item) pairs as a re-ranker would.

Statistics (IDF, average length) come from every item of the catalogue, not only the judged ones, so a
pair's score does not depend on which other pairs were judged. Tokens: lower-cased Unicode words, and
for CJK scripts (written without spaces) character unigrams and bigrams.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import bm25s
import numpy as np

from searchrel.annotate.text import build_item_texts

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")


def tokenize(text: str) -> list[str]:
    """Lower-cased, accent-normalised word tokens; CJK runs become character unigrams and bigrams."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    tokens: list[str] = []
    for w in _WORD.findall(text):
        if _CJK_RUN.match(w):
            tokens.extend(w)
            tokens.extend(w[i:i + 2] for i in range(len(w) - 1))
        else:
            tokens.append(w)
    return tokens


class BM25Scorer:
    """Index item texts once; score any (query, item index) pairs against that index."""

    def __init__(self, item_texts: Sequence[str], k1: float = 1.2, b: float = 0.75):
        corpus = [tokenize(t) or ["\u2205"] for t in item_texts]  # an empty item still gets a row
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.retriever.index(corpus, show_progress=False)
        self.n_items = len(corpus)

    def score_all(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every item, in index order."""
        tokens = [t for t in tokenize(query) if t in self.retriever.vocab_dict]
        if not tokens:
            return np.zeros(self.n_items, dtype=np.float32)
        return self.retriever.get_scores(tokens)

    def score_pairs(self, queries: Sequence[str], item_index: np.ndarray) -> np.ndarray:
        """Score pair i = (queries[i], item_index[i]); each distinct query is scored once."""
        item_index = np.asarray(item_index)
        out = np.zeros(len(queries), dtype=np.float32)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        for q, rows in by_query.items():
            out[rows] = self.score_all(q)[item_index[rows]]
        return out


def bm25_predictions(ds, text_config, split: str = "all", k1: float = 1.2, b: float = 0.75):
    """Score every judged pair of ``split`` with BM25 over the whole catalogue: ``query_id, item_id, score``."""
    texts = build_item_texts(ds.items, text_config)
    scorer = BM25Scorer(texts.tolist(), k1=k1, b=b)
    position = {item_id: i for i, item_id in enumerate(texts.index)}
    pairs = ds.pairs(split)
    scores = scorer.score_pairs(pairs["query"].tolist(), pairs["item_id"].map(position).to_numpy())
    return pairs[["query_id", "item_id"]].assign(score=scores)
