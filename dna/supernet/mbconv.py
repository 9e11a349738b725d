"""MBConv student supernet of one block (SPEC section 4); any MBConv-family space (MBConv, UIR).

Each cell of the block is a chain of choice layers; each choice layer holds one timm layer per op,
built from the op's arch_def string, so a searched path is exactly the layer timm later builds.
As in the reference code, a block's first layer takes the teacher's width at the block's input
and its last layer gives the teacher's width at the output (the loss compares with the teacher);
inside, layers have the cell's width. The final model uses the cell's width at both ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from dna.model.layers import build_layer
from dna.space.mbconv import MBConvSpace


class ChoiceLayer(nn.Module):
    """One layer position: a candidate timm layer per op, one of which runs."""

    def __init__(self, space: MBConvSpace, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.candidates = nn.ModuleDict(
            {op: build_layer(in_chs, space.block_str(op, stride, out_chs)) for op in space.ops}
        )

    def forward(self, x: torch.Tensor, op: str) -> torch.Tensor:
        return self.candidates[op](x)


class CellSupernet(nn.Module):
    """A cell: ``layers`` choice layers, ``in_chs -> channels ... channels -> out_chs``."""

    def __init__(self, space: MBConvSpace, layers: int, channels: int, in_chs: int, out_chs: int,
                 stride: int):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(layers):
            self.layers.append(ChoiceLayer(
                space,
                in_chs if i == 0 else channels,
                out_chs if i == layers - 1 else channels,
                stride if i == 0 else 1,
            ))

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        for layer, op in zip(self.layers, ops, strict=True):
            x = layer(x, op)
        return x


class BlockSupernet(nn.Module):
    """All cells of one block, mapping the teacher's input map to the teacher's output width."""

    def __init__(self, space: MBConvSpace, block: int, teacher_in: int, teacher_out: int):
        super().__init__()
        space.check_block(block)
        self.space = space
        self.block = block
        spec = space.blocks[block]
        self.cells = nn.ModuleList(
            CellSupernet(space, c.layers, c.channels, teacher_in, teacher_out, spec.stride)
            for c in spec.cells
        )

    def forward(self, x: torch.Tensor, cell: int, ops: Sequence[str]) -> torch.Tensor:
        return self.cells[cell](x, ops)

    def sample(self, generator: torch.Generator) -> list[tuple[str, ...]]:
        """One uniformly sampled op per layer for every cell (SPEC section 4)."""
        ops = self.space.ops
        out = []
        for cell in self.cells:
            idx = torch.randint(len(ops), (len(cell.layers),), generator=generator).tolist()
            out.append(tuple(ops[i] for i in idx))
        return out
