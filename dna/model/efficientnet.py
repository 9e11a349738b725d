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
    """A timm ``EfficientNet`` as ``timm.create_model`` builds one from this arch_def, except for
    the classifier's initial weights (:func:`zero_classifier`)."""
    round_fn = partial(round_channels, multiplier=arch.channel_multiplier)
    try:
        block_args = decode_arch_def(arch.arch_def, arch.depth_multiplier)
    except (AssertionError, ValueError, KeyError, IndexError) as exc:
        raise DnaError(f"cannot decode arch_def {arch.arch_def!r:.200}: {exc}") from exc
    return zero_classifier(EfficientNet(
        block_args=block_args,
        num_classes=arch.num_classes if num_classes is None else num_classes,
        num_features=round_fn(arch.head_channels),
        stem_size=arch.stem_channels,
        round_chs_fn=round_fn,
        act_layer=resolve_act_layer({}, "swish"),
        norm_layer=partial(nn.BatchNorm2d),
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    ))


def zero_classifier(model: EfficientNet) -> EfficientNet:
    """Start the classifier at zero, so the first loss is ln(num_classes).

    timm's TF-style init draws it from U(+-1/sqrt(num_classes)), a range sized for 1000 classes:
    with 10 the initial logits are large, the first epochs' loss sits above chance and small
    from-scratch trainings (the embedded default, the ranking benchmark) lose hundreds of updates
    before they take off (benchmarks/RESULTS.md, "Demo settings"). Zero is what timm itself does
    for ViT heads; the features below are trained from their usual init."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return model
