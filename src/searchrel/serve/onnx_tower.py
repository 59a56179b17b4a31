"""The query side of the request path: the student's query tower as an ONNX graph run by ONNX Runtime, and
``QueryEmbedder`` — what the query cache stores for a query (the tower vector and every query-cached feature).

* Export. ``export_query_tower`` traces ``student.query_tower`` (fp32, eval) with the TorchScript exporter
  (``dynamo=False``) on a *padded* two-row example, with dynamic batch and sequence axes: inputs ``input_ids`` and
  ``attention_mask`` (int64 ``[batch, seq]``), output ``embedding`` (float32 ``[batch, dim]``, L2-normalised).
  Under tracing transformers never takes its "no padding, so no mask" shortcut (``is_tracing`` is checked before the
  mask's contents), so the mask is always in the graph and SDPA attention exports as plain ops; the exported graph
  matches PyTorch fp32 to cosine 1 - 1e-6 on padded batches of mixed lengths (``tests/test_onnx_tower.py``), and the
  export checks that parity itself on its example before it renames the file into place.

  An earlier attempt saw cosine ~0.95 against PyTorch. It could not be reproduced with SDPA or eager attention,
  with padded or unpadded trace examples. Two mistakes give numbers that low when measured on me5-small
  (4 layers, untrained projection): leaving out the ``query: `` prefix on one side (cosine 0.79-0.93), and a
  PyTorch reference run in train mode, where dropout is on (cosine 0.975-0.99). ``export_query_tower`` exports and
  checks the tower in eval mode, and ``OnnxQueryEncoder`` takes the prefix and truncation from ``student.json``.
* int8. ``quantize_int8`` quantizes the MatMul/Gemm weights to int8 with ONNX Runtime's dynamic quantization
  (activations are quantized per batch at run time), one scale per output channel: on me5-small's 4-layer tower
  (untrained projection, 51 queries in 14 languages) per-tensor scales gave cosine to fp32 min 0.982 / mean 0.988,
  per-channel min 0.996 / mean 0.997 (reduce_range was worse, 0.940; leaving out any one group of layers gained
  little, the error is spread evenly). The word-embedding table is a Gather, not a MatMul, so it stays fp32; for
  me5-small (250k x 384) it is most of the file: 392 MB int8 against 414 MB fp32.
* Serving. ``OnnxQueryEncoder`` needs only ``onnxruntime``, ``tokenizers`` and numpy: the student's
  ``backbone/tokenizer.json`` via the Rust ``tokenizers`` library (same ids as ``Student.tokenize``), with the
  prefix and ``query_max_length`` from ``student.json``. torch and transformers are imported only to export.
* The zero-shot model. A student with the ``zero_shot`` feature needs that model's query vector on a cache miss
  too (me5-small: 12 layers, where the tower keeps 4). ``export_zero_shot`` exports its pooled backbone the same
  way (checked against PyTorch; the sentence-transformers head, if any, and the norm run in NumPy after it), for
  BERT/XLM-R families (``zero_shot_exportable``); Gemma-family models keep their PyTorch query side. Measured on
  one core (me5-small, one short query, p50): PyTorch bf16 jit 5.2 ms, ONNX fp32 8.3 ms, ONNX int8 4.3 ms; int8
  against fp32 query vectors: cosine min 0.994 / mean 0.997 on CrowdFlower's 496 en/es/de queries.
* Files. Exports live in the student directory (``query_tower.onnx``, ``query_tower.int8.onnx``); ``ensure_onnx``
  makes them when missing or older than ``model.safetensors``; the zero-shot model's are ``zero_shot.onnx`` and
  ``zero_shot.int8.onnx``. Every file is written to a temporary name in the
  same directory and renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from searchrel.index import model_version
from searchrel.models.backbone import pool
from searchrel.models.encode import TRACEABLE, Encoder, cpu_flags, pad_token_id
from searchrel.models.pairs import collate
from searchrel.models.registry import backbone_for, resolve_model
from searchrel.models.st_head import DenseHead
from searchrel.student.model import Student, load_student

ONNX_FILE = "query_tower.onnx"
INT8_FILE = "query_tower.int8.onnx"
ZERO_SHOT_FILE = "zero_shot.onnx"  # the zero_shot feature's model, for query texts
ZERO_SHOT_INT8_FILE = "zero_shot.int8.onnx"
WEIGHTS_FILE = "model.safetensors"  # as in searchrel.student.model (not imported: it pulls in torch)
CONFIG_FILE = "student.json"
TOKENIZER_FILE = "backbone/tokenizer.json"
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embedding"
PARITY_MIN_COSINE = 0.9999  # the export refuses a graph that does not match PyTorch on its own example


def _tmp_path(out: Path) -> Path:
    return out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _example(student) -> tuple:
    """A padded two-row batch (the second row shorter), so the attention-mask path is traced with real padding."""
    ids = student.tokenize(["red wooden dining table with four chairs", "mesa"], "query")
    if len(ids[0]) <= len(ids[1]):
        ids = [ids[0] + ids[1][1:], ids[1]]  # any longer first row will do: it only has to force padding
    return collate(ids, student.tokenizer.pad_token_id or 0)


def _export_checked(module: torch.nn.Module, inputs: tuple, out: Path, opset: int = 17, normalise: bool = False) -> Path:
    """Export ``module`` (eval, fp32) at ``inputs`` (``input_ids``, ``attention_mask``) to ``out`` with dynamic
    batch and sequence axes, and rename it into place only when ONNX Runtime's output matches PyTorch's on those
    inputs (cosine, after L2-normalising both when ``normalise``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()  # dropout off for the parity check too (the mode is restored below)
    tmp = _tmp_path(out)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape checks that hold for every input
            torch.onnx.export(
                module, inputs, str(tmp), dynamo=False, opset_version=opset,
                input_names=list(INPUTS), output_names=[OUTPUT],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                              OUTPUT: {0: "batch"}})
            expected = module(*inputs).numpy()
        got = _session(tmp, threads=1).run([OUTPUT], dict(zip(INPUTS, (t.numpy() for t in inputs))))[0]
        if normalise:
            expected = _normalise(expected)
        cos = float(np.min(np.sum(_normalise(got) * expected, 1)))
        if not cos > PARITY_MIN_COSINE:
            raise RuntimeError(f"the exported graph does not match PyTorch on a padded batch "
                               f"(min cosine {cos:.6f} <= {PARITY_MIN_COSINE})")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        module.train(was_training)
    return out


