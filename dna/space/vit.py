"""The ViT search space of DNA++ (SPEC section 3) as plain data.

DeiT-style: a fixed patch embedding (``embed_dim`` wide, plus class token and position embedding),
then ``blocks`` searched blocks, then a final LayerNorm and the classifier on the class token.
Each block picks, for all of its layers together:

- a width: ``heads`` attention heads of ``head_dim`` channels, so the block's embedding width is
  ``heads * head_dim`` (the paper's 224..448 step 32 with heads 7..14 and head dim 32);
- an MLP ratio (hidden width ``int(width * ratio)``, as timm's ``Block``);
- a depth (number of transformer layers).

So the full space is 8 widths x 4 ratios x 2 depths = 64 paths per block and 64^4 = 16,777,216
architectures over 4 blocks (the paper's "about 1.7e7").

Ops encoding (the ``ops`` column of the scores table, stable): ``h<heads>-r<ratio>-d<depth>``,
the ratio printed with ``%g`` (``h8-r3.5-d4``, ``h12-r3-d3``). ``ops.split("-")`` gives the three
tokens, which is also what a :class:`~dna.space.mbconv.BlockChoice` of this space holds; every
ViT block has one cell (``cell`` 0).

Widths between blocks: block ``k`` receives the width of block ``k-1`` (block 0: the patch
embedding's ``embed_dim``). When the widths differ, the stand-alone model puts a linear
projection (``in_width -> width``) in front of the block; it is part of that block's cost, which
is why scores rows are per (path, in width). The final LayerNorm and classifier take the last
block's width and are counted in the last block's rows (see ``dna.model.vit``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dna.errors import DnaError
from dna.space.mbconv import BlockChoice, check_resolution

_OPS_RE = re.compile(r"^h(\d+)-r(\d+(?:\.\d+)?)-d(\d+)$")


def format_ratio(ratio: float) -> str:
    return f"{float(ratio):g}"


class PathChoice(NamedTuple):
    """One block's choice: heads (width = heads * head_dim), MLP ratio, depth."""

    heads: int
    mlp_ratio: float
    depth: int

    @property
    def ops(self) -> str:
        return f"h{self.heads}-r{format_ratio(self.mlp_ratio)}-d{self.depth}"

    @classmethod
    def parse(cls, ops: str | Sequence[str]) -> PathChoice:
        """``'h8-r3.5-d4'`` (or its tokens ``('h8', 'r3.5', 'd4')``) -> PathChoice."""
        text = ops if isinstance(ops, str) else "-".join(ops)
        m = _OPS_RE.match(text)
        if not m:
            raise DnaError(
                f"bad ViT path {text!r}: expected 'h<heads>-r<mlp ratio>-d<depth>', e.g. 'h8-r3.5-d4'"
            )
        heads, ratio, depth = int(m.group(1)), float(m.group(2)), int(m.group(3))
        if heads < 1 or ratio <= 0 or depth < 1:
            raise DnaError(f"bad ViT path {text!r}: heads and depth must be >= 1 and the MLP ratio > 0, "
                           "e.g. 'h8-r3.5-d4'")
        return cls(heads, ratio, depth)


@dataclass(frozen=True)
class ViTBlock:
    """The options of one block: head counts, MLP ratios and depths (layer counts)."""

    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    depths: tuple[int, ...]

    @property
    def paths(self) -> int:
        return len(self.heads) * len(self.mlp_ratios) * len(self.depths)


