"""Costs of candidate paths as they will be in the final stand-alone model.

Every number comes from timm modules built from the same arch_def strings the final model uses
(``dna.model.layers``), at the student widths of the space (not the supernet's teacher-width
ends). Costs are dicts (cost name -> value) of every cost ``dna.cost_registry`` counts on MBConv
modules; a path's cost combines its layers' costs by each cost's rule (sum, or max for a peak).
The first layer's cost depends on the width handed over by the previous block, hence the
``in_channels`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from dna.cost_registry import on_modules
from dna.model.layers import build_layer, build_layers
from dna.space.mbconv import MBConvSpace

Costs = dict[str, int]


def module_costs(module, input_shape: Sequence[int]) -> Costs:
    """Every cost the registry counts on modules, of ``module`` at ``input_shape``."""
    return {c.name: c.count(module, tuple(input_shape)) for c in on_modules()}


def combine(parts: Sequence[Costs]) -> Costs:
    """The costs of modules run one after the other: each cost by its rule (sum or max)."""
    return {c.name: c.total(0, [p[c.name] for p in parts]) for c in on_modules()}


@cache
def _layer_cost(in_chs: int, block_str: str, size: int) -> tuple[tuple[str, int], ...]:
    return tuple(module_costs(build_layer(in_chs, block_str), (in_chs, size, size)).items())


class PathCosts:
    """The counted costs (params, FLOPs (MACs)...) per layer, path and fixed part of an
    MBConv-family space (any space of timm EfficientNet-builder layers: MBConv, UIR)."""

    def __init__(self, space: MBConvSpace, resolution: int | None = None):
        self.space = space
        self.resolution = resolution or space.resolution

    def layer_key(self, block: int, cell: int, index: int, op: str, in_chs: int) -> tuple[int, str, int]:
        """The layer's identity (input channels, block string, input size): the space's own."""
        return self.space.layer_key(block, cell, index, op, in_chs, self.resolution)

    def layers(self) -> list[tuple[int, str, int]]:
        """Every distinct candidate layer of the space (all cells, positions, ops, input widths)."""
        seen: dict[tuple[int, str, int], None] = {}
        for k, b in enumerate(self.space.blocks):
            for c, cell in enumerate(b.cells):
                for i in range(cell.layers):
                    for op in self.space.ops:
                        for w in self.space.in_widths(k) if i == 0 else (cell.channels,):
                            seen[self.layer_key(k, c, i, op, w)] = None
        return list(seen)

    def layer(self, block: int, cell: int, index: int, op: str, in_chs: int) -> Costs:
        return dict(_layer_cost(*self.layer_key(block, cell, index, op, in_chs)))

    def path(self, block: int, cell: int, ops: Sequence[str], in_chs: int) -> Costs:
        return combine([self.layer(block, cell, i, op, in_chs) for i, op in enumerate(ops)])

    def fixed(self) -> Costs:
        """Stem, fixed first layer and head (1x1 conv, BN, global pool, classifier) of the final
        model: every module outside the searched blocks."""
        import timm.layers
        import torch.nn as nn

        s = self.space
        size = self.resolution
        stem = nn.Sequential(
            timm.layers.create_conv2d(3, s.stem_channels, 3, stride=2),
            nn.BatchNorm2d(s.stem_channels),
        )
        first = build_layers(s.stem_channels, s.first_stage())
        last = s.blocks[-1].cells[0].channels
        head = nn.Sequential(
            timm.layers.create_conv2d(last, s.head_channels, 1), nn.BatchNorm2d(s.head_channels)
        )
        classifier = nn.Sequential(timm.layers.SelectAdaptivePool2d(pool_type="avg", flatten=True),
                                   nn.Linear(s.head_channels, s.num_classes))
        half = -(-size // 2)
        final = s.in_resolution(len(s.blocks) - 1, size)
        final = -(-final // s.blocks[-1].stride)
        return combine([module_costs(stem, (3, size, size)),
                        module_costs(first, (s.stem_channels, half, half)),
                        module_costs(head, (last, final, final)),
                        module_costs(classifier, (s.head_channels, final, final))])
