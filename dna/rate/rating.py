"""Rating every path of every cell (SPEC section 5, Algorithm 1, Eq. 7).

Algorithm 1 walks a cell's choice tree depth-first: the output of a prefix of layers is computed
once and shared by every path below it, so a cell of ``d`` layers and ``c`` ops costs
``sum_{i=1..d} c^i`` layer evaluations instead of ``d * c^d``.

BatchNorm statistics of a layer depend only on what flows into it, i.e. on its prefix. Before a
layer is evaluated, its statistics are recalibrated on a calibration set pushed through that same
(already recalibrated) prefix, so the score of a path does not depend on which op happened to be
sampled last in training. Recalibrating per prefix gives exactly the per-path result, once per
tree node instead of once per path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

Path = tuple[str, ...]


def relative_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 7 for one batch: ||Y - Yhat||_1 / (K * sqrt(Var(Y))), K = number of elements."""
    pred = pred.float()
    target = target.float()
    return (pred - target).abs().sum() / (target.numel() * target.var().clamp_min(1e-12).sqrt())


@torch.no_grad()
def recalibrate(layer: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
    """Reset the layer's BatchNorm statistics and re-estimate them (cumulative average)."""
    bns = [m for m in layer.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    layer.train()
    for x in inputs:
        layer(x)
    layer.eval()
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m


@dataclass
class CellRating:
    losses: dict[Path, float]
    layer_evals: int        # layer applications to the whole rating split
    calib_evals: int        # layer applications to the calibration set


def _weighted_loss(outs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> float:
    n = sum(t.shape[0] for t in targets)
    return float(sum(relative_l1(o, t) * t.shape[0] for o, t in zip(outs, targets, strict=True)) / n)


@torch.no_grad()
def rate_cell(
    layers: Sequence[nn.ModuleDict],
    ops: Sequence[str],
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    calib: Sequence[torch.Tensor] | None = None,
) -> CellRating:
    """Algorithm 1: rate every path of one cell, sharing prefixes depth-first.

    ``layers[i][op]`` is layer ``i``'s candidate for ``op``; ``inputs``/``targets`` are the
    batches of the rating split; ``calib`` (None: no recalibration) the calibration batches.
    """
    losses: dict[Path, float] = {}
    counts = [0, 0]
    depth = len(layers)

    def visit(i: int, prefix: Path, xs: Sequence[torch.Tensor], cs: Sequence[torch.Tensor] | None):
        for op in ops:
            layer = layers[i][op]
            if cs is not None:
                recalibrate(layer, cs)
                counts[1] += 1
            layer.eval()
            outs = [layer(x) for x in xs]
            counts[0] += 1
            path = (*prefix, op)
            if i == depth - 1:
                losses[path] = _weighted_loss(outs, targets)
            else:
                c_outs = [layer(c) for c in cs] if cs is not None else None
                if cs is not None:
                    counts[1] += 1
                visit(i + 1, path, outs, c_outs)

    visit(0, (), list(inputs), list(calib) if calib is not None else None)
    return CellRating(losses, counts[0], counts[1])


@torch.no_grad()
def rate_cell_per_path(
    layers: Sequence[nn.ModuleDict],
    ops: Sequence[str],
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    calib: Sequence[torch.Tensor] | None = None,
) -> CellRating:
    """The naive reference: every path evaluated on its own (same recalibration rule)."""
    import itertools

    losses: dict[Path, float] = {}
    evals = calib_evals = 0
    for path in itertools.product(ops, repeat=len(layers)):
        xs, cs = list(inputs), list(calib) if calib is not None else None
        for i, op in enumerate(path):
            layer = layers[i][op]
            if cs is not None:
                recalibrate(layer, cs)
                calib_evals += 1
            layer.eval()
            xs = [layer(x) for x in xs]
            evals += 1
            if cs is not None and i < len(path) - 1:
                cs = [layer(c) for c in cs]
                calib_evals += 1
        losses[path] = _weighted_loss(xs, targets)
    return CellRating(losses, evals, calib_evals)
