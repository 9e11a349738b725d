"""The MBConv search space of DNA (SPEC section 2, Table 1) as plain data.

A space is ``blocks`` of ``cells``; a cell is a fixed (layers, channels) pair whose every layer
picks one op. Everything downstream (supernet, costs, search, arch_def export) reads this data,
so a new space is a few lines: a list of cells per block, the ops, and the fixed stem/head.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from dna.errors import DnaError

_OP_RE = re.compile(r"^k(\d+)e(\d+)$")
MAX_RESOLUTION = 1024  # input sizes beyond this allocate gigabytes per batch (also `--resolution`'s bound)


def check_resolution(space_name: str, resolution) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= MAX_RESOLUTION:
        raise DnaError(f"space {space_name!r}: resolution={resolution!r}, expected an integer in 8..{MAX_RESOLUTION}")


@dataclass(frozen=True)
class Op:
    """One MBConv candidate: kernel size and expansion ratio (SE and Swish are space-wide)."""

    kernel: int
    expand: int

    @property
    def name(self) -> str:
        return f"k{self.kernel}e{self.expand}"

    @classmethod
    def parse(cls, name: str) -> Op:
        m = _OP_RE.match(name)
        if not m or int(m.group(1)) % 2 == 0 or int(m.group(2)) < 1:
            raise DnaError(
                f"unknown op {name!r}: expected 'k<odd kernel>e<expansion>', e.g. 'k3e6'"
            )
        return cls(int(m.group(1)), int(m.group(2)))

    def block_str(self, stride: int, channels: int, se_ratio: float) -> str:
        """timm's arch_def string for this op as one layer."""
        se = f"_se{se_ratio:g}" if se_ratio else ""
        return f"ir_r1_k{self.kernel}_s{stride}_e{self.expand}_c{channels}{se}"


@dataclass(frozen=True)
class Cell:
    layers: int
    channels: int


@dataclass(frozen=True)
class Block:
    """One block of the space: its candidate cells and the stride of its first layer."""

    cells: tuple[Cell, ...]
    stride: int


@dataclass(frozen=True)
class BlockChoice:
    """The choice made in one block: which cell, and one op per layer of that cell."""

    block: int
    cell: int
    ops: tuple[str, ...]

    @property
    def ops_str(self) -> str:
        return "-".join(self.ops)

    def to_json(self) -> dict:
        return {"block": self.block, "cell": self.cell, "ops": self.ops_str}

    @classmethod
    def from_json(cls, d: dict) -> BlockChoice:
        return cls(int(d["block"]), int(d["cell"]), tuple(str(d["ops"]).split("-")))


