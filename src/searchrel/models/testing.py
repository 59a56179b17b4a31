"""A tiny randomly initialised BERT with a word-level tokenizer, saved like a provisioned backbone: for unit tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ("red blue green wooden table chair dress shirt shoes summer winter modern vintage kitchen garden lamp vase "
         "mesa roja madera vestido azul テーブル 木製 桌子 红色 платье стол").split()


def make_tiny_bert(out: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4,
                   max_positions: int = 64) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` for a tiny BERT into ``out``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

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