def export_query_tower(student, out_path: str | Path, opset: int = 17) -> Path:
    """Export ``student.query_tower`` (fp32, eval) to ONNX at ``out_path`` (atomically); returns the path."""
    tower = student.query_tower
    if any(p.dtype != torch.float32 for p in tower.parameters()):
        tower = copy.deepcopy(tower).float()  # a copy, so the student keeps its precision
    return _export_checked(tower, _example(student), Path(out_path), opset)


class _Pooled(torch.nn.Module):
    """A backbone's pooled last hidden state of ``(input_ids, attention_mask)``: the zero-shot model's vector before
    its sentence-transformers head (if any) and the L2 norm, both applied after ONNX Runtime in NumPy."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)


def zero_shot_exportable(name: str) -> bool:
    """Whether the zero-shot model ``name`` is of a family whose export is measured (BERT/XLM-R: me5, MiniLM);
    other models (Gemma) keep their query side in PyTorch."""
    from transformers import AutoConfig  # transformers: heavy (seconds), imported where a model is loaded

    return AutoConfig.from_pretrained(resolve_model(name)).model_type in TRACEABLE


def export_zero_shot(name: str, out_path: str | Path, opset: int = 17) -> Path:
    """Export the zero-shot model ``name`` (fp32: the pooled backbone, for query texts) to ONNX at ``out_path``,
    checked against PyTorch on a padded batch; returns the path."""
    enc = Encoder(resolve_model(name), backbone_for(name), precision="fp32", backend="eager", threads=1)
    texts = [enc.backbone.query_prefix + t for t in ("red wooden dining table with four chairs", "mesa")]
    ids = [e.ids for e in enc.tokenizer.encode_batch(texts)]
    return _export_checked(_Pooled(enc.model, enc.backbone.pooling), collate(ids, enc.pad_id), Path(out_path), opset,
                           normalise=True)


def cpu_has_vnni() -> bool:
    """True when the CPU has integer dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8). Without them
    ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights with a pairwise add that saturates at
    int16, which full 8-bit weights can overflow (seen on an AVX2-only AMD EPYC: min cosine 0.92 against fp32)."""
    flags = cpu_flags()
    return flags is None or vnni_or_not_x86(flags)  # None: not Linux, no flags to read; keep the full range


def vnni_or_not_x86(flags: Sequence[str]) -> bool:
    """From /proc/cpuinfo's flags: False only for an AVX2 CPU without VNNI (other CPUs, e.g. ARM, do not take
    the saturating path)."""
    flags = set(flags)
    return "avx2" not in flags or bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def quantize_int8(onnx_path: str | Path, out_path: str | Path, op_types: Sequence[str] = ("MatMul", "Gemm"),
                  per_channel: bool = True, exclude: Sequence[str] = (), reduce_range: bool | None = None) -> Path:
    """Dynamic int8 quantization (QInt8 weights of ``op_types``, one scale per output channel unless
    ``per_channel`` is False; nodes named in ``exclude`` stay fp32) of an fp32 ONNX file; written atomically.
    ``reduce_range`` quantizes the weights to 7 bits, which keeps x86 kernels without VNNI from saturating; None:
    where this CPU lacks VNNI (``cpu_has_vnni``) — the quantized file is made on the machine that serves it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # onnxruntime: the serve extra

    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    out = Path(out_path)
    tmp = _tmp_path(out)
    try:
        quantize_dynamic(Path(onnx_path), tmp, op_types_to_quantize=list(op_types), weight_type=QuantType.QInt8,
                         per_channel=per_channel, reduce_range=reduce_range, nodes_to_exclude=list(exclude))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _stale(path: Path, *sources: Path) -> bool:
    if not path.is_file():
        return True
    mtime = path.stat().st_mtime_ns
    return any(s.is_file() and s.stat().st_mtime_ns > mtime for s in sources)