@dataclass(frozen=True)
class MBConvSpace:
    """A DNA MBConv search space: blocks of cells, ops, and the fixed parts of the final net.

    The fixed parts follow EfficientNet: a 3x3 stride-2 stem conv, one depthwise-separable
    layer (``ds_r1_k3_s1_c16_se0.25``), the searched blocks, then a 1x1 head conv, pooling and
    the classifier.
    """

    name: str
    ops: tuple[str, ...]
    blocks: tuple[Block, ...]
    se_ratio: float = 0.25
    stem_channels: int = 32
    first_channels: int = 16
    head_channels: int = 1280
    resolution: int = 224
    num_classes: int = 1000
    kind: str = field(default="mbconv")
    # The family-specific part: how an op name parses and becomes one timm block string. A family
    # of other EfficientNet-builder layers (``dna.space.uir``) subclasses the space and sets this.
    op_type: ClassVar[type] = Op

    def __post_init__(self) -> None:
        if not self.ops:
            raise DnaError(f"space {self.name!r}: needs at least one op")
        if len(set(self.ops)) != len(self.ops):
            raise DnaError(f"space {self.name!r}: duplicate ops in {list(self.ops)}")
        for op in self.ops:
            self.op_type.parse(op)
        if not self.blocks:
            raise DnaError(f"space {self.name!r}: needs at least one block")
        for k, block in enumerate(self.blocks):
            if not block.cells:
                raise DnaError(f"space {self.name!r}: block {k} has no cells")
            if block.stride not in (1, 2):
                raise DnaError(f"space {self.name!r}: block {k} stride {block.stride}, expected 1 or 2")
            for c, cell in enumerate(block.cells):
                if cell.layers < 1 or cell.channels < 1:
                    raise DnaError(
                        f"space {self.name!r}: block {k} cell {c} {cell} needs layers >= 1 and channels >= 1"
                    )
        if len({c.channels for c in self.blocks[-1].cells}) != 1:
            raise DnaError(
                f"space {self.name!r}: the last block's cells must share one width (the fixed head's "
                f"input), got {sorted({c.channels for c in self.blocks[-1].cells})}"
            )
        for name in ("stem_channels", "first_channels", "head_channels", "resolution", "num_classes"):
            if getattr(self, name) < 1:
                raise DnaError(f"space {self.name!r}: {name}={getattr(self, name)} must be positive")
        check_resolution(self.name, self.resolution)

    # ----- counting -------------------------------------------------------------------------
    def cell_paths(self, block: int, cell: int) -> int:
        return len(self.ops) ** self.cell(block, cell).layers

    def block_paths(self, block: int) -> int:
        self.check_block(block)
        return sum(len(self.ops) ** c.layers for c in self.blocks[block].cells)

    def count(self) -> int:
        """Exact number of architectures (an int, not a float)."""
        return math.prod(self.block_paths(k) for k in range(len(self.blocks)))

    # ----- lookup ---------------------------------------------------------------------------
    def check_block(self, block: int) -> None:
        if not isinstance(block, int) or not 0 <= block < len(self.blocks):
            raise DnaError(
                f"block index {block!r} out of range: space {self.name!r} has blocks 0..{len(self.blocks) - 1}"
            )

    def cell(self, block: int, cell: int) -> Cell:
        self.check_block(block)
        cells = self.blocks[block].cells
        if not isinstance(cell, int) or not 0 <= cell < len(cells):
            raise DnaError(f"cell index {cell!r} out of range: block {block} has cells 0..{len(cells) - 1}")
        return cells[cell]

    def in_widths(self, block: int) -> tuple[int, ...]:
        """Widths the previous block may hand over (the fixed first layer's for block 0)."""
        self.check_block(block)
        if block == 0:
            return (self.first_channels,)
        return tuple(sorted({c.channels for c in self.blocks[block - 1].cells}))

    def in_resolution(self, block: int, resolution: int | None = None) -> int:
        """Spatial size of the feature map entering ``block`` (stem halves it once)."""
        self.check_block(block)
        size = -(-(resolution or self.resolution) // 2)
        for b in self.blocks[:block]:
            size = -(-size // b.stride)
        return size

    def paths(self, block: int, cell: int) -> Iterator[tuple[str, ...]]:
        """All op sequences of one cell, in the depth-first order of Algorithm 1."""
        return itertools.product(self.ops, repeat=self.cell(block, cell).layers)

    def check_choice(self, choice: BlockChoice) -> None:
        cell = self.cell(choice.block, choice.cell)
        if len(choice.ops) != cell.layers:
            raise DnaError(
                f"block {choice.block} cell {choice.cell} has {cell.layers} layers, got ops {choice.ops_str!r}"
            )
        for op in choice.ops:
            if op not in self.ops:
                raise DnaError(f"unknown op {op!r} in {choice.ops_str!r}: space {self.name!r} has {list(self.ops)}")

    # ----- layer identity ---------------------------------------------------------------------
    def block_str(self, op: str, stride: int, channels: int) -> str:
        """timm's arch_def string of ``op`` as one layer of this space."""
        return self.op_type.parse(op).block_str(stride, channels, self.se_ratio)

    def layer_key(self, block: int, cell: int, index: int, op: str, in_chs: int,
                  resolution: int | None = None) -> tuple[int, str, int]:
        """(input channels, block string, input size) of one layer in the stand-alone model: what
        its params, FLOPs and latency depend on (layers after the first take the cell's width)."""
        c = self.cell(block, cell)
        stride = self.blocks[block].stride if index == 0 else 1
        size = self.in_resolution(block, resolution)
        if index > 0:
            size = -(-size // self.blocks[block].stride)
            in_chs = c.channels
        return in_chs, self.block_str(op, stride, c.channels), size

    # ----- arch_def -------------------------------------------------------------------------
    def first_stage(self) -> list[str]:
        se = f"_se{self.se_ratio:g}" if self.se_ratio else ""
        return [f"ds_r1_k3_s1_e1_c{self.first_channels}{se}"]

    def cell_arch(self, block: int, cell: int, ops: Sequence[str]) -> list[str]:
        """timm arch_def strings of one cell path (one stage of the final model)."""
        c = self.cell(block, cell)
        stride = self.blocks[block].stride
        return [self.block_str(op, stride if i == 0 else 1, c.channels) for i, op in enumerate(ops)]

    def arch_def(self, choices: Sequence[BlockChoice]) -> list[list[str]]:
        """The full arch_def (fixed first stage included) of one architecture."""
        if len(choices) != len(self.blocks):
            raise DnaError(f"expected one choice per block ({len(self.blocks)}), got {len(choices)}")
        out = [self.first_stage()]
        for k, ch in enumerate(choices):
            if ch.block != k:
                raise DnaError(f"choice {k} names block {ch.block}; choices must be in block order")
            self.check_choice(ch)
            out.append(self.cell_arch(k, ch.cell, ch.ops))
        return out

    # ----- data -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        d = asdict(self)
        d["ops"] = list(self.ops)
        d["blocks"] = [
            {"stride": b.stride, "cells": [[c.layers, c.channels] for c in b.cells]} for b in self.blocks
        ]
        return d

    @classmethod
    def from_json(cls, d: dict) -> MBConvSpace:
        try:
            blocks = tuple(
                Block(tuple(Cell(int(c[0]), int(c[1])) for c in b["cells"]), int(b["stride"]))
                for b in d["blocks"]
            )
            kw = {k: d[k] for k in ("se_ratio", "stem_channels", "first_channels", "head_channels",
                                    "resolution", "num_classes") if k in d}
            return cls(name=str(d["name"]), ops=tuple(d["ops"]), blocks=blocks, **kw)
        except (KeyError, TypeError, IndexError) as exc:
            raise DnaError(f"malformed {cls.__name__.removesuffix('Space')} space JSON: missing or bad "
                           f"field ({exc})") from exc

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "ops": list(self.ops),
            "resolution": self.resolution,
            "blocks": [
                {
                    "block": k,
                    "stride": b.stride,
                    "in_widths": list(self.in_widths(k)),
                    "cells": [
                        {"cell": c, "layers": cell.layers, "channels": cell.channels,
                         "paths": len(self.ops) ** cell.layers}
                        for c, cell in enumerate(b.cells)
                    ],
                    "paths": self.block_paths(k),
                }
                for k, b in enumerate(self.blocks)
            ],
            "architectures": self.count(),
        }


def _blocks(table: Sequence[tuple[int, Sequence[tuple[int, int]]]]) -> tuple[Block, ...]:
    return tuple(Block(tuple(Cell(n, c) for n, c in cells), stride) for stride, cells in table)


# Table 1 of the paper; strides of EfficientNet (first layer of blocks 1, 2, 3, 5 has stride 2).
TABLE1 = _blocks([
    (2, [(2, 24), (3, 24), (2, 32)]),
    (2, [(2, 40), (3, 40), (4, 40)]),
    (2, [(2, 80), (3, 80), (4, 80)]),
    (1, [(3, 112), (4, 112), (4, 96)]),
    (2, [(4, 192), (5, 192), (5, 160)]),
    (1, [(1, 320)]),
])

OPS6 = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")
OPS4 = ("k3e3", "k3e6", "k5e3", "k5e6")

MBCONV = MBConvSpace(name="mbconv", ops=OPS6, blocks=TABLE1)
MBCONV4 = MBConvSpace(name="mbconv4", ops=OPS4, blocks=TABLE1)

# Scaled-down space for tests and the embedded default: same 6-block shape and strides, at most
# two layers per cell, 4 ops, narrow widths (multiples of 8), 32 px, 10 classes.
MBCONV_TINY = MBConvSpace(
    name="mbconv-tiny",
    ops=OPS4,
    blocks=_blocks([
        (2, [(1, 16), (2, 16), (1, 24)]),
        (2, [(1, 24), (2, 24)]),
        (2, [(1, 40), (2, 40)]),
        (1, [(1, 48), (2, 56)]),
        (2, [(1, 80), (2, 96)]),
        (1, [(1, 160)]),
    ]),
    stem_channels=16,
    first_channels=8,
    head_channels=320,
    resolution=32,
    num_classes=10,
)
