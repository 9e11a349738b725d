"""The MBConv family (``dna.space.family.Family``): spaces of timm EfficientNet-builder layers.

Everything here works from the space's op -> block string (``MBConvSpace.block_str``), so it
serves every family whose layers timm's ``EfficientNetBuilder`` builds: MBConv (``ir`` layers) and
the MobileNetV4-style UIR family (``dna.space.uir``) are two instances of this class. One layer
factory (``dna.model.layers``), one supernet (``dna.supernet.mbconv``), one cost counter
(``dna.rate.path_costs.PathCosts``), one model (timm's ``EfficientNet``) and one architecture JSON
(``dna.model.arch``, timm's arch_def).

Heavy imports (torch, timm) happen inside the methods: ``dna.space`` registers this family at
import time and must stay light.
"""

from __future__ import annotations

from typing import Any

from dna.errors import DnaError


class MBConvFamily:
    """A family of blocks-of-cells spaces whose ops are timm EfficientNet-builder layers."""

    joint_teacher = False           # DNA / DNA+: one independent job per block, frozen teacher

    def __init__(self, kind: str, space_type: type, spaces: tuple = (), default: bool = False):
        self.kind = kind
        self.space_type = space_type
        self.spaces = tuple(spaces)
        self.default = default      # owns architectures that name no space (bare or scaled arch_defs)

    @property
    def costs(self) -> tuple[str, ...]:
        """Every cost counted on modules: the layers are real timm modules (``PathCosts``)."""
        from dna.cost_registry import on_modules

        return tuple(c.name for c in on_modules())

    # ----- the space ------------------------------------------------------------------------
    def space_from_json(self, d: dict):
        return self.space_type.from_json(d)

    def describe(self, space) -> dict:
        return space.describe()

    def path_costs(self, space, resolution: int | None = None):
        from dna.rate.path_costs import PathCosts

        return PathCosts(space, resolution)

    # ----- supernet and rating --------------------------------------------------------------
    def make_supernet(self, space, block: int, teacher, resolution: int | None = None):
        from dna.supernet.mbconv import BlockSupernet

        return BlockSupernet(space, block, teacher.in_channels(block), teacher.out_channels(block))

    def rate(self, cfg, teacher=None) -> dict:
        from dna.rate.block import rate_blocks

        return rate_blocks(cfg, teacher)

    def check_rows(self, space, block, cell, out_ch, ops, row) -> None:
        """Cells, widths, layer counts and op names of scores rows against the space."""
        import numpy as np
        import pyarrow.compute as pc

        nb = len(space.blocks)
        n_cells = max(len(b.cells) for b in space.blocks)
        layers = np.zeros((nb, n_cells), np.int64)
        chans = np.zeros((nb, n_cells), np.int64)
        for k, b in enumerate(space.blocks):
            for c, spec in enumerate(b.cells):
                layers[k, c], chans[k, c] = spec.layers, spec.channels
        bad = np.flatnonzero((cell < 0) | (cell >= n_cells))
        bad = bad if len(bad) else np.flatnonzero(layers[block, np.clip(cell, 0, n_cells - 1)] == 0)
        if len(bad):
            i = int(bad[0])
            raise DnaError(f"scores table: row {row(i)} names cell {cell[i]}, but block "
                           f"{block[i]} has cells 0..{len(space.blocks[block[i]].cells) - 1}")
        want = chans[block, cell]
        bad = np.flatnonzero(want != out_ch)
        if len(bad):
            i = int(bad[0])
            raise DnaError(f"scores table: row {row(i)} has out_channels {out_ch[i]}, but that "
                           f"cell of space {space.name!r} has {want[i]} channels")
        n_ops = pc.add(pc.count_substring(ops, "-"), 1).to_numpy()
        bad = np.flatnonzero(n_ops != layers[block, cell])
        if len(bad):
            i = int(bad[0])
            raise DnaError(f"scores table: row {row(i)} has {n_ops[i]} ops, but that cell has "
                           f"{layers[block[i], cell[i]]} layers")
        names = set(pc.unique(pc.list_flatten(pc.split_pattern(ops, "-"))).to_pylist())
        unknown = sorted(names - set(space.ops))
        if unknown:
            raise DnaError(f"scores table: unknown ops {unknown}; space {space.name!r} has {list(space.ops)}")

    # ----- the architecture JSON --------------------------------------------------------------
    def arch_json(self, space, result, meta, extra: dict) -> dict:
        """timm's arch_def of a search result, at the resolution the table was rated at."""
        from dna.model.arch import Architecture

        arch = Architecture.from_choices(space, result.choices, **extra)
        if meta.resolution:
            arch.resolution = int(meta.resolution)
        return arch.to_json()

    def owns_arch(self, d: Any) -> bool:
        """An object with ``arch_def`` whose space is of this kind; the default family also takes
        one without a space (a bare arch_def list, a scaled net)."""
        from dna.model.arch import FORMAT

        if isinstance(d, list):
            return self.default
        if not isinstance(d, dict) or "arch_def" not in d or d.get("format", FORMAT) != FORMAT:
            return False
        space = d.get("space")
        return space.get("kind") == self.kind if isinstance(space, dict) else self.default

    def arch_record(self, d: Any) -> dict:
        from dna.model.summary import resolve_arch

        return resolve_arch(d).to_json()

    def arch_layers(self, d: Any) -> list[dict]:
        from dna.model.summary import arch_layers

        return arch_layers(d)

    def build(self, d: Any, num_classes: int | None = None, **kwargs: Any):
        from dna.model.summary import build, resolve_arch

        return build(resolve_arch(d), num_classes=num_classes, **kwargs)

    def summarize(self, d: Any, num_classes: int | None = None, resolution: int | None = None) -> dict:
        from dna.model.summary import summarize

        return {**summarize(d, num_classes=num_classes, resolution=resolution), "kind": self.kind}

    def format_summary(self, r: dict) -> str:
        from dna.model.summary import format_summary

        return format_summary(r)

    def scale(self, arch: Any, **kwargs: Any):
        from dna.scale import scale_arch

        return scale_arch(arch, **kwargs)

    def retrain(self, cfg, lr: float | None = None, on_epoch_end=None) -> dict:
        from dna.retrain import retrain

        return retrain(cfg, on_epoch_end=on_epoch_end)
