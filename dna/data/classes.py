"""The built-in data set's class names, importable without torch (a data config is validated
against them in run configs and parsers that build no data)."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "plus",
    "ring",
    "hbar",
    "vbar",
    "diamond",
    "xcross",
    "ell",
)
MAX_CLASSES = len(CLASS_NAMES)
