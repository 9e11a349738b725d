"""Device-string checks a config makes before any work, importable without torch: a run config's
pre-flight and the pipelines' ``--compile`` check a ``device`` long before a tensor exists. Torch
is imported only when the answer needs it (a CUDA device is named, or an unusual device string
must be parsed); :mod:`dna.device` picks and uses the device."""

from __future__ import annotations

from dna.errors import DnaError


def check_device(name: str) -> None:
    """Raise :class:`DnaError` unless ``name`` is auto, cpu, cuda or cuda:N, and CUDA is here when asked for."""
    dev = str(name)
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise DnaError(f"device {name!r} must be auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda"):
        _check_cuda(name, "asked for but CUDA is not available")


def check_device_spec(name: str | None) -> None:
    """The checks of :func:`dna.device.resolve_device` without building the device (same
    messages): None, ``auto`` and ``cpu`` need no torch; any other string is parsed by torch."""
    if name in (None, "", "auto", "cpu"):
        return
    if not isinstance(name, str):
        raise DnaError(f"unknown device {name!r}: expected 'cpu', 'cuda' or 'auto'")
    from dna.device import resolve_device

    resolve_device(name)


def _check_cuda(name: str, what: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise DnaError(f"device {name!r} {what}")
