"""A tiny randomly initialised BERT with a word-level tokenizer, saved like a provisioned backbone: for unit tests.

torch, tokenizers and transformers are imported inside the builders: importing this module stays free.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("red blue green wooden table chair dress shirt shoes summer winter modern vintage kitchen garden lamp vase "
         "mesa roja madera vestido azul テーブル 木製 桌子 红色 платье стол").split()


def make_tiny_bert(out: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4,
                   max_positions: int = 64) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` for a tiny BERT into ``out``."""
    import torch
    from tokenizers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        Tokenizer,
        models,
        pre_tokenizers,
        processors,
    )
    from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        BertConfig,
        BertModel,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(specials)
    tok.save(str(out / "tokenizer.json"))

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, max_position_embeddings=max_positions, pad_token_id=1)
    BertModel(config, add_pooling_layer=False).eval().save_pretrained(out)
    return out


def make_tiny_embeddinggemma(out: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A tiny EmbeddingGemma-shaped sentence-transformers folder: a bidirectional Gemma-3 text model, mean pooling,
    Dense hidden -> 4*hidden -> hidden (no bias, Identity), Normalize, and the retrieval prompts."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import (  # tokenizers/transformers: heavy (seconds), imported where a model is loaded
        Gemma3TextConfig,
        Gemma3TextModel,
    )

    out = make_tiny_bert(out, seed=seed, hidden=hidden, layers=layers)
    for f in ("config.json", "model.safetensors"):
        (out / f).unlink()
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=128, sliding_window=16, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2, use_bidirectional_attention=True,
                              layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"])
    model = Gemma3TextModel(config).eval()
    model.config.architectures = ["Gemma3TextModel"]
    model.save_pretrained(out)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
               {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
               {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (out / "modules.json").write_text(json.dumps(modules))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": hidden,
                                                               "pooling_mode_mean_tokens": True}))
    for name, (i, o) in {"2_Dense": (hidden, 4 * hidden), "3_Dense": (4 * hidden, hidden)}.items():
        (out / name).mkdir(exist_ok=True)
        (out / name / "config.json").write_text(json.dumps({"in_features": i, "out_features": o, "bias": False,
                                                            "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": torch.randn(o, i) / i ** 0.5}, str(out / name / "model.safetensors"))
    (out / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {
        "query": "task: search result | query: ", "document": "title: none | text: "}}))
    return out
