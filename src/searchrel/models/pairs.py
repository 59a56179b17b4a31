"""Turning (query, item) pairs into token ids for a cross-encoder, and length-bucketed batches of them.

Encoders get the tokenizer's own pair encoding (``[CLS] query [SEP] item [SEP]``), truncating only the item.
Decoder LLMs get a prompt whose question comes last, so the last token — the one pooled — has read both;
the item is cut to fit, never the question. Batches hold texts of similar length and pad only to the
longest in the batch: on a CPU, padding is pure waste.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DECODER_PROMPT = ("Query: {query}\nItem: ", "\nIs this item relevant to the query?")


def encode_pairs(tokenizer, queries: Sequence[str], items: Sequence[str], max_length: int,
                 is_decoder: bool = False, query_prefix: str = "", passage_prefix: str = "") -> list[list[int]]:
    """Token ids of each (query, item) pair, at most ``max_length`` long."""
    if len(queries) != len(items):
        raise ValueError(f"{len(queries)} queries but {len(items)} items")
    queries = [query_prefix + q for q in queries]
    items = [passage_prefix + t for t in items]
    if not is_decoder:
        enc = tokenizer(list(queries), list(items), truncation="only_second", max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=False)
        return enc["input_ids"]
    head, tail = DECODER_PROMPT
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    q_ids = tokenizer([head.format(query=q) for q in queries], add_special_tokens=False)["input_ids"]
    i_ids = tokenizer(list(items), add_special_tokens=False)["input_ids"]
    out = []
    for q, i in zip(q_ids, i_ids):
        q = q[: max(1, max_length // 2)]
        room = max(0, max_length - len(bos) - len(q) - len(tail_ids))
        out.append(bos + q + i[:room] + tail_ids)
    return out


def length_batches(lengths: Sequence[int], batch_size: int, seed: int | None = None) -> list[np.ndarray]:
    """Indices grouped into batches of similar length. With a seed, ties and batch order are shuffled
    (deterministically: the same seed gives the same batches); without, batches run shortest first."""
    lengths = np.asarray(lengths)
    if seed is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def query_batches(query_codes: Sequence[int], batch_size: int, seed: int) -> list[np.ndarray]:
    """Batches of one query's pairs each (a query with more than ``batch_size`` pairs gives several), shuffled
    deterministically by ``seed``: what a listwise loss needs to compare a query's items with each other."""
    codes = np.asarray(query_codes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(codes))
    order = order[np.argsort(codes[order], kind="stable")]  # grouped by query, shuffled within
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    batches = []
    for rows in np.split(order, bounds):
        n_chunks = max(1, -(-len(rows) // batch_size))
        batches.extend(np.array_split(rows, n_chunks))  # even chunks: no 1-item remainder
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for one batch, padded to its longest row."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        input_ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[r, : len(x)] = 1
    return input_ids, mask