def ensure_onnx(student_dir: str | Path, int8: bool = False) -> Path:
    """The student's exported query tower (``query_tower.onnx``, or ``query_tower.int8.onnx`` with ``int8``),
    exported (and quantized) into the student directory first when missing or older than ``model.safetensors``."""
    student_dir = Path(student_dir)
    weights = student_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{student_dir}: not a student directory ({WEIGHTS_FILE} is missing)")
    fp32 = student_dir / ONNX_FILE
    if _stale(fp32, weights, student_dir / CONFIG_FILE):
        export_query_tower(load_student(student_dir), fp32)
    if not int8:
        return fp32
    q8 = student_dir / INT8_FILE
    if _stale(q8, fp32):
        quantize_int8(fp32, q8)
    return q8


def _session(path: Path, threads: int | None = None, spin: bool = False):
    import onnxruntime as ort  # onnxruntime: the serve extra

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or _available_cores()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _pad_id(student_dir: Path, tokenizer) -> int:
    """The pad token's id, as the student's transformers tokenizer has it (tokenizer_config.json's pad_token)."""
    cfg_file = student_dir / "backbone" / "tokenizer_config.json"
    if cfg_file.is_file():
        pad = json.loads(cfg_file.read_text()).get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str) and tokenizer.token_to_id(pad) is not None:
            return tokenizer.token_to_id(pad)
    if tokenizer.padding is not None:
        return tokenizer.padding["pad_id"]
    return 0  # masked out everywhere: the value does not change the embedding


