"""The ONNX query tower: parity with the PyTorch student on padded batches, int8, and re-export on new weights."""

import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from searchrel.serve.onnx_tower import (  # noqa: E402
    INT8_FILE,
    ONNX_FILE,
    OnnxQueryEncoder,
    ensure_onnx,
    export_query_tower,
    quantize_int8,
)
from searchrel.student.config import StudentConfig  # noqa: E402
from searchrel.student.model import load_student, new_student  # noqa: E402

# mixed lengths (1 to 32+ tokens, so some rows are truncated and most are padded), several languages and scripts
QUERIES = ["red table", "blue cotton dress", "mesa de madera roja", "木製のテーブル", "Kleid blau",
           "robe d'été bleue", "x", "", "  Spaces   and UPPER case ", "Ελληνικά κείμενο",
           "a very long query about a red wooden dining table of solid oak with a summer photo " * 3,
           "テーブル", "mesa rústica", "love this"]


@pytest.fixture(scope="module")
def student_dir(tiny_bert, tmp_path_factory):
    student = new_student(StudentConfig(backbone=str(tiny_bert), layers=1, dim=16, zero_shot_model=str(tiny_bert),
                                        features=[], query_max_length=16))
    student.config = student.config.model_copy(update={"query_prefix": "query: "})  # as me5's: it must be kept
    return student.save(tmp_path_factory.mktemp("onnx") / "student")


def _min_cos(a, b):
    return float(np.min(np.sum(a * b, 1)))


def test_onnx_matches_pytorch_on_padded_mixed_batches(student_dir):
    student = load_student(student_dir)
    path = ensure_onnx(student_dir)
    assert path == student_dir / ONNX_FILE
    enc = OnnxQueryEncoder(path)
    assert enc.dim == 16 and enc.prefix == "query: " and enc.max_length == 16
    assert enc.tokenize(QUERIES) == student.tokenize(QUERIES, "query")  # tokenizers alone = the HF tokenizer
    ref = student.embed(QUERIES, "query", bf16=False)
    got = enc.encode(QUERIES)
    assert got.dtype == np.float32 and got.shape == (len(QUERIES), 16)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert _min_cos(got, ref) > 0.9999
    # a query alone, or in a batch padded to a much longer neighbour, gives the same vector
    alone = np.concatenate([enc.encode([q]) for q in QUERIES])
    assert _min_cos(alone, got) > 0.9999
    assert enc.encode([]).shape == (0, 16)


def test_int8_is_smaller_and_close(student_dir, tmp_path):
    fp32 = ensure_onnx(student_dir)
    q8 = ensure_onnx(student_dir, int8=True)
    assert q8 == student_dir / INT8_FILE and q8.stat().st_size < fp32.stat().st_size
    a, b = OnnxQueryEncoder(fp32).encode(QUERIES), OnnxQueryEncoder(q8).encode(QUERIES)
    # measured on this tiny random model: min cosine 0.99997 (me5-small, 4 layers, 51 queries: 0.996); 0.99 leaves room
    # for other CPUs' integer kernels without letting a broken quantization (cosine well under 0.9) through
    assert _min_cos(a, b) > 0.99
    # quantize_int8 on its own, to any path
    other = quantize_int8(fp32, tmp_path / "q.onnx")
    assert other.is_file() and not list(tmp_path.glob(".*tmp*"))


def test_int8_weights_keep_7_bits_on_avx2_without_vnni():
    from searchrel.serve.onnx_tower import vnni_or_not_x86

    assert not vnni_or_not_x86("fpu sse2 avx avx2 fma".split())  # AVX2 only: reduce_range
    assert vnni_or_not_x86("avx2 avx512f avx512_vnni".split()) and vnni_or_not_x86("avx2 avx_vnni".split())
    assert vnni_or_not_x86("fp asimd asimddp".split())  # ARM: no saturating x86 kernel


