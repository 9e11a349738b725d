"""What an architecture costs and looks like: params, FLOPs, stages and layers (``dna build --summary``).

FLOPs are multiply-accumulates at the architecture's own resolution (see :mod:`dna.costs`), the
convention of EfficientNet and DNA (EfficientNet-B0: 5,288,548 params, ~0.386G FLOPs at 224 px).
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn as nn

from dna.errors import DnaError
from dna.model.arch import Architecture

EXAMPLE_BLOCK = "ir_r2_k3_s2_e6_c24_se0.25"


def check_arch_def(arch_def: list[list[str]]) -> None:
    """Decode every block string alone, so a bad one is named (timm's errors do not name it)."""
    from timm.models._efficientnet_builder import decode_arch_def

    from dna.space.block_string import check_arch_def_strings

    check_arch_def_strings(arch_def)  # options timm would drop or mis-build (x5, c0, e0) first
    for i, stage in enumerate(arch_def):
        for s in stage:
            try:
                decode_arch_def([[s]])
            except KeyError as exc:
                reason = f"missing or malformed field {exc.args[0]!r}"
            except (AssertionError, ValueError, IndexError, ZeroDivisionError, TypeError) as exc:
                reason = str(exc) or type(exc).__name__
            else:
                continue
            raise DnaError(
                f"bad block string {s!r} in stage {i} of arch_def: {reason}; expected timm's "
                f"EfficientNet block form, e.g. {EXAMPLE_BLOCK!r}"
            )


def resolve_arch(arch: Architecture | str | dict | list) -> Architecture:
    """An :class:`Architecture` from itself, a JSON URI, a JSON dict or a bare arch_def list."""
    if isinstance(arch, Architecture):
        out = arch
    elif isinstance(arch, str):
        out = Architecture.load(arch)
    elif isinstance(arch, (dict, list)):
        out = Architecture.from_json(arch)
    else:
        raise DnaError(
            f"expected an Architecture, an architecture JSON URI or an arch_def list, got {type(arch).__name__}"
        )
    check_arch_def(out.arch_def)
    return out


_DW_KERNELS = ("dw_kernel_size_start", "dw_kernel_size_mid", "dw_kernel_size")


def _kernel(k) -> int:
    """timm's kernel field: an int, or a list for mixed depthwise kernels (the largest counts)."""
    return int(max(k)) if isinstance(k, (list, tuple)) else int(k)


def arch_layers(arch: Architecture | str | dict | list) -> list[dict[str, Any]]:
    """One entry per layer of the network, read from timm's own decoder (depth multiplier applied,
    channels rounded by the width multiplier, as the builder does): ``stage``, ``type`` (timm's
    block type: ``ds``, ``ir``, ``uir``...), ``kernel`` (the largest depthwise kernel),
    ``kernels`` (every depthwise kernel of the layer, 0 where absent), ``expansion``, ``stride``
    (only a stage's first layer strides), ``channels`` and ``se``."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels

    arch = resolve_arch(arch)
    layers = []
    for stage, block_args in enumerate(decode_arch_def(arch.arch_def, arch.depth_multiplier)):
        for i, ba in enumerate(block_args):
            kernels = [_kernel(ba[k]) for k in _DW_KERNELS if k in ba]
            kernels = kernels or [_kernel(ba.get("kernel_size", ba.get("exp_kernel_size", 1)))]
            layers.append({
                "stage": stage, "type": ba["block_type"], "kernel": max(kernels, default=1),
                "kernels": kernels, "expansion": float(ba.get("exp_ratio", 1.0)),
                "stride": int(ba["stride"]) if i == 0 else 1,
                "channels": int(round_channels(ba["out_chs"], arch.channel_multiplier)),
                "se": float(ba.get("se_ratio", 0.0)),
            })
    return layers


def build(arch: Architecture, num_classes: int | None = None, **kwargs) -> nn.Module:
    """``build_model`` after checking every block string (a bad one is named in the error)."""
    from dna.model.efficientnet import build_model

    check_arch_def(arch.arch_def)
    try:
        return build_model(arch, num_classes=num_classes, **kwargs)
    except DnaError:
        raise
    except (AssertionError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        raise DnaError(f"cannot build a network from arch_def {arch.arch_def!r:.300}: {exc}") from exc


def summarize(arch: Architecture | str | dict | list, num_classes: int | None = None,
              resolution: int | None = None) -> dict[str, Any]:
    """Params, FLOPs (MACs at ``resolution``, default the architecture's) and the layout."""
    from dna.costs import count_flops, count_params

    arch = resolve_arch(arch)
    res = int(resolution or arch.resolution)
    if res < 1:
        raise DnaError(f"resolution {resolution!r} must be a positive integer")
    model = build(arch, num_classes=num_classes)
    stages = []
    for stage in model.blocks:
        layers = list(stage)
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
        stages.append({"layers": len(layers), "channels": convs[-1].out_channels})
    params = count_params(model)
    flops = count_flops(model, (3, res, res))
    return {
        "params": params,
        "params_m": round(params / 1e6, 3),
        "flops": flops,
        "flops_m": round(flops / 1e6, 1),
        "resolution": res,
        "num_classes": int(model.num_classes),
        "stem_channels": int(model.conv_stem.out_channels),
        "head_channels": int(model.num_features),
        "channel_multiplier": arch.channel_multiplier,
        "depth_multiplier": arch.depth_multiplier,
        "num_stages": len(stages),
        "num_layers": sum(s["layers"] for s in stages),
        "stages": stages,
        "arch_def": arch.arch_def,
    }


def format_summary(r: dict[str, Any]) -> str:
    def human(n: float) -> str:
        if n >= 1e9:
            return f"{n / 1e9:.3f}G"
        if n >= 1e6:
            return f"{n / 1e6:.3f}M"
        if n >= 1e3:
            return f"{n / 1e3:.1f}K"
        return str(int(n))

    lines = [
        f"params: {r['params']:,} ({human(r['params'])})",
        f"flops:  {r['flops']:,} ({human(r['flops'])} MACs at {r['resolution']} px)",
        f"classes: {r['num_classes']}, stem {r['stem_channels']}, head {r['head_channels']}, "
        f"{r['num_stages']} stages, {r['num_layers']} layers",
    ]
    mult = (r.get("channel_multiplier", 1.0), r.get("depth_multiplier", 1.0))
    if not all(math.isclose(m, 1.0) for m in mult):
        lines.append(f"multipliers: width {mult[0]}, depth {mult[1]}")
    for i, (stage, strs) in enumerate(zip(r["stages"], r["arch_def"], strict=True)):
        lines.append(f"  stage {i}: {stage['layers']} x c{stage['channels']}  {' '.join(strs)}")
    return "\n".join(lines)
