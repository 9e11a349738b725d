"""timm's own EfficientNet layer factory, shared by the supernet, the cost counter and the builder.

Building every layer through ``EfficientNetBuilder`` keeps one source of truth: the layer that is
rated in the supernet, the layer whose params/FLOPs are counted, and the layer of the final model
are made by the same code from the same arch_def string.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn as nn
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import (
    EfficientNetBuilder,
    decode_arch_def,
    resolve_act_layer,
    round_channels,
)

ACT = "swish"


def make_builder() -> EfficientNetBuilder:
    """The builder with EfficientNet's defaults (Swish, BatchNorm, SE from block input)."""
    return EfficientNetBuilder(
        round_chs_fn=round_channels,
        act_layer=resolve_act_layer({}, ACT),
        norm_layer=partial(nn.BatchNorm2d),
        se_layer=SqueezeExcite,
    )


def build_layers(in_chs: int, block_strs: Sequence[str]) -> nn.Sequential:
    """The layers timm builds for ``block_strs`` (one stage) given ``in_chs`` input channels."""
    stages = make_builder()(in_chs, decode_arch_def([list(block_strs)]))
    return nn.Sequential(*[layer for stage in stages for layer in stage])


def build_layer(in_chs: int, block_str: str) -> nn.Module:
    """One timm layer (e.g. an ``InvertedResidual``) from one arch_def string."""
    return build_layers(in_chs, [block_str])[0]
