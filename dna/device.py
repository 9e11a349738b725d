"""Device choice and the GPU fast paths (bf16 autocast, channels_last); plain fp32 on CPU."""

from __future__ import annotations

import contextlib

import torch

from dna.device_check import check_device  # noqa: F401 (re-exported: the torch-free check)
from dna.errors import DnaError


def resolve_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DnaError(f"device {name!r} requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DnaError(f"unknown device {name!r}: expected 'cpu', 'cuda' or 'auto'") from exc


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on GPU; a no-op on CPU (tests and exact rating stay in fp32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
