"""Where a model runs: ``auto`` is the first CUDA GPU when there is one, else the CPU; bf16 where it is native."""

from __future__ import annotations

import torch

from searchrel.models.encode import cpu_has_bf16


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


def bf16_native(device: torch.device) -> bool:
    """True where bf16 runs natively: Ampere or newer GPUs, CPUs with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bf16 autocast on ``device`` (a no-op context when not enabled)."""
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled)
