"""Zero-shot embedding baseline (the analogue of Pinterest's SearchSage): cosine of query and item embeddings.

Each unique query and item text is embedded once, through the shared fast path in ``searchrel.models.encode``,
then every judged (query, item) pair is scored by the dot product of the two L2-normalised vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from searchrel.annotate.text import build_item_texts
from searchrel.models.encode import Precision, load_encoder


def _unique(texts: Sequence[str], used: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct texts among ``texts[used]`` and, for each position of ``used``, its row among them."""
    uniq, inverse = np.unique(np.asarray([texts[i] or "" for i in used], dtype=object), return_inverse=True)
    return list(uniq), inverse


def embed_scores(query_texts: Sequence[str], item_texts: Sequence[str],
                 pairs: Sequence[tuple[int, int]] | np.ndarray | tuple[np.ndarray, np.ndarray],
                 model: str = "me5-small", batch_size: int = 64, max_length: int | None = 512,
                 precision: Precision = "auto") -> np.ndarray:
    """Cosine similarity per (query index, item index) pair -> float32 ``[n_pairs]``.

    ``pairs`` is a list of ``(qi, ii)`` tuples, an ``[n, 2]`` array, or a tuple ``(query_idx, item_idx)`` of arrays.
    Queries get the backbone's query prefix, items its passage prefix (``query: ``/``passage: `` for e5).

    >>> embed_scores(["red dress"], ["passage about a red dress", "a tractor"], [(0, 0), (0, 1)])
    array([0.87, 0.78], dtype=float32)  # doctest: +SKIP
    """
    if isinstance(pairs, tuple) and len(pairs) == 2 and not np.isscalar(pairs[0]):
        q_idx, i_idx = (np.asarray(a, dtype=np.int64) for a in pairs)
    else:
        arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        q_idx, i_idx = arr[:, 0], arr[:, 1]
    if len(q_idx) == 0:
        return np.zeros(0, np.float32)
    # only texts that appear in a pair are embedded, each once
    q_used, q_row = np.unique(q_idx, return_inverse=True)
    i_used, i_row = np.unique(i_idx, return_inverse=True)
    q_uniq, q_map = _unique(query_texts, q_used)
    i_uniq, i_map = _unique(item_texts, i_used)

    enc = load_encoder(model, precision=precision)
    q_emb = enc.encode(q_uniq, kind="query", batch_size=batch_size, max_length=max_length)
    i_emb = enc.encode(i_uniq, kind="passage", batch_size=batch_size, max_length=max_length)
    q_vec = q_emb[q_map[q_row]]
    i_vec = i_emb[i_map[i_row]]
    return np.einsum("nd,nd->n", q_vec, i_vec).astype(np.float32)


def embed_predictions(ds, text_config, split: str = "all", model: str = "me5-small", precision: Precision = "auto"):
    """Cosine of query and item embeddings for every judged pair of ``split``: ``query_id, item_id, score``."""
    texts = build_item_texts(ds.items, text_config)
    position = {item_id: i for i, item_id in enumerate(texts.index)}
    pairs = ds.pairs(split)
    queries = pairs["query"].tolist()
    scores = embed_scores(queries, texts.tolist(), (np.arange(len(pairs)), pairs["item_id"].map(position).to_numpy()),
                          model=model, precision=precision)
    return pairs[["query_id", "item_id"]].assign(score=scores)
