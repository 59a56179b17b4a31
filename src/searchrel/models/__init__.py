"""Backbones (registered by name, provisioned offline) and the one fast inference path every stage encodes with."""

from searchrel.models.registry import REGISTRY, Backbone, ModelError, ModelInfo, list_models, pull, resolve_model

__all__ = ["REGISTRY", "Backbone", "ModelError", "ModelInfo", "list_models", "pull", "resolve_model",
           "Encoder", "load_encoder"]


def __getattr__(name):  # torch/transformers load only when encoding is asked for
    if name in ("Encoder", "load_encoder"):
        from searchrel.models import encode
        return getattr(encode, name)
    raise AttributeError(name)
