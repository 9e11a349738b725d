"""Build the stand-alone network of an architecture with timm's EfficientNet builder."""

from __future__ import annotations

from functools import partial

import torch.nn as nn
from timm.models._efficientnet_builder import decode_arch_def, resolve_act_layer, round_channels
from timm.models.efficientnet import EfficientNet

from dna.errors import DnaError
from dna.model.arch import Architecture


def build_model(
    arch: Architecture,
    num_classes: int | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> EfficientNet:
    """A timm ``EfficientNet`` exactly as ``timm.create_model`` builds one from this arch_def."""
    round_fn = partial(round_channels, multiplier=arch.channel_multiplier)
    try:
        block_args = decode_arch_def(arch.arch_def, arch.depth_multiplier)
    except (AssertionError, ValueError, KeyError, IndexError) as exc:
        raise DnaError(f"cannot decode arch_def {arch.arch_def!r:.200}: {exc}") from exc
    return EfficientNet(
        block_args=block_args,
        num_classes=arch.num_classes if num_classes is None else num_classes,
        num_features=round_fn(arch.head_channels),
        stem_size=arch.stem_channels,
        round_chs_fn=round_fn,
        act_layer=resolve_act_layer({}, "swish"),
        norm_layer=partial(nn.BatchNorm2d),
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


def zero_classifier(model: nn.Module) -> nn.Module:
    """Start the classifier at zero, so the first loss is ln(num_classes) (``RetrainConfig.zero_head``).

    timm's TF-style init draws it from U(+-1/sqrt(num_classes)), a range sized for 1000 classes:
    with 10 the first logits are large and the first epoch's loss sits above chance. The embedded
    default's short trainings (AdamW 0.005) then take off hundreds of updates later; with a zero
    classifier its teacher reaches 77% instead of 42% in the same 10 epochs. Not a default: with
    the ranking benchmark's recipe (AdamW 0.02, weight decay 0.01) it made the ground truth too
    noisy to pass the gate (benchmarks/RESULTS.md). The layers below keep their usual init."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return model
