"""EfficientNet compound scaling of a searched architecture (DNA+, SPEC section 7).

Scaling is exactly timm's: widths are ``round_channels(c, width)`` (multiples of 8, never more
than 10% below ``c * width``), stem and head included; the layer count of every stage becomes
``ceil(layers * depth)``, spread over the stage's block strings as ``decode_arch_def`` does.
Scaling EfficientNet-B0's arch_def to ``b1``..``b8`` gives timm's ``efficientnet_b1``..``b8``.

:func:`scale` writes the *explicit* scaled arch_def (rounded channels, repeated layers) with the
multipliers reset to 1.0, so a plain timm user can build it from the arch_def alone;
``expand=False`` keeps the unscaled arch_def and stores the multipliers instead. Both build the
same network (same params, same FLOPs).

Resolution: a named coefficient set (``to="b3"``) scales the architecture's resolution by
``R / 224`` (so a 224 px architecture gets exactly EfficientNet's 240/260/300/380/456/528/600;
a 32 px test architecture gets 34/37/43/...); explicit coefficients give the resolution in pixels.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from dna.errors import DnaError
from dna.model.arch import Architecture

# (width, depth, resolution, dropout) of EfficientNet, as in timm's efficientnet.py.
COEFFICIENTS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
    "b8": (2.2, 3.6, 672, 0.5),
    "l2": (4.3, 5.3, 800, 0.5),
}
BASE_RESOLUTION = 224

_REPEAT = re.compile(r"^r(\d+)$")
_CHANNELS = re.compile(r"^(c|fc)(\d+)$")


def coefficients(to: str) -> tuple[float, float, int]:
    """(width, depth, resolution at 224 px base) of a named EfficientNet scale (``b1``, ``B3``...)."""
    key = str(to).strip().lower()
    key = key.removeprefix("efficientnet_").removeprefix("efficientnet-")
    if key not in COEFFICIENTS:
        raise DnaError(f"unknown scale {to!r}: expected one of {', '.join(COEFFICIENTS)}")
    w, d, r, _ = COEFFICIENTS[key]
    return w, d, r


def _round(channels: int, multiplier: float) -> int:
    from timm.models._efficientnet_builder import round_channels

    return int(round_channels(channels, multiplier=multiplier))


def _stage_repeats(repeats: Sequence[int], depth: float) -> list[int]:
    """Per-string layer counts of one stage after depth scaling, by timm's own function."""
    from timm.models._efficientnet_builder import _scale_stage_depth

    idx = _scale_stage_depth(list(range(len(repeats))), list(repeats), depth, "ceil")
    return [idx.count(i) for i in range(len(repeats))]


def scale_block_string(block: str, width: float, repeats: int | None = None) -> str:
    """One arch_def string with its channels rounded for ``width`` and its repeat count set."""
    out = []
    for tok in block.split("_"):
        m = _CHANNELS.match(tok)
        if m:
            tok = f"{m.group(1)}{_round(int(m.group(2)), width)}"
        elif repeats is not None and _REPEAT.match(tok):
            tok = f"r{repeats}"
        out.append(tok)
    return "_".join(out)


def scale_arch_def(arch_def: list[list[str]], width: float = 1.0, depth: float = 1.0) -> list[list[str]]:
    """The explicit arch_def that timm builds from ``arch_def`` with these multipliers."""
    from dna.model.summary import check_arch_def

    check_arch_def(arch_def)
    out = []
    for stage in arch_def:
        reps = [int(_REPEAT.match(t).group(1)) for s in stage for t in s.split("_") if _REPEAT.match(t)]
        if len(reps) != len(stage):
            raise DnaError(f"stage {stage!r}: every block string needs exactly one repeat field 'r<N>'")
        scaled = _stage_repeats(reps, depth)
        out.append([scale_block_string(s, width, n) for s, n in zip(stage, scaled, strict=True)])
    return out


def scaled_arch_def(arch: Architecture) -> list[list[str]]:
    """The explicit arch_def of ``arch`` with its own multipliers applied."""
    return scale_arch_def(arch.arch_def, arch.channel_multiplier, arch.depth_multiplier)


