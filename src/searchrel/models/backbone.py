"""Pretrained transformers backbones for the models that fine-tune them: build one, find its layers, pool it.

The teacher's cross-encoder and the student's towers both start from a registered (or local, or hub) backbone;
this module is what they share, so neither reaches into the other. Pooling is the same function everywhere:
``mean`` over the real tokens (e5-style encoders), ``cls`` (the first token), ``last`` (the last real token of
right-padded input: the only one a decoder LLM has let read the whole text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from searchrel.models.registry import backbone_for, resolve_model

Pooling = Literal["mean", "cls", "last"]


def is_decoder(hf_config) -> bool:
    """A causal LM (GPT/Llama/Gemma-style): pooled by its last token, prompted rather than pair-encoded."""
    return bool(getattr(hf_config, "is_decoder", False)) or any(
        a.endswith("ForCausalLM") for a in (getattr(hf_config, "architectures", None) or []))


def quiet_transformers() -> None:
    """transformers' load reports (newly initialised poolers, weight-loading bars) are noise in our logs."""
    from transformers.utils import logging as hf_logging  # transformers: heavy, loaded when a model is

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def build_backbone(name_or_path: str | Path):
    """(backbone module, tokenizer, registry prefixes, is_decoder) for a backbone name or directory."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # heavy: loaded when a model is

    quiet_transformers()
    path = resolve_model(str(name_or_path))
    hf_config = AutoConfig.from_pretrained(path)
    backbone = AutoModel.from_pretrained(path, config=hf_config, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    info = backbone_for(str(name_or_path))
    return backbone, tokenizer, info, is_decoder(hf_config)


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of any transformers backbone (BERT's encoder.layer, Llama's layers, ...)."""
    n = backbone.config.num_hidden_layers
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} transformer layers of {type(backbone).__name__}")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """``[batch, hidden]`` from ``[batch, tokens, hidden]`` and a right-padded ``[batch, tokens]`` 0/1 mask."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":  # right padding: the last 1 of each mask row
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    raise ValueError(f"unknown pooling {pooling!r} (mean, cls, last)")
