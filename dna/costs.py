"""Parameter and FLOP counting on real modules.

FLOPs here are multiply-accumulates (MACs) of convolutions and linear layers, counted with forward
hooks at a given input resolution: conv = H_out * W_out * C_out * (C_in / groups) * k_h * k_w,
linear = in_features * out_features (per sample). Squeeze-and-excitation convs are included (they
run on a 1x1 map). BatchNorm, activations, pooling and additions are not counted. This is the
convention of EfficientNet's and DNA's "FLOPs" (e.g. EfficientNet-B0: ~0.39G at 224 px).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one sample through ``module`` for an input of shape ``(C, H, W)``."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.shape[-1] * out.shape[-2] * m.out_channels * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return int(total)
