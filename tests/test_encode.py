"""The shared inference path on a tiny random BERT: order, padding and batch-size invariance, bf16, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from searchrel.baselines.embed import embed_scores
from searchrel.models.encode import Encoder, cpu_has_bf16, load_encoder
from searchrel.models.testing import make_tiny_bert

TEXTS = ["red table", "blue summer dress with shoes", "lamp", "modern wooden kitchen table chair vase lamp garden",
         "mesa roja", "テーブル 木製", "vintage", "green shirt and red shoes for winter", "桌子 红色", "платье"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def enc(tiny):
    return Encoder(tiny, precision="fp32")


def one_by_one(enc, texts, **kw):
    return np.concatenate([enc.encode([t], batch_size=1, **kw) for t in texts])


def test_length_sorted_batches_return_input_order(enc):
    ref = one_by_one(enc, TEXTS)  # no padding at all
    for bs in (2, 3, 64):
        np.testing.assert_allclose(enc.encode(TEXTS, batch_size=bs), ref, atol=1e-5)
    rev = enc.encode(TEXTS[::-1], batch_size=4)
    np.testing.assert_allclose(rev[::-1], ref, atol=1e-5)


def test_embeddings_are_normalised_unless_asked_not_to(enc):
    e = enc.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    raw = enc.encode(TEXTS, normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), e, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)


def test_streaming_equals_batch(enc):
    chunks = list(enc.iter_encode(iter(TEXTS), batch_size=3, chunk_size=4))
    assert all(len(c) <= 4 for c in chunks) and sum(len(c) for c in chunks) == len(TEXTS)  # bounded chunks, all
    np.testing.assert_allclose(np.concatenate(chunks), enc.encode(TEXTS), atol=1e-5)


def test_truncation_to_max_length(enc):
    long = " ".join(["table"] * 200)  # longer than the tiny model's 64 positions
    assert enc.encode([long], max_length=16).shape == (1, enc.dim)
    np.testing.assert_allclose(enc.encode([long], max_length=16), enc.encode([" ".join(["table"] * 14)]), atol=1e-5)


def test_bf16_is_close_to_fp32(tiny, enc):
    bf = Encoder(tiny, precision="bf16")
    cos = np.sum(bf.encode(TEXTS, batch_size=4) * enc.encode(TEXTS), axis=1)
    assert cos.min() > 0.99


def test_precision_auto_follows_the_cpu(tiny):
    assert Encoder(tiny).precision == ("bf16" if cpu_has_bf16() else "fp32")


def test_load_encoder_loads_once_per_precision(tiny):
    a = load_encoder(str(tiny), precision="fp32")
    assert load_encoder(str(tiny), force_fp32=True) is a
    assert load_encoder(str(tiny), precision="bf16") is not a


def test_embed_scores_is_cosine_per_pair(tiny, enc):
    queries = ["red table", "blue dress", "red table"]  # a repeated query text is embedded once
    items = TEXTS
    pairs = [(0, 0), (1, 1), (2, 3), (0, 9)]
    s = embed_scores(queries, items, pairs, model=str(tiny), precision="fp32")
    q = enc.encode(queries)
    i = enc.encode(items)
    expected = [q[a] @ i[b] for a, b in pairs]
    np.testing.assert_allclose(s, expected, atol=1e-5)
    arrays = embed_scores(queries, items, (np.array([0, 1, 2, 0]), np.array([0, 1, 3, 9])), model=str(tiny),
                          precision="fp32")
    np.testing.assert_allclose(arrays, s, atol=1e-6)
    assert embed_scores(queries, items, [], model=str(tiny)).shape == (0,)


# ------------------------------------------------------------------ jit backend (trace + freeze + oneDNN fusion)
@pytest.fixture(scope="module")
def jit(tiny):
    return Encoder(tiny, precision="fp32", backend="jit")


def test_jit_equals_eager_padded_and_unpadded(enc, jit):
    ref = one_by_one(enc, TEXTS)  # eager, no padding at all
    np.testing.assert_allclose(one_by_one(jit, TEXTS), ref, atol=1e-5)  # unpadded texts, bucket padding only
    np.testing.assert_allclose(jit.encode(TEXTS, batch_size=4), ref, atol=1e-5)  # mixed lengths: the mask matters
    np.testing.assert_allclose(jit.encode(TEXTS[::-1], batch_size=4)[::-1], ref, atol=1e-5)  # input order restored
    same = ["red table"] * 3  # one length, no padding within the batch, filler rows below it
    np.testing.assert_allclose(jit.encode(same, batch_size=4), np.repeat(ref[:1], 3, axis=0), atol=1e-5)


def test_jit_bf16_is_close_to_eager(tiny, enc):
    import torch
    bf = Encoder(tiny, precision="bf16", backend="jit")
    assert {p.dtype for p in bf.model.parameters()} == {torch.bfloat16}  # pure bf16 weights on this backend
    cos = np.sum(bf.encode(TEXTS, batch_size=4) * enc.encode(TEXTS), axis=1)
    assert cos.min() > 0.99


def test_shape_buckets_are_bounded(jit, monkeypatch):
    from searchrel.models import encode as E
    # a batch is padded to a bucket: never shorter than its longest text, never past the position table, with
    # bounded waste (at most 3 tokens for short texts, at most half again for long ones), monotone in the length
    widths = [E.bucket_length(n, 512) for n in range(1, 513)]
    assert all(n <= w <= 512 for n, w in zip(range(1, 513), widths)) and widths == sorted(widths)
    assert all(w - n <= max(3, n // 2) for n, w in zip(range(1, 513), widths))
    assert E.bucket_length(60, 50) == 50
    lengths = set(widths)
    assert len(lengths) <= 24  # few shapes: each costs one trace
    # rows: enough for the batch, never past batch_size (unless the batch is bigger), at most double the batch
    for batch_size in (1, 48, 64):
        for n in range(1, batch_size + 1):
            rows = E.bucket_rows(n, batch_size)
            assert n <= rows <= batch_size and rows < 2 * n + 1
    assert all(rows <= 4 and width in lengths for rows, width in jit.shapes)
    monkeypatch.setattr(E, "MAX_SHAPES", 2)
    jit.encode(["lamp", "red table lamp", "red " * 20], batch_size=1)
    assert len(jit.shapes) == 2


def test_backend_choice(tiny, monkeypatch):
    monkeypatch.delenv("SEARCHREL_ENCODE_BACKEND", raising=False)
    assert Encoder(tiny, precision="fp32").backend == "eager"
    assert Encoder(tiny, precision="bf16").backend == "jit"
    monkeypatch.setenv("SEARCHREL_ENCODE_BACKEND", "eager")
    assert Encoder(tiny, precision="bf16").backend == "eager"
    with pytest.raises(ValueError):
        Encoder(tiny, precision="bf16", backend="onnx")


def test_texts_longer_than_the_position_table_are_truncated(tmp_path):
    from searchrel.models.encode import Encoder
    from searchrel.models.testing import make_tiny_bert

    path = make_tiny_bert(tmp_path / "tiny", max_positions=16)
    for backend in ("eager", "jit"):
        enc = Encoder(path, precision="fp32" if backend == "eager" else "bf16", backend=backend)
        out = enc.encode(["red table " * 40, "blue"], max_length=512)  # asked for more than the model can take
        assert out.shape[0] == 2 and np.isfinite(out).all()
