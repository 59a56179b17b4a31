"""The one fast CPU inference path: texts in, pooled (normalised) embeddings out, for every stage that encodes.

Where the time goes, and what this does about it (numbers in ``bench/encode.py``):

* Padding. Texts are tokenized once per chunk (the Rust tokenizer, in parallel), sorted by length and batched to
  the longest text in the batch, so a batch of 8-token queries costs 8 tokens, not ``max_length``. When every text
  in a batch has the same length no attention mask is passed at all (the unmasked SDPA kernel is faster).
* Precision. On CPUs with native bf16 (AVX512-BF16 / AMX) the eager backend casts the Linear weights to bf16
  once at load and runs the forward under bf16 autocast: matmuls run on the bf16 units, while LayerNorm, the
  residual stream and the pooled output stay float32 (embedding cosine against fp32 stays above 0.9999). Casting
  the weights at load, not per call as plain autocast does, removes a copy of every weight per forward. The jit
  backend (below) runs the whole model in bf16 (cosine against fp32 still above 0.9999). ``force_fp32`` turns
  bf16 off.
* Threads. One intra-op thread per CPU this process may run on (``sched_getaffinity``: containers and taskset
  count), unless ``OMP_NUM_THREADS`` or an explicit ``threads`` says otherwise; oversubscription is the main way
  to lose a factor of two on a small machine.
* Backend. ``backend="jit"`` (the default with bf16; ``"auto"``) casts the whole model to bf16, traces it once with
  ``torch.jit.trace`` on a padded example (so the attention-mask path is in the graph: under tracing transformers
  always materialises the mask), and keeps one ``torch.jit.freeze`` copy of that graph per batch shape, run with
  oneDNN Graph fusion (fused oneDNN partitions instead of one PyTorch op at a time). Each copy only ever sees one
  shape, so the profiling executor specialises it once and never falls back (in a trial, one copy fed six shapes
  ran the sixth, 3x80 tokens, at ~0.57 s per call, many times the eager time). Shapes are bounded by bucketing:
  sequence length rounded up to a multiple of 4 (<= 16 tokens), 8 (<= 32), 16 (<= 128) or 64; batch rows to a
  power of two (or ``batch_size``); at most ``MAX_SHAPES`` copies are kept (least recently used dropped). A new
  shape costs a profiling call plus a oneDNN compile (a few hundred ms) and ~27 MB. ``backend="eager"`` is the
  plain transformers forward; ``SEARCHREL_ENCODE_BACKEND=eager`` switches the default without code changes.
* Loading. ``load_encoder`` caches one ``Encoder`` per (model directory, precision, threads, backend) in the process.
* ``torch.compile`` measured slower than the frozen trace here (and ~25 s to compile per shape); not used.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
import torch

from searchrel.models import embed_cache
from searchrel.models.registry import Backbone, backbone_for, resolve_model
from searchrel.models.st_head import DenseHead
from searchrel.progress import step

Kind = Literal["query", "passage", "raw"]
Precision = Literal["auto", "bf16", "fp32"]
Backend = Literal["auto", "eager", "jit"]

TRACEABLE = ("bert", "xlm-roberta", "roberta")  # model types the jit backend is used for
PLURAL = {"query": "queries", "passage": "passages", "raw": "texts"}  # progress bars' words
CACHE_MIN = 32  # chunks of at least this many texts use the disk cache (batch jobs, not served queries)
MAX_SHAPES = 24  # frozen jit copies kept per Encoder: each holds its compiled oneDNN partitions (~27 MB, me5-small)


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo, or None where there is none to read (not Linux)."""
    try:
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), None)
    except OSError:
        return None
    return set(line.partition(":")[2].split()) if line is not None else None


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); emulated bf16 is slower than fp32."""
    if (cpu_flags() or set()) & {"avx512_bf16", "amx_bf16"}:
        return True
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX")  # non-Linux fallback


def default_threads() -> int:
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def pad_token_id(tokenizer, config_pad_id: int | None) -> int:
    """The id batches are padded with: the tokenizer's ``<pad>`` token, else the model config's ``pad_token_id``, else
    0 (padding is masked out, so any id gives the same embeddings)."""
    pad = tokenizer.token_to_id("<pad>")
    return int(pad if pad is not None else (config_pad_id or 0))


def bucket_length(n: int, cap: int) -> int:
    """Sequence length a batch whose longest text has ``n`` tokens is padded to on the jit backend (<= ``cap``)."""
    step = 4 if n <= 16 else 8 if n <= 32 else 16 if n <= 128 else 64
    return min(cap, -(-n // step) * step)


def bucket_rows(n: int, batch_size: int) -> int:
    """Rows a batch of ``n`` texts is padded to on the jit backend: the next power of two, at most ``batch_size``."""
    return min(1 << max(0, n - 1).bit_length(), max(n, batch_size))


def resolve_backend(backend: Backend, precision: str) -> str:
    if backend == "auto":
        backend = os.environ.get("SEARCHREL_ENCODE_BACKEND", "auto") or "auto"  # type: ignore[assignment]
    if backend == "auto":
        return "jit" if precision == "bf16" else "eager"
    if backend not in ("eager", "jit"):
        raise ValueError(f"unknown encoder backend {backend!r} (eager, jit or auto)")
    return backend


@contextlib.contextmanager
def _onednn_fusion():
    """oneDNN Graph fusion on for our graphs only: the flag is process-wide, so it is restored afterwards."""
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def _last_hidden(model):
    """``model(ids, mask).last_hidden_state`` as a plain eval module for ``torch.jit.trace`` (no ModelOutput)."""
    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return LastHidden(model).eval()


def _to_mixed_bf16(model) -> None:
    """bf16 weights for every Linear (cast once); LayerNorm and embeddings stay float32."""
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
                 threads: int | None = None, backend: Backend = "auto"):
        from tokenizers import Tokenizer  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
            AutoConfig,
            AutoModel,
        )
        from transformers.utils import logging as hf_logging  # transformers: heavy, imported where a model is loaded

        self.path = Path(path)
        self.backbone = backbone or backbone_for(str(path))
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        self.precision: Precision = precision
        self.backend = resolve_backend(backend, precision)
        config = AutoConfig.from_pretrained(self.path)
        if config.model_type not in TRACEABLE and self.backend == "jit":
            self.backend = "eager"  # the trace is measured on BERT-family graphs only (Gemma's masks do not trace)

        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # no config notes, no load report for the pooler we deliberately leave out
        hf_logging.disable_progress_bar()
        try:
            extra = {"add_pooling_layer": False} if config.model_type in ("bert", "xlm-roberta", "roberta") else {}
            self.model = AutoModel.from_pretrained(self.path, attn_implementation="sdpa", dtype=torch.float32,
                                                   **extra).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if self.precision == "bf16" and self.backend == "jit":
            self.model.to(torch.bfloat16)  # pure bf16: no casts in the graph, half the embedding memory
        elif self.precision == "bf16":
            _to_mixed_bf16(self.model)
        self.head = DenseHead.load(self.path)  # a sentence-transformers folder's projections (EmbeddingGemma)
        self.hidden = int(config.hidden_size)
        self.dim = self.head.dim if self.head else self.hidden
        self.positions = int(getattr(config, "max_position_embeddings", 512))
        self.max_length = min(self.backbone.max_length, self.positions)
        # eager Gemma on 2 cores: 128 items took 5.5 s in batches of 8, 6.8 s of 16, 17 s of 64 (padding, masks)
        self.max_batch = 1 << 30 if config.model_type in TRACEABLE else 8
        self._disk = None  # the disk embedding cache, opened on first batch job
        self._traced = None  # the one trace (jit backend), frozen once per shape into self._frozen
        self._frozen: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._jit_lock = threading.Lock()

        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self._truncation: int | None = None
        self.pad_id = pad_token_id(self.tokenizer, getattr(config, "pad_token_id", None))

    @classmethod
    def for_module(cls, model, pad_id: int, pooling: str = "mean", precision: Precision = "auto",
                   backend: Backend = "auto", threads: int | None = None) -> "Encoder":
        """The fast path around a model already in memory (a teacher's backbone, say), fed token ids with
        ``encode_ids``. The model is converted in place (bf16, and traced on the jit backend): hand it over."""
        self = cls.__new__(cls)
        self.path = None
        self.backbone = SimpleNamespace(name="in-memory", query_prefix="", passage_prefix="", pooling=pooling)
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        self.precision = precision
        self.backend = resolve_backend(backend, precision)
        self.model = model.eval()
        if self.precision == "bf16" and self.backend == "jit":
            self.model.to(torch.bfloat16)
        elif self.precision == "bf16":
            _to_mixed_bf16(self.model)
        self.dim = self.hidden = int(model.config.hidden_size)
        self.positions = int(getattr(model.config, "max_position_embeddings", 512))
        self.max_length = self.positions
        self._traced, self._frozen, self._jit_lock = None, OrderedDict(), threading.Lock()
        self.tokenizer, self._truncation, self.pad_id = None, None, int(pad_id)
        self.head, self._disk, self.max_batch = None, None, 1 << 30
        return self

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
        self._set_truncation(min(max_length or self.max_length, self.max_length))  # never past the position table
        show = progress if progress is not None else (total is None or total > 4 * batch_size)
        bar = step(f"encoding {PLURAL[kind]}", total=total) if show else contextlib.nullcontext(lambda k=1: None)
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
        """Embeddings of one chunk; batch jobs (``CACHE_MIN`` texts or more) read and fill the disk cache."""
        if self.path is None or len(texts) < CACHE_MIN or not embed_cache.enabled():
            return self._compute_chunk(texts, batch_size, normalize, advance)
        if self._disk is None:
            self._disk = embed_cache.EmbeddingCache(embed_cache.fingerprint(self.path, self.precision))
        ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        # a text shorter than the truncation embeds the same under any truncation: key it as untruncated
        limit = self._truncation or 0
        keys = [self._disk.key(t, limit if len(x) >= limit else 0, normalize) for t, x in zip(texts, ids)]
        found = self._disk.get(keys)
        miss = [i for i, v in enumerate(found) if v is None]
        advance(len(texts) - len(miss))
        out = np.empty((len(texts), self.dim), np.float32)
        for i, v in enumerate(found):
            if v is not None:
                out[i] = v
        if miss:
            new = self._compute_chunk([texts[i] for i in miss], batch_size, normalize, advance,
                                      ids=[ids[i] for i in miss])
            out[miss] = new
            self._disk.put([keys[i] for i in miss], new)
        return out

    def _compute_chunk(self, texts: list[str], batch_size: int, normalize: bool, advance,
                       ids: list[list[int]] | None = None) -> np.ndarray:
        batch_size = min(batch_size, self.max_batch)
        if ids is None:
            ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        if self.head is None:
            return self.encode_ids(ids, batch_size, normalize, advance)
        out = self.head(self.encode_ids(ids, batch_size, False, advance))
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def encode_ids(self, ids: list[list[int]], batch_size: int = 64, normalize: bool = False,
                   advance=lambda k=1: None) -> np.ndarray:
        """Pooled hidden states ``[n, dim]`` of already tokenized texts (e.g. a cross-encoder's pairs), in order."""
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks in the first batch
        out = np.empty((len(ids), self.hidden), np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._forward([ids[i] for i in idx], lengths[idx], batch_size)
            advance(len(idx))
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _forward(self, ids: list[list[int]], lengths: np.ndarray, batch_size: int) -> np.ndarray:
        if self.backend == "jit":
            return self._forward_jit(ids, lengths, batch_size)
        return self._forward_eager(ids, lengths)

    def _forward_eager(self, ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
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

    def _forward_jit(self, ids: list[list[int]], lengths: np.ndarray, batch_size: int) -> np.ndarray:
        n = len(ids)
        rows = bucket_rows(n, batch_size)
        width = bucket_length(int(lengths.max()), self.positions)
        batch = np.full((rows, width), self.pad_id, np.int64)
        mask = np.zeros((rows, width), np.int64)
        mask[n:, 0] = 1  # filler rows attend to one pad token (an all-masked row would give NaN), then are dropped
        for row, x in enumerate(ids):
            batch[row, :len(x)] = x
            mask[row, :len(x)] = 1
        full = np.ones(rows, np.int64)
        full[:n] = lengths
        input_ids, attention = torch.from_numpy(batch), torch.from_numpy(mask)
        module = self._jit_module(rows, width)
        with torch.inference_mode(), _onednn_fusion():
            hidden = module(input_ids, attention)
        return self._pool(hidden.float(), attention, torch.from_numpy(full))[:n].numpy()

    def _jit_module(self, rows: int, width: int):
        """The frozen graph for one (rows, width) shape: traced once, frozen per shape, least recently used dropped."""
        key = (rows, width)
        with self._jit_lock:
            module = self._frozen.get(key)
            if module is not None:
                self._frozen.move_to_end(key)
                return module
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about Python bools in the mask helpers (constant here)
                if self._traced is None:
                    from transformers.utils import (
                        logging as hf_logging,  # transformers: heavy, imported where a model is loaded
                    )

                    hf_logging.set_verbosity_error()  # tracing reads model.loss_function, which logs a note
                    # padded example: row 1 masks its second half, so the masked-attention path is what gets traced
                    example = torch.full((2, 8), self.pad_id, dtype=torch.long)
                    example[:, 0] = 0
                    mask = torch.ones(2, 8, dtype=torch.long)
                    mask[1, 4:] = 0
                    self._traced = torch.jit.trace(_last_hidden(self.model), (example, mask), strict=False,
                                                   check_trace=False)
                module = torch.jit.freeze(self._traced)
            self._frozen[key] = module
            while len(self._frozen) > MAX_SHAPES:
                self._frozen.popitem(last=False)
            return module

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """The (rows, tokens) shapes the jit backend holds a compiled graph for."""
        return list(self._frozen)

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


_CACHE: dict[tuple[str, str, int | None, str], Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str = "me5-small", precision: Precision = "auto", force_fp32: bool = False,
                 threads: int | None = None, backend: Backend = "auto") -> Encoder:
    """The process-wide ``Encoder`` for a registered name, local path or hub id (loaded once per precision/backend)."""
    if force_fp32:
        precision = "fp32"
    if precision == "auto":
        precision = "bf16" if cpu_has_bf16() else "fp32"
    backend = resolve_backend(backend, precision)
    path = resolve_model(name)
    key = (str(path.resolve()), precision, threads, backend)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Encoder(path, backbone_for(name), precision=precision, threads=threads, backend=backend)
        return _CACHE[key]
