"""Shared test data: a tiny hand-made dataset whose every value is known."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from searchrel.data.dataset import Dataset, DatasetInfo, Scale

os.environ.setdefault("SEARCHREL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_tiny() -> Dataset:
    items = pd.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4", "i5"],
        "title": ["red wooden table", "blue cotton dress", "Love this!", "mesa de madera roja", "木製のテーブル"],
        "description": ["solid oak dining table", "summer dress", "", "mesa rústica", ""],
        "image_caption": ["a photo of a red table", "a woman in a blue dress", "a photo of a red wooden table",
                          None, "a wooden table"],
        "board_titles": [None] * 5,
        "engaged_queries": [None] * 5,
        "language": ["en", "en", "en", "es", "ja"],
        "brand": ["Oakly", None, None, None, None],
    })
    queries = pd.DataFrame({
        "query_id": ["q1", "q2", "q3", "q4"],
        "text": ["red table", "blue dress", "mesa roja", "テーブル"],
        "language": ["en", "en", "es", "ja"],
        "country": ["US", "GB", "ES", "JP"],
        "group_id": ["g1", "g2", "g1", "g4"],
    })
    judgments = pd.DataFrame({
        "query_id": ["q1", "q1", "q1", "q2", "q2", "q3", "q3", "q4", "q4"],
        "item_id": ["i1", "i2", "i3", "i2", "i1", "i4", "i2", "i5", "i2"],
        "label": [5, 1, 4, 5, 1, 5, 1, 4, 1],
        "rater_variance": [0.0, 0.2, 0.5, 0.0, 0.0, 0.1, 0.0, 0.3, 0.0],
    })
    ts = pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-02-20",
                         "2026-02-21", "2026-02-22"]).astype("datetime64[s]")
    log = pd.DataFrame({
        "ts": ts,
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u3", "u1", "u2"],
        "query_id": ["q1", "q1", "q1", "q2", "q3", "q1", "q1", "q4"],
        "item_id": ["i3", "i3", "i3", "i2", "i4", "i1", "i2", "i5"],
        "position": [0, 0, 1, 0, 0, 2, 3, 0],
        "event": ["impression", "click", "save", "save", "click", "save", "impression", "long_click"],
        "board_title": [None, None, "dining room ideas", "summer fits", None, "dining room ideas", None, None],
    })
    splits = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "split": ["train", "train", "train", "test"]})
    info = DatasetInfo(name="tiny", scale=Scale(min=1, max=5), languages=["en", "es", "ja"], source="tests")
    return Dataset(info, items, queries, judgments, log, splits).validate()


@pytest.fixture
def tiny() -> Dataset:
    return make_tiny()


def make_tiny_bert(path, vocab_words=(), layers=2, hidden=32, decoder=False):
    """A randomly initialised transformers model + WordPiece tokenizer saved at ``path`` (offline, < 1 MB)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    cjk = list("木製のテーブルメサ")
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + letters + cjk + [w.lower() for w in vocab_words]))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
    torch.manual_seed(0)
    if decoder:
        cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 2,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=256, pad_token_id=0, bos_token_id=2, eos_token_id=3)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                         intermediate_size=hidden * 2, max_position_embeddings=256)
        model = BertModel(cfg)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    words = "red wooden table blue cotton dress love this mesa de madera roja rústica solid oak dining summer " \
            "photo of a woman in wooden image title description boards searches query passage".split()
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", words)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world (120 items, 30 queries, with a log), saved and loaded back (so ``ds.path`` is set)."""
    from searchrel.data.dataset import load_dataset
    from searchrel.data.synth import SynthConfig, synthesize

    ds = synthesize(SynthConfig(n_items=120, n_queries=30, n_users=40, n_judged_pairs=150, n_searches=300))
    path = tmp_path_factory.mktemp("world") / "ds"
    ds.save(path)
    return load_dataset(path)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs, small object store) for a test module, shut down after it; an already running Ray is
    used and left running."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()
