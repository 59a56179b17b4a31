"""Where a model runs: ``auto`` is the first CUDA GPU when there is one, else the CPU; bf16 where it is native."""

from __future__ import annotations

import torch

from searchrel.devices import resolve_device  # noqa: F401  (the one rule, in the bottom layer)
from searchrel.models.encode import cpu_has_bf16


def bf16_native(device: torch.device) -> bool:
    """True where bf16 runs natively: Ampere or newer GPUs, CPUs with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bf16 autocast on ``device`` (a no-op context when not enabled)."""
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled)
