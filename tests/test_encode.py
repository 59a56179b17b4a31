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
    assert [len(c) for c in chunks] == [4, 4, 2]
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
