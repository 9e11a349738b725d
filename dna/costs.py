"""Parameter and FLOP counting on real modules (the counters ``dna.cost_registry`` names).

FLOPs here are multiply-accumulates (MACs) of convolutions and linear layers, counted with forward
hooks at a given input resolution: conv = H_out * W_out * C_out * (C_in / groups) * k_h * k_w,
linear = in_features * out_features (per sample). Squeeze-and-excitation convs are included (they
run on a 1x1 map). BatchNorm, activations, pooling and additions are not counted. This is the
convention of EfficientNet's and DNA's "FLOPs" (e.g. EfficientNet-B0: ~0.39G at 224 px).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn


def count_params(module: nn.Module, input_shape: Sequence[int] | None = None) -> int:
    """Parameters of ``module`` (``input_shape`` is unused: the signature of every counter that
    ``dna.cost_registry`` names)."""
    return sum(p.numel() for p in module.parameters())


def _conv_macs(m: nn.Conv2d, _inp, out) -> int:
    kh, kw = m.kernel_size
    return out.shape[-1] * out.shape[-2] * m.out_channels * (m.in_channels // m.groups) * kh * kw


def _linear_macs(m: nn.Linear, _inp, out) -> int:
    return m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])


# (module type, MACs of one call from (module, inputs, output)): the first type a module matches counts
MacCounter = tuple[type, Callable[[nn.Module, tuple, torch.Tensor], int]]
LAYER_MACS: tuple[MacCounter, ...] = ((nn.Conv2d, _conv_macs), (nn.Linear, _linear_macs))


def count_flops(module: nn.Module, input_shape: Sequence[int], extra: Sequence[MacCounter] = ()) -> int:
    """MACs of one sample through ``module`` for an input of shape ``(C, H, W)``: convolutions and
    linear layers, plus what the ``extra`` counters add (e.g. attention matmuls), in one pass."""
    total = 0
    counters = (*LAYER_MACS, *extra)

    def hook_for(fn):
        def hook(m, inp, out):
            nonlocal total
            total += int(fn(m, inp, out))
        return hook

    handles = []
    for m in module.modules():
        fn = next((fn for kind, fn in counters if isinstance(m, kind)), None)
        if fn is not None:
            handles.append(m.register_forward_hook(hook_for(fn)))
    if not handles:
        return 0
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