@dataclass(frozen=True)
class ViTSpace:
    """A DNA++ ViT search space (see the module docstring)."""

    name: str
    blocks: tuple[ViTBlock, ...]
    head_dim: int = 32
    embed_dim: int = 384            # patch-embedding width (block 0's input width)
    patch_size: int = 16
    resolution: int = 224
    num_classes: int = 1000
    qkv_bias: bool = True
    kind: str = field(default="vit")

    def __post_init__(self) -> None:
        if not self.blocks:
            raise DnaError(f"space {self.name!r}: needs at least one block")
        for k, b in enumerate(self.blocks):
            for what, values in (("heads", b.heads), ("mlp_ratios", b.mlp_ratios), ("depths", b.depths)):
                if not values:
                    raise DnaError(f"space {self.name!r}: block {k} has no {what}")
                if len(set(values)) != len(values):
                    raise DnaError(f"space {self.name!r}: block {k} has duplicate {what} {list(values)}")
                if any(not v > 0 for v in values):
                    raise DnaError(f"space {self.name!r}: block {k} {what} {list(values)} must be positive")
            if any(int(v) != v for v in (*b.heads, *b.depths)):
                raise DnaError(f"space {self.name!r}: block {k} heads/depths must be integers")
            if len({format_ratio(r) for r in b.mlp_ratios}) != len(b.mlp_ratios):
                raise DnaError(f"space {self.name!r}: block {k} mlp_ratios {list(b.mlp_ratios)} collide when printed")
        for name in ("head_dim", "embed_dim", "patch_size", "resolution", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DnaError(f"space {self.name!r}: {name}={v!r} must be a positive integer")
        check_resolution(self.name, self.resolution)
        if self.resolution % self.patch_size:
            raise DnaError(
                f"space {self.name!r}: resolution {self.resolution} is not a multiple of patch_size {self.patch_size}"
            )
        if self.kind != "vit":
            raise DnaError(f"space {self.name!r}: kind {self.kind!r}, expected 'vit'")

    # ----- counting -------------------------------------------------------------------------
    def block_paths(self, block: int) -> int:
        self.check_block(block)
        return self.blocks[block].paths

    def count(self) -> int:
        """Exact number of architectures (an int)."""
        return math.prod(b.paths for b in self.blocks)

    # ----- lookup ---------------------------------------------------------------------------
    def check_block(self, block: int) -> None:
        if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < len(self.blocks):
            raise DnaError(
                f"block index {block!r} out of range: space {self.name!r} has blocks 0..{len(self.blocks) - 1}"
            )

    def widths(self, block: int) -> tuple[int, ...]:
        """The embedding widths block ``block`` may choose (sorted)."""
        self.check_block(block)
        return tuple(sorted(h * self.head_dim for h in self.blocks[block].heads))

    def max_width(self, block: int) -> int:
        return max(self.widths(block))

    def in_widths(self, block: int) -> tuple[int, ...]:
        """Widths the previous block may hand over (the patch embedding's for block 0)."""
        self.check_block(block)
        if block == 0:
            return (self.embed_dim,)
        return self.widths(block - 1)

    def out_width(self, block: int, choice: PathChoice) -> int:
        return self.check_path(block, choice).heads * self.head_dim

    def tokens(self, resolution: int | None = None) -> int:
        """Tokens of the stand-alone model (patches plus the class token)."""
        r = resolution or self.resolution
        if r % self.patch_size:
            raise DnaError(f"resolution {r} is not a multiple of patch_size {self.patch_size}")
        return (r // self.patch_size) ** 2 + 1

    def paths(self, block: int) -> Iterator[PathChoice]:
        """All choices of one block, widths outermost, then ratios, then depths (ascending)."""
        self.check_block(block)
        b = self.blocks[block]
        for h in b.heads:
            for r in b.mlp_ratios:
                for d in sorted(b.depths):
                    yield PathChoice(int(h), float(r), int(d))

    def check_path(self, block: int, choice: PathChoice | str | Sequence[str]) -> PathChoice:
        """Validate (and parse) one block's choice against the block's options."""
        self.check_block(block)
        c = choice if isinstance(choice, PathChoice) else PathChoice.parse(choice)
        b = self.blocks[block]
        if c.heads not in b.heads:
            raise DnaError(f"block {block} of space {self.name!r}: heads {c.heads} not in {list(b.heads)}")
        if format_ratio(c.mlp_ratio) not in {format_ratio(r) for r in b.mlp_ratios}:
            raise DnaError(
                f"block {block} of space {self.name!r}: mlp ratio {c.mlp_ratio:g} not in "
                f"{[format_ratio(r) for r in b.mlp_ratios]}"
            )
        if c.depth not in b.depths:
            raise DnaError(f"block {block} of space {self.name!r}: depth {c.depth} not in {list(b.depths)}")
        return c

    def check_choice(self, choice: BlockChoice) -> None:
        if choice.cell != 0:
            raise DnaError(f"block {choice.block}: ViT blocks have one cell (0), got cell {choice.cell}")
        self.check_path(choice.block, choice.ops)

    def choices(self, picks: Sequence) -> list[PathChoice]:
        """One PathChoice per block from ops strings, token tuples, BlockChoices, PathChoices, or
        dicts with an ``ops`` key (e.g. scores rows or a search result's ``blocks``)."""
        if len(picks) != len(self.blocks):
            raise DnaError(f"expected one choice per block ({len(self.blocks)}), got {len(picks)}")
        out = []
        for k, p in enumerate(picks):
            if isinstance(p, BlockChoice):
                if p.block != k:
                    raise DnaError(f"choice {k} names block {p.block}; choices must be in block order")
                p = p.ops
            elif isinstance(p, dict):
                if "block" in p and int(p["block"]) != k:
                    raise DnaError(f"choice {k} names block {p['block']}; choices must be in block order")
                p = p["ops"]
            out.append(self.check_path(k, p))
        return out

    # ----- the exchange format ----------------------------------------------------------------
    def arch_def(self, choices: Sequence) -> list[list[str]]:
        """Per block the ops tokens, e.g. ``[['h8', 'r3.5', 'd4'], ...]`` (what search returns)."""
        return [c.ops.split("-") for c in self.choices(choices)]

    # ----- data -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "blocks": [
                {"heads": list(b.heads), "mlp_ratios": list(b.mlp_ratios), "depths": list(b.depths)}
                for b in self.blocks
            ],
            "head_dim": self.head_dim,
            "embed_dim": self.embed_dim,
            "patch_size": self.patch_size,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "qkv_bias": self.qkv_bias,
        }

    @classmethod
    def from_json(cls, d: dict) -> ViTSpace:
        """From :meth:`to_json`, or the compact form with shared options for every block:
        ``{"name": ..., "kind": "vit", "num_blocks": 4, "heads": [7, ..., 14],
        "mlp_ratios": [2.5, 3, 3.5, 4], "depths": [3, 4], ...}``."""
        try:
            if "blocks" in d:
                blocks = tuple(_block(b) for b in d["blocks"])
            else:
                blocks = (_block(d),) * int(d["num_blocks"])
            kw = {k: d[k] for k in ("head_dim", "embed_dim", "patch_size", "resolution", "num_classes")
                  if k in d}
            kw = {k: int(v) for k, v in kw.items()}
            if "qkv_bias" in d:
                kw["qkv_bias"] = bool(d["qkv_bias"])
            return cls(name=str(d["name"]), blocks=blocks, kind=str(d.get("kind", "vit")), **kw)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DnaError):
                raise
            raise DnaError(f"malformed ViT space JSON: missing or bad field ({exc})") from exc

    def op_tokens(self) -> list[str]:
        heads = sorted({h for b in self.blocks for h in b.heads})
        ratios = sorted({float(r) for b in self.blocks for r in b.mlp_ratios})
        depths = sorted({d for b in self.blocks for d in b.depths})
        return [f"h{h}" for h in heads] + [f"r{format_ratio(r)}" for r in ratios] + [f"d{d}" for d in depths]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "ops": self.op_tokens(),
            "encoding": "h<heads>-r<mlp ratio>-d<depth>",
            "resolution": self.resolution,
            "patch_size": self.patch_size,
            "head_dim": self.head_dim,
            "embed_dim": self.embed_dim,
            "tokens": self.tokens(),
            "blocks": [
                {
                    "block": k,
                    "in_widths": list(self.in_widths(k)),
                    "widths": list(self.widths(k)),
                    "heads": list(b.heads),
                    "mlp_ratios": [float(r) for r in b.mlp_ratios],
                    "depths": list(b.depths),
                    "cells": [{
                        "cell": 0,
                        "layers": "/".join(str(d) for d in sorted(b.depths)),
                        "channels": "/".join(str(w) for w in self.widths(k)),
                        "mlp_ratios": [float(r) for r in b.mlp_ratios],
                        "paths": b.paths,
                    }],
                    "paths": b.paths,
                }
                for k, b in enumerate(self.blocks)
            ],
            "architectures": self.count(),
        }