def expand(arch: Architecture) -> Architecture:
    """The same network written out: explicit arch_def, rounded stem/head, multipliers 1.0."""
    return dataclasses.replace(
        arch,
        arch_def=scaled_arch_def(arch),
        stem_channels=_round(arch.stem_channels, arch.channel_multiplier),
        head_channels=_round(arch.head_channels, arch.channel_multiplier),
        channel_multiplier=1.0,
        depth_multiplier=1.0,
        extra=dict(arch.extra),
    )


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        raise DnaError(f"{name} {value!r} must be a positive number")
    return v


def scale(arch: Architecture | str | dict | list, to: str | Sequence[float] | None = None, **kwargs: Any):
    """Compound-scale an architecture of any family (an ``Architecture``, a JSON URI or dict): its
    family scales it (``Family.scale``; a ViT architecture gets a clear error). Arguments: as
    :func:`scale_arch`."""
    if isinstance(arch, Architecture):
        return scale_arch(arch, to, **kwargs)
    from dna import storage
    from dna.space import family_of_arch

    d = storage.read_json(arch) if isinstance(arch, str) else arch
    return family_of_arch(d).scale(d, to=to, **kwargs)


def scale_arch(
    arch: Architecture | str | dict | list,
    to: str | Sequence[float] | None = None,
    *,
    width: float | None = None,
    depth: float | None = None,
    resolution: int | None = None,
    expand_arch: bool = True,
) -> Architecture:
    """Compound-scale ``arch``: ``to`` a named scale (``"b1"``..``"b8"``, ``"l2"``) or
    ``(width, depth, resolution_px)``; or ``width``/``depth``/``resolution`` given one by one
    (missing ones: 1.0, 1.0, unchanged). Multipliers compose with those already in ``arch``.

    Returns the explicit scaled architecture (``expand_arch=False``: base arch_def + multipliers).
    The space/choices of a searched base move to ``extra["scaled_from"]``, since they describe the
    unscaled network.
    """
    from dna.model.summary import resolve_arch

    base = resolve_arch(arch)
    if to is not None and any(v is not None for v in (width, depth, resolution)):
        raise DnaError("give either a named scale / coefficient tuple or width/depth/resolution, not both")
    name = None
    dropout = None
    if isinstance(to, str):
        w, d, r = coefficients(to)
        name = to.strip().lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
        dropout = COEFFICIENTS[name][3]
        res = max(1, round(base.resolution * r / BASE_RESOLUTION))
    elif to is not None:
        if not isinstance(to, Sequence) or len(to) != 3:
            raise DnaError(f"coefficients {to!r} must be (width, depth, resolution) or a name "
                           f"({', '.join(COEFFICIENTS)})")
        w, d = _positive("width", to[0]), _positive("depth", to[1])
        res = to[2]
    else:
        w = 1.0 if width is None else _positive("width", width)
        d = 1.0 if depth is None else _positive("depth", depth)
        res = base.resolution if resolution is None else resolution
    if isinstance(res, bool) or not isinstance(res, (int, float)) or res != int(res) or int(res) < 1:
        raise DnaError(f"resolution {res!r} must be a positive integer (pixels)")
    res = int(res)

    provenance: dict[str, Any] = {"width": w, "depth": d, "resolution": res}
    if name:
        provenance["to"] = name
        provenance["drop_rate"] = dropout
    extra = {k: v for k, v in base.extra.items() if k not in ("scaled_from", "scale")}
    extra["scale"] = provenance
    extra["scaled_from"] = base.to_json()
    scaled = Architecture(
        arch_def=[list(s) for s in base.arch_def],
        resolution=res,
        num_classes=base.num_classes,
        stem_channels=base.stem_channels,
        head_channels=base.head_channels,
        channel_multiplier=base.channel_multiplier * w,
        depth_multiplier=base.depth_multiplier * d,
        space=None,
        choices=None,
        extra=extra,
    )
    return expand(scaled) if expand_arch else scaled
