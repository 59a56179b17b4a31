"""The one fast CPU inference path: texts in, pooled (normalised) embeddings out, for every stage that encodes.

Where the time goes, and what this does about it (numbers in ``bench/encode.py``):

* Padding. Texts are tokenized once per chunk (the Rust tokenizer, in parallel), sorted by length and batched to
  the longest text in the batch, so a batch of 8-token queries costs 8 tokens, not ``max_length``. When every text
  in a batch has the same length no attention mask is passed at all (the unmasked SDPA kernel is faster).
* Precision. On CPUs with native bf16 (AVX512-BF16 / AMX) the Linear weights are cast to bf16 once at load and the
  forward runs under bf16 autocast: matmuls run on the bf16 units, while LayerNorm, the residual stream and the
  pooled output stay float32 (embedding cosine against fp32 stays above 0.9999). Casting the weights at load, not
  per call as plain autocast does, removes a copy of every weight per forward. ``force_fp32`` turns it off.
* Threads. One intra-op thread per CPU this process may run on (``sched_getaffinity``: containers and taskset
  count), unless ``OMP_NUM_THREADS`` or an explicit ``threads`` says otherwise; oversubscription is the main way
  to lose a factor of two on a small machine.
* Loading. ``load_encoder`` caches one ``Encoder`` per (model directory, precision) in the process.
* No ``torch.compile`` yet: not measured; at batch 1 the time is in the weight-bound matmuls, not Python.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np

from ..progress import step
from .registry import Backbone, backbone_for, resolve_model

Kind = Literal["query", "passage", "raw"]
Precision = Literal["auto", "bf16", "fp32"]


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); emulated bf16 is slower than fp32."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    if " avx512_bf16" in flags or " amx_bf16" in flags:
        return True
    import torch
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")  # non-Linux fallback


def default_threads() -> int:
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _to_mixed_bf16(model) -> None:
    """bf16 weights for every Linear (cast once); LayerNorm and embeddings stay float32."""
    import torch
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


class Encoder:
    """A model + tokenizer held once, encoding texts with length-sorted batches.

    >>> enc = load_encoder("me5-small")
    >>> q = enc.encode(["red summer dress"], kind="query")           # (1, 384) float32, L2-normalised
    >>> P = enc.encode(item_texts, kind="passage", batch_size=64)    # progress bar for long inputs
    >>> scores = P @ q[0]
    """

    def __init__(self, path: str | Path, backbone: Backbone | None = None, precision: Precision = "auto",
                 threads: int | None = None):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        self.path = Path(path)
        self.backbone = backbone or backbone_for(str(path))
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        self.precision: Precision = precision

        config = AutoConfig.from_pretrained(self.path)
        extra = {"add_pooling_layer": False} if config.model_type in ("bert", "xlm-roberta", "roberta") else {}
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no load report for the pooler we deliberately leave out
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(self.path, attn_implementation="sdpa", dtype=torch.float32,
                                                   **extra).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if self.precision == "bf16":
            _to_mixed_bf16(self.model)
        self.dim = int(config.hidden_size)
        self.max_length = min(self.backbone.max_length, int(getattr(config, "max_position_embeddings", 512)))

        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self._truncation: int | None = None
        pad = self.tokenizer.token_to_id("<pad>")
        self.pad_id = int(pad if pad is not None else (getattr(config, "pad_token_id", None) or 0))

    # ------------------------------------------------------------ public API
    def encode(self, texts: Sequence[str] | Iterable[str], kind: Kind = "passage", batch_size: int = 64,
               max_length: int | None = None, normalize: bool = True, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` (with the backbone's ``query: ``/``passage: `` prefix) -> float32 ``[n, dim]``."""
        total = len(texts) if hasattr(texts, "__len__") else None
        chunks = list(self.iter_encode(texts, kind, batch_size, max_length, normalize, progress, total))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def iter_encode(self, texts: Iterable[str], kind: Kind = "passage", batch_size: int = 64,
                    max_length: int | None = None, normalize: bool = True, progress: bool | None = None,
                    total: int | None = None, chunk_size: int = 8192) -> Iterator[np.ndarray]:
        """Stream: yield embeddings chunk by chunk, in input order, reading ``texts`` lazily.

        Sorting happens within a chunk of ``chunk_size`` texts, which bounds memory while keeping padding low.
        """
        prefix = {"query": self.backbone.query_prefix, "passage": self.backbone.passage_prefix, "raw": ""}[kind]
        self._set_truncation(max_length or self.max_length)
        show = progress if progress is not None else (total is None or total > 4 * batch_size)
        bar = step(f"encoding {kind}s", total=total) if show else contextlib.nullcontext(lambda k=1: None)
        it = iter(texts)
        with bar as advance:
            while chunk := list(islice(it, chunk_size)):
                yield self._encode_chunk([prefix + t for t in chunk], batch_size, normalize, advance)

    # ------------------------------------------------------------ internals
    def _set_truncation(self, max_length: int) -> None:
        if max_length != self._truncation:
            self.tokenizer.enable_truncation(max_length)
            self._truncation = max_length

    def _encode_chunk(self, texts: list[str], batch_size: int, normalize: bool, advance) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks in the first batch
        out = np.empty((len(ids), self.dim), np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._forward([ids[i] for i in idx], lengths[idx])
            advance(len(idx))
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _forward(self, ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
        import torch

        longest = int(lengths.max())
        batch = np.full((len(ids), longest), self.pad_id, np.int64)
        mask = np.zeros((len(ids), longest), np.int64)
        for row, x in enumerate(ids):
            batch[row, :len(x)] = x
            mask[row, :len(x)] = 1
        input_ids = torch.from_numpy(batch)
        attention = None if lengths.min() == longest else torch.from_numpy(mask)
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        return self._pool(hidden.float(), torch.from_numpy(mask), torch.from_numpy(lengths)).numpy()

    def _pool(self, hidden, mask, lengths):
        pooling = self.backbone.pooling
        if pooling == "mean":  # e5: mean over every real token, <s> and </s> included
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / lengths.unsqueeze(-1).to(hidden.dtype)
        if pooling == "cls":
            return hidden[:, 0]
        if pooling == "last":  # right padding: the last real token sits at length - 1
            return hidden[np.arange(hidden.shape[0]), lengths - 1]
        raise ValueError(f"unknown pooling {pooling!r}")


_CACHE: dict[tuple[str, str, int | None], Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str = "me5-small", precision: Precision = "auto", force_fp32: bool = False,
                 threads: int | None = None) -> Encoder:
    """The process-wide ``Encoder`` for a registered name, local path or hub id (loaded once per precision)."""
    if force_fp32:
        precision = "fp32"
    if precision == "auto":
        precision = "bf16" if cpu_has_bf16() else "fp32"
    path = resolve_model(name)
    key = (str(path.resolve()), precision, threads)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Encoder(path, backbone_for(name), precision=precision, threads=threads)
        return _CACHE[key]
