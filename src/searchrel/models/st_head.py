"""What a sentence-transformers folder adds after the transformer: pooling mode, Dense projections, the prompts.

EmbeddingGemma (and many other embedding models) are published as sentence-transformers folders: ``modules.json``
lists Transformer → Pooling → Dense... → Normalize, each module in its own sub-folder. The project's encoder runs
the transformer itself (its fast path); this module reads the rest, so that an embedding equals the one
sentence-transformers computes, without depending on that library at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ST_MODULES = "modules.json"
ST_CONFIG = "config_sentence_transformers.json"  # its "prompts": {"query": ..., "document": ...}
_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": None, "torch.nn.modules.activation.Tanh": np.tanh}


def _modules(path: Path) -> list[dict]:
    try:
        return json.loads((path / ST_MODULES).read_text())
    except (OSError, ValueError):
        return []


def folder_prompts(path: Path) -> tuple[dict[str, str], str]:
    """(prompts by name, pooling) of a sentence-transformers folder; ({}, "mean") for a plain transformers one."""
    prompts: dict[str, str] = {}
    try:
        prompts = json.loads((path / ST_CONFIG).read_text()).get("prompts") or {}
    except (OSError, ValueError):
        pass
    pooling = "mean"
    for m in _modules(path):
        if m.get("type", "").endswith("models.Pooling"):
            cfg = json.loads((path / m["path"] / "config.json").read_text())
            pooling = next((mode for key, mode in _POOLING.items() if cfg.get(key)), "mean")
    return prompts, pooling


class DenseHead:
    """The Dense layers of a sentence-transformers folder, applied in float32 numpy to pooled vectors."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray | None, object]]):
        self.layers = layers  # (weight [out, in], bias [out] or None, activation or None)

    @property
    def dim(self) -> int:
        return int(self.layers[-1][0].shape[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for weight, bias, act in self.layers:
            x = x @ weight.T
            if bias is not None:
                x = x + bias
            if act is not None:
                x = act(x)
        return x.astype(np.float32, copy=False)

    @classmethod
    def load(cls, path: Path) -> "DenseHead | None":
        """The folder's Dense layers in order, or None when it has none (or is no sentence-transformers folder)."""
        from safetensors.numpy import load_file  # safetensors: only when the folder has Dense layers

        layers = []
        for m in _modules(path):
            if not m.get("type", "").endswith("models.Dense"):
                continue
            folder = path / m["path"]
            cfg = json.loads((folder / "config.json").read_text())
            act_name = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
            if act_name not in _ACTIVATIONS:
                raise ValueError(f"{folder}: unsupported Dense activation {act_name!r}")
            state = load_file(str(folder / "model.safetensors"))
            weight = state["linear.weight"].astype(np.float32)
            bias = state.get("linear.bias")
            layers.append((weight, None if bias is None else bias.astype(np.float32), _ACTIVATIONS[act_name]))
        return cls(layers) if layers else None
