"""Strict reading of timm's EfficientNet block strings (``ir_r2_k3_s2_e6_c24_se0.25``).

timm's decoder silently drops options it does not know (``ir_r1_k3_s1_e6_c24_x5`` builds as if
``x5`` were not there), keeps the last of a repeated option, ignores a bad activation name and
builds ``c0`` as 8 channels (channel rounding); ``e0`` crashes deep inside the model. This module
accepts exactly the options timm reads for each block type, with values in range, and names the
first bad option otherwise.
"""

from __future__ import annotations

import re

from dna.errors import DnaError

EXAMPLE = "ir_r2_k3_s2_e6_c24_se0.25"

_INT = re.compile(r"^\d+$")
_NUM = re.compile(r"^\d+(\.\d+)?$")
_KSIZE = re.compile(r"^\d+(\.\d+)*$")    # k3, or mixed kernels k3.5.7
ACTIVATIONS = ("re", "r6", "hs", "sw", "mi")

# option -> (value form, smallest value, meaning); kernels "k" may be 0 only in uir blocks
_OPTIONS: dict[str, tuple[re.Pattern, float, str]] = {
    "r": (_INT, 1, "repeats"),
    "k": (_KSIZE, 1, "kernel size"),
    "s": (_INT, 1, "stride"),
    "e": (_NUM, 0, "expansion ratio"),
    "c": (_INT, 1, "output channels"),
    "se": (_NUM, 0, "squeeze-excitation ratio"),
    "a": (_KSIZE, 1, "start kernel size"),
    "p": (_KSIZE, 1, "end kernel size"),
    "d": (_INT, 0, "space-to-depth flag / key dim"),
    "cc": (_INT, 1, "experts"),
    "fc": (_INT, 0, "forced input channels"),
    "gs": (_INT, 0, "group size"),
    "h": (_INT, 1, "heads"),
    "v": (_INT, 1, "key/value stride"),
}
_COMMON = {"r", "c", "s", "n", "gs", "noskip", "skip"}
# what timm's _decode_block_str reads per block type (beyond _COMMON)
TYPES: dict[str, set[str]] = {
    "ir": {"k", "e", "se", "a", "p", "d", "cc"},
    "ds": {"k", "e", "se", "p", "d"},   # "e" is unused by ds, but timm's own defs write e1
    "dsa": {"k", "e", "se", "p", "d"},
    "er": {"k", "e", "se", "p", "fc"},
    "cn": {"k", "e"},                   # likewise (cn_r1_k3_s2_e1_c32)
    "uir": {"k", "e", "se", "a", "p"},
    "mha": {"k", "h", "d", "v"},
    "mqa": {"k", "h", "d", "v"},
}
_REQUIRED: dict[str, set[str]] = {
    "ir": {"k", "e"}, "ds": {"k"}, "dsa": {"k"}, "er": {"k", "e"}, "cn": {"k"},
    "uir": {"k", "e"}, "mha": {"k", "h", "d"}, "mqa": {"k", "h", "d"},
}
_NO_EXPANSION = ("ds", "dsa", "cn")    # accept e1 there, as timm's own definitions write it
_MAX_STRIDE = 8


def _split(token: str) -> tuple[str, str]:
    m = re.match(r"^([a-z]+)(.*)$", token)
    return (m.group(1), m.group(2)) if m else (token, "")


def parse_block_string(block: str) -> dict[str, str]:
    """Option name -> value text of one block string (``{"type": "ir", "r": "2", ...}``; flags
    ``noskip``/``skip`` map to ``""``). Raises :class:`DnaError` naming the bad part."""
    if not isinstance(block, str) or not block.strip():
        raise DnaError(f"block string {block!r}: expected timm's form, e.g. {EXAMPLE!r}")
    kind, *tokens = block.split("_")
    if kind not in TYPES:
        raise DnaError(f"block string {block!r}: unknown block type {kind!r}; expected one of {sorted(TYPES)}")
    allowed = TYPES[kind] | _COMMON
    out: dict[str, str] = {"type": kind}
    for tok in tokens:
        if tok in ("noskip", "skip"):
            key, value = tok, ""
        elif tok.startswith("n") and not tok.startswith("no"):
            key, value = "n", tok[1:]
            if value not in ACTIVATIONS:
                raise DnaError(f"block string {block!r}: unknown activation {tok!r}; expected n<act> with act "
                               f"one of {list(ACTIVATIONS)}")
        else:
            key, value = _split(tok)
            if key not in allowed:
                raise DnaError(f"block string {block!r}: unknown option {tok!r} for a {kind!r} block (timm would "
                               f"drop it); expected options {sorted(allowed)}, e.g. {EXAMPLE!r}")
            pattern, low, meaning = _OPTIONS[key]
            if not pattern.match(value):
                raise DnaError(f"block string {block!r}: option {tok!r} ({meaning}) needs a number after "
                               f"{key!r}, e.g. {key}{int(low) or 1}")
            if kind == "uir" and key in ("k", "a", "p"):
                low = 0  # uir: k0/a0/p0 = that depthwise conv is absent
            if kind in ("mha", "mqa") and key == "d":
                low = 1  # the key/value width
            parts = [float(x) for x in value.split(".")] if pattern is _KSIZE else [float(value)]
            if key == "e" and float(value) <= 0:
                raise DnaError(f"block string {block!r}: option {tok!r}: the expansion ratio must be > 0")
            if any(x < low for x in parts):
                raise DnaError(f"block string {block!r}: option {tok!r}: the {meaning} must be >= {low:g}")
            if key == "s" and float(value) > _MAX_STRIDE:
                raise DnaError(f"block string {block!r}: option {tok!r}: stride must be in 1..{_MAX_STRIDE}")
            if key == "se" and float(value) > 1:
                raise DnaError(f"block string {block!r}: option {tok!r}: the squeeze-excitation ratio must be "
                               "in 0..1")
        if key == "e" and kind in _NO_EXPANSION and float(value) != 1:
            raise DnaError(f"block string {block!r}: option {tok!r} has no effect on a {kind!r} block "
                           "(timm ignores it); expected e1 or no 'e' option")
        if key in out:
            raise DnaError(f"block string {block!r}: option {key!r} given twice")
        out[key] = value
    if "noskip" in out and "skip" in out:
        raise DnaError(f"block string {block!r}: both 'skip' and 'noskip'")
    missing = sorted(({"r", "c", "s"} | _REQUIRED[kind]) - set(out))
    if missing:
        raise DnaError(f"block string {block!r}: missing option(s) {missing} for a {kind!r} block, e.g. {EXAMPLE!r}")
    return out


def check_arch_def_strings(arch_def) -> None:
    """Every block string of an arch_def, strictly (the message names the stage)."""
    for i, stage in enumerate(arch_def):
        for s in stage:
            try:
                parse_block_string(s)
            except DnaError as exc:
                raise DnaError(f"{exc} (stage {i} of arch_def)") from None
