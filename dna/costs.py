"""Parameter, FLOP and activation-memory counting on real modules (the counters
``dna.cost_registry`` names).

FLOPs here are multiply-accumulates (MACs) of convolutions and linear layers, counted with forward
hooks at a given input resolution: conv = H_out * W_out * C_out * (C_in / groups) * k_h * k_w,
linear = in_features * out_features (per sample). Squeeze-and-excitation convs are included (they
run on a 1x1 map). BatchNorm, activations, pooling and additions are not counted. This is the
convention of EfficientNet's and DNA's "FLOPs" (e.g. EfficientNet-B0: ~0.39G at 224 px).

Peak activation memory (``act_mem``): see :func:`count_act_mem`.
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
    counters = (*LAYER_MACS, *extra)
    hooked = [(m, fn) for m in module.modules()
              if (fn := next((fn for kind, fn in counters if isinstance(m, kind)), None)) is not None]
    return sum(int(v) for v in _hooked_pass(module, input_shape, hooked))


def _hooked_pass(module: nn.Module, input_shape: Sequence[int],
                 hooked: Sequence[tuple[nn.Module, Callable[[nn.Module, tuple, object], int]]]) -> list[int]:
    """Run one zero sample of shape ``input_shape`` through ``module`` (eval mode, no grad) and
    return what ``fn(m, inputs, output)`` gives at every call of each hooked ``m``."""
    values: list[int] = []
    if not hooked:
        return values
    handles = [m.register_forward_hook(lambda m, inp, out, fn=fn: values.append(fn(m, inp, out)))
               for m, fn in hooked]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return values


BYTES_PER_ELEMENT = 4  # float32


def _tensor_elements(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)):
        return sum(_tensor_elements(v) for v in x)
    if isinstance(x, dict):
        return sum(_tensor_elements(v) for v in x.values())
    return 0


def count_act_mem(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Peak activation memory (bytes) of one sample (batch 1) through ``module``: the largest, over
    the calls of its leaf modules (modules without children: conv, BN or its activation, linear,
    pooling, identity...), of the elements of the call's input tensors plus its output tensors,
    at 4 bytes each (float32, whatever the module's dtype).

    Why this definition: a leaf operation needs its inputs and its output in memory at once, so
    this is the working set below which no layer-by-layer executor can run the network (weights
    not included). It depends only on each leaf's own shapes, so a network's value is the max over
    its parts: the fixed part and each chosen path, which is what lets the scores table store it
    per row and the search meet a limit on it exactly. Not counted: tensors kept alive across
    leaves (a residual's shortcut, SE's input while SE runs), in-place reuse, allocator slack.
    """
    leaves = [(m, lambda _m, inp, out: _tensor_elements(inp) + _tensor_elements(out))
              for m in module.modules() if next(m.children(), None) is None]
    return BYTES_PER_ELEMENT * max(_hooked_pass(module, input_shape, leaves), default=0)