class OnnxTextEncoder:
    """Texts in, L2-normalised float32 ``[n, dim]`` embeddings out, through an exported graph on ONNX Runtime (CPU).

    ``onnx_path`` maps ``(input_ids, attention_mask)`` to one vector per row; ``tokenizer`` (a loaded Rust
    ``tokenizers.Tokenizer``, set here to no padding and the truncation) tokenises ``prefix + text`` truncated to ``max_length`` tokens; ``head`` (a
    sentence-transformers Dense head, NumPy) is applied before the norm. ``threads`` defaults to the cores this
    process may run on. ``spin`` lets ONNX Runtime's idle worker threads busy-wait for the next call (its
    default); off here, because on a CPU shared with other work (the index, the HTTP server, other processes)
    spinning threads take the cores that work needs: on a loaded 2-core machine, 2 threads, me5-small's 4-layer
    tower, one short query, p50 was 14.5 ms spinning against 3.7 ms not (int8: 5.5 ms against 1.7 ms); with one
    thread spinning changed nothing. Safe to call from several threads (ONNX Runtime sessions and Rust tokenizers are).
    """

    def __init__(self, onnx_path: str | Path, tokenizer, prefix: str, max_length: int, pad_id: int,
                 threads: int | None = None, batch_size: int = 256, spin: bool = False,
                 head: DenseHead | None = None):
        self.path = Path(onnx_path)
        self.prefix, self.max_length, self.pad_id, self.head = prefix, int(max_length), int(pad_id), head
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()  # padded here, to the longest row of each batch
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.threads = threads or _available_cores()
        self.session = _session(self.path, self.threads, spin)
        self.dim = head.dim if head is not None else int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the ONNX file's bytes: names the model in shared cache keys (same file, same vectors)."""
        h = hashlib.blake2b(digest_size=8)
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch([self.prefix + t for t in texts])]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in rows)
            input_ids = np.full((len(rows), width), self.pad_id, np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            got = self.session.run([OUTPUT], {"input_ids": input_ids, "attention_mask": mask})[0]
            out[rows] = self.head(got) if self.head is not None else got
        return _normalise(out)

    __call__ = encode


class OnnxQueryEncoder(OnnxTextEncoder):
    """The student's exported query tower. ``student_dir`` (default: the file's directory) supplies ``student.json``
    (prefix, max length) and ``backbone/tokenizer.json``."""

    def __init__(self, onnx_path: str | Path, student_dir: str | Path | None = None, threads: int | None = None,
                 batch_size: int = 256, spin: bool = False):
        from tokenizers import Tokenizer  # tokenizers/transformers: heavy (seconds), imported where a model is loaded

        self.student_dir = Path(student_dir) if student_dir is not None else Path(onnx_path).parent
        cfg = json.loads((self.student_dir / CONFIG_FILE).read_text())
        tokenizer = Tokenizer.from_file(str(self.student_dir / TOKENIZER_FILE))
        super().__init__(onnx_path, tokenizer, cfg.get("query_prefix", ""), int(cfg.get("query_max_length", 32)),
                         _pad_id(self.student_dir, tokenizer), threads, batch_size, spin)

    @classmethod
    def from_student_dir(cls, student_dir: str | Path, int8: bool = False, **kw) -> "OnnxQueryEncoder":
        """The encoder for a student directory, exporting (and quantizing) its query tower first if needed."""
        return cls(ensure_onnx(student_dir, int8=int8), student_dir, **kw)


def ffn_output_matmuls(onnx_path: str | Path) -> list[str]:
    """The MatMuls of each layer's feed-forward output projection (``.../layer.N/output/dense/MatMul``) in an
    exported BERT/XLM-R graph: the zero-shot model's int8 copy keeps them fp32. Measured on me5-small (CrowdFlower
    test, a trained student, NDCG@8): every MatMul in int8 cost 0.4 points (es and de 0.5), these 12 kept fp32 cost
    nothing (0.844 against 0.843 fp32) for 6.6 ms a query against 4.6 (fp32: 8.3); keeping the last 4 layers fp32
    instead cost as much as quantizing all."""
    import onnx  # the serve extra

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name
            and "/attention/" not in n.name]