def test_ensure_onnx_reexports_when_the_weights_are_newer(tiny_bert, tmp_path):
    import torch

    student = new_student(StudentConfig(backbone=str(tiny_bert), layers=1, dim=16,
                                        zero_shot_model=str(tiny_bert), features=[]))
    d = student.save(tmp_path / "s")
    path = ensure_onnx(d)
    first = path.stat().st_mtime_ns
    before = OnnxQueryEncoder(path).encode(QUERIES)
    assert ensure_onnx(d).stat().st_mtime_ns == first  # up to date: not exported again

    with torch.no_grad():  # new weights, saved over the old ones
        student.query_tower.proj.weight.add_(torch.randn_like(student.query_tower.proj.weight))
    student.save(d)
    later = first + 5_000_000_000  # file systems with coarse timestamps: make "newer" unambiguous
    os.utime(d / "model.safetensors", ns=(later, later))
    path = ensure_onnx(d)
    assert path.stat().st_mtime_ns > first
    after = OnnxQueryEncoder(path).encode(QUERIES)
    assert _min_cos(after, load_student(d).embed(QUERIES, "query", bf16=False)) > 0.9999
    assert _min_cos(after, before) < 0.99  # it really is the new model
    assert not list(d.glob(".*tmp*"))  # temporary files renamed or removed
    with pytest.raises(FileNotFoundError, match="not a student directory"):
        ensure_onnx(tmp_path)


def test_export_to_any_path(student_dir, tmp_path):
    student = load_student(student_dir)
    out = export_query_tower(student, tmp_path / "sub" / "tower.onnx")
    enc = OnnxQueryEncoder(out, student_dir=student_dir, threads=1)
    assert _min_cos(enc.encode(QUERIES), student.embed(QUERIES, "query", bf16=False)) > 0.9999
    assert len(enc.fingerprint) == 16 and enc.fingerprint == OnnxQueryEncoder(out, student_dir).fingerprint


def test_the_zero_shot_query_side_runs_on_onnx_runtime_like_the_encoder(tiny_bert, tmp_path):
    from searchrel.models.encode import load_encoder
    from searchrel.serve.onnx_tower import (
        ZERO_SHOT_FILE,
        ZERO_SHOT_INT8_FILE,
        QueryEmbedder,
        zero_shot_query_encoder,
    )

    student = new_student(StudentConfig(backbone=str(tiny_bert), layers=1, dim=16, zero_shot_model=str(tiny_bert),
                                        features=["zero_shot"]))
    d = student.save(tmp_path / "s")
    ref = load_encoder(str(tiny_bert), precision="fp32", backend="eager").encode(QUERIES, kind="query")
    fp32 = zero_shot_query_encoder(str(tiny_bert), d)
    assert fp32.path == d / ZERO_SHOT_FILE and fp32.dim == ref.shape[1]
    assert _min_cos(fp32.encode(QUERIES), ref) > 0.9999  # padded mixed batches: the same vectors as PyTorch
    assert _min_cos(np.concatenate([fp32.encode([q]) for q in QUERIES]), ref) > 0.9999
    q8 = zero_shot_query_encoder(str(tiny_bert), d, int8=True)
    assert q8.path == d / ZERO_SHOT_INT8_FILE and _min_cos(q8.encode(QUERIES), ref) > 0.99

    # the served query side: the tower and the zero-shot vector, both from ONNX Runtime, named in the cache key
    loaded = load_student(d)
    plain, quant = QueryEmbedder(loaded, d), QueryEmbedder(loaded, d, int8=True)
    assert set(plain.onnx_features) == {str(tiny_bert)}
    tower, cached = plain.split(plain.encode(QUERIES))
    assert _min_cos(tower, loaded.embed(QUERIES, "query", bf16=False)) > 0.9999
    assert _min_cos(cached["zero_shot"], ref) > 0.9999
    assert plain.fingerprint != quant.fingerprint != OnnxQueryEncoder.from_student_dir(d).fingerprint
    torch_side = QueryEmbedder(loaded, d, onnx=False)
    assert not torch_side.onnx_features
    assert _min_cos(torch_side.split(torch_side.encode(QUERIES))[1]["zero_shot"], ref) > 0.999

    # zero_shot and zero_shot_product read the same query vector: the model runs once, the cached row holds it once
    both = new_student(StudentConfig(backbone=str(tiny_bert), layers=1, dim=16, zero_shot_model=str(tiny_bert),
                                     features=["zero_shot", "zero_shot_product"]))
    d2 = both.save(tmp_path / "s2")
    emb = QueryEmbedder(load_student(d2), d2)
    rows = emb.encode(QUERIES)
    assert rows.shape[1] == 16 + ref.shape[1]
    _, sides = emb.split(rows)
    assert set(sides) == {"zero_shot", "zero_shot_product"} and np.array_equal(sides["zero_shot"],
                                                                              sides["zero_shot_product"])
