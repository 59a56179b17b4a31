"""Which torch device a spec names: ``auto`` is the first CUDA GPU when there is one, else the CPU.

Bottom layer (torch only), so every stage that runs a model resolves devices the same way — the caption stage
(``annotate``) as well as the teacher, the students and labelling (through ``models.device``)."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` → a torch device; asking for a GPU that is not there is an error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__})")
    return device