def _block(d: dict) -> ViTBlock:
    return ViTBlock(
        heads=tuple(int(h) for h in d["heads"]),
        mlp_ratios=tuple(float(r) for r in d["mlp_ratios"]),
        depths=tuple(int(x) for x in d["depths"]),
    )


# SPEC section 3: heads 7..14 (width 224..448 step 32), MLP ratio 2.5..4 step 0.5, 3 or 4 layers
# per block (12..16 in all), 4 blocks: 64^4 = 16,777,216 architectures. Patch embedding at
# DeiT-S's width (384), 224 px, patch 16.
VIT_BLOCK = ViTBlock(heads=tuple(range(7, 15)), mlp_ratios=(2.5, 3.0, 3.5, 4.0), depths=(3, 4))
VIT = ViTSpace(name="vit", blocks=(VIT_BLOCK,) * 4)

# Scaled-down space for tests and the embedded default: head dim 8 (widths 16/24), ratios 2 or 4,
# 1 or 2 layers per block, patch 4 at 32 px, 10 classes: 8 paths per block, 4096 architectures.
VIT_TINY = ViTSpace(
    name="vit-tiny",
    blocks=(ViTBlock(heads=(2, 3), mlp_ratios=(2.0, 4.0), depths=(1, 2)),) * 4,
    head_dim=8,
    embed_dim=16,
    patch_size=4,
    resolution=32,
    num_classes=10,
)

VIT_SPACES = {s.name: s for s in (VIT, VIT_TINY)}


def vit_space(spec) -> ViTSpace:
    """A ViT space from a name (``vit``, ``vit-tiny`` or one registered in ``dna.space``), a
    ViTSpace, a JSON dict, or a space .json URI."""
    if isinstance(spec, ViTSpace):
        return spec
    if isinstance(spec, str) and spec in VIT_SPACES:
        return VIT_SPACES[spec]
    if isinstance(spec, dict):
        return ViTSpace.from_json(spec)
    from dna.space import get_space

    space = get_space(spec)
    if not isinstance(space, ViTSpace):
        raise DnaError(f"space {getattr(space, 'name', spec)!r} is not a ViT space (kind 'vit')")
    return space