def zero_shot_query_encoder(name: str, student_dir: str | Path, int8: bool = False, **kw) -> OnnxTextEncoder:
    """The zero-shot model ``name``'s query side on ONNX Runtime: the same vectors as
    ``load_encoder(name).encode(texts, kind="query")`` (cosine 1 - 1e-6 in fp32), exported (and quantized) into
    ``student_dir`` first when missing or older than the student's config."""
    student_dir = Path(student_dir)
    path, backbone = resolve_model(name), backbone_for(name)
    fp32 = student_dir / ZERO_SHOT_FILE
    if _stale(fp32, student_dir / CONFIG_FILE, path / "config.json"):
        export_zero_shot(name, fp32)
    onnx_path = fp32
    if int8:
        onnx_path = student_dir / ZERO_SHOT_INT8_FILE
        if _stale(onnx_path, fp32):
            quantize_int8(fp32, onnx_path, exclude=ffn_output_matmuls(fp32))
    from tokenizers import Tokenizer  # tokenizers/transformers: heavy (seconds), imported where a model is loaded

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    config = json.loads((path / "config.json").read_text())
    return OnnxTextEncoder(onnx_path, tokenizer, backbone.query_prefix,
                           min(backbone.max_length, config.get("max_position_embeddings", 512)),
                           pad_token_id(tokenizer, config.get("pad_token_id")), head=DenseHead.load(path), **kw)


class QueryEmbedder:
    """Query texts -> ``[tower vector | each query-cached feature's query side]`` (what the cache stores), in one
    call per batch; ``split`` takes a cached row apart again.

    With ``onnx``, the student's query tower and the zero-shot model behind a ``zero_shot`` feature (BERT/XLM-R
    families) both run on ONNX Runtime, int8 with ``int8``; a feature whose model is not exportable keeps its
    PyTorch query side. ``fingerprint`` names every model on the path, so cache entries of another set-up are
    never read."""

    def __init__(self, student: Student, student_dir: Path, onnx: bool = True, int8: bool = False):
        self.student = student
        self.cached = [f for f in student.features if f.query_cached]
        # features whose query side is one embedding model's vector (zero_shot, zero_shot_product) share it: the
        # model runs once per query and the cached row holds its vector once
        self.source = {f.name: getattr(f, "query_model", None) or f.name for f in self.cached}
        self.sides = {}
        for f in self.cached:
            self.sides.setdefault(self.source[f.name], f)
        self.onnx_features: dict[str, OnnxTextEncoder] = {}  # by model name
        if onnx:
            self.tower = OnnxQueryEncoder.from_student_dir(student_dir, int8=int8)
            prints = [self.tower.fingerprint]
            for key, f in self.sides.items():
                name = getattr(f, "query_model", None)
                if name is not None and zero_shot_exportable(name):
                    self.onnx_features[key] = zero_shot_query_encoder(name, student_dir, int8=int8)
                    prints.append(self.onnx_features[key].fingerprint)
            self.fingerprint = prints[0] if len(prints) == 1 else hashlib.blake2b(
                "/".join(prints).encode(), digest_size=8).hexdigest()
        else:
            self.tower = None
            self.fingerprint = model_version(student_dir)[:16]
        widths = [student.config.dim] + [f.query_dim for f in self.sides.values()]
        self.bounds = np.cumsum([0, *widths])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        tower = self.tower.encode(texts) if self.tower is not None else self.student.embed(texts, "query")
        sides = [self.onnx_features[k].encode(texts) if k in self.onnx_features else f.query_side(texts)
                 for k, f in self.sides.items()]
        return np.concatenate([tower, *sides], 1)

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A cached ``[n, width]`` block -> the tower vectors and each query-cached feature's query side."""
        parts = [rows[:, a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        by_source = dict(zip(self.sides, parts[1:]))
        return parts[0], {f.name: by_source[self.source[f.name]] for f in self.cached}
