"""The ViT family of DNA++ (``dna.space.family.Family``): what depends on a ``vit`` space.

It wraps the ViT modules (``dna.space.vit``, ``dna.supernet.vit``, ``dna.model.vit``,
``dna.ssl``, ``dna.retrain_vit``); torch and timm are imported inside the methods, since
``dna.space`` registers this family at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dna.errors import DnaError


class ViTPathCosts:
    """The costs (params, FLOPs) of a block's path (projection, layers; the last block also the final norm
    and classifier) and of the fixed patch embedding, as ``dna.model.vit`` counts them."""

    def __init__(self, space, resolution: int | None = None):
        self.space = space
        self.resolution = resolution or space.resolution

    def path(self, block: int, cell: int, ops: Sequence[str] | str, in_chs: int):
        from dna.model.vit import vit_path_costs

        return vit_path_costs(self.space, block, ops if isinstance(ops, str) else "-".join(ops), in_chs,
                              self.resolution)

    def fixed(self):
        from dna.model.vit import vit_fixed_costs

        return vit_fixed_costs(self.space, self.resolution)

    def layer_key(self, block: int, cell: int, index: int, op: str, in_chs: int) -> tuple:
        raise self._no_layers()

    def layers(self) -> list[tuple]:
        raise self._no_layers()

    def _no_layers(self) -> DnaError:
        return DnaError(f"space {self.space.name!r} (kind 'vit'): a ViT block's path is one choice, not "
                       "a chain of separately timed layers, so it has no latency-table layers; latency "
                       "tables are for spaces of timm EfficientNet-builder layers (mbconv, uir)")


class ViTFamily:
    """DNA++'s DeiT-style spaces: per block a width (heads), an MLP ratio and a depth."""

    costs = ("params", "flops")     # what dna.model.vit's path and fixed costs count
    joint_teacher = True            # DNA++ (dna.ssl): teacher and supernets train together

    def __init__(self, kind: str, space_type: type, spaces: tuple = ()):
        self.kind = kind
        self.space_type = space_type
        self.spaces = tuple(spaces)

    # ----- the space ------------------------------------------------------------------------
    def space_from_json(self, d: dict):
        return self.space_type.from_json(d)

    def describe(self, space) -> dict:
        return space.describe()

    def path_costs(self, space, resolution: int | None = None) -> ViTPathCosts:
        return ViTPathCosts(space, resolution)

    # ----- supernet and rating --------------------------------------------------------------
    def make_supernet(self, space, block: int, teacher, resolution: int | None = None):
        """The weight-sliced supernet of one block on the teacher's grids at ``resolution``."""
        from dna.supernet.vit import ViTBlockSupernet

        grids = teacher.grids(resolution or space.resolution)
        return ViTBlockSupernet(space, block, teacher.in_channels(block), teacher.out_channels(block),
                                grids[block], grids[block + 1])

    def rate(self, cfg, teacher=None) -> dict:
        """The supernet folder of a ViT space is one ``dna train-pp`` run over all blocks."""
        from dna.ssl.rate import ViTRateConfig, rate_vit

        return rate_vit(ViTRateConfig(supernet=cfg.supernets, out=cfg.out, block=cfg.block,
                                      max_batches=cfg.max_batches, generation=cfg.generation,
                                      device=cfg.device))

    def check_rows(self, space, block, cell, out_ch, ops, row) -> None:
        """Every row: cell 0, a path of its block's options, out_channels its width."""
        import numpy as np

        bad = np.flatnonzero(cell != 0)
        if len(bad):
            i = int(bad[0])
            raise DnaError(f"scores table: row {row(i)} names cell {cell[i]}, but ViT blocks have one cell (0)")
        widths: dict[tuple[int, str], int] = {}
        for i, (k, path) in enumerate(zip(block.tolist(), ops.to_pylist(), strict=True)):
            if (k, path) not in widths:
                try:
                    widths[k, path] = space.out_width(k, path)
                except DnaError as exc:
                    raise DnaError(f"scores table: row {row(i)}: {exc}") from None
            if out_ch[i] != widths[k, path]:
                raise DnaError(f"scores table: row {row(i)} has out_channels {out_ch[i]}, but path {path} "
                               f"of space {space.name!r} has width {widths[k, path]}")

    # ----- the architecture JSON --------------------------------------------------------------
    def arch_json(self, space, result, meta, extra: dict) -> dict:
        from dna.model.vit import vit_arch_from_result

        return vit_arch_from_result(result, meta, **{k: v for k, v in extra.items()
                                                     if k not in ("loss", "params", "flops")})

    def owns_arch(self, d: Any) -> bool:
        from dna.model.vit import is_vit_arch

        return is_vit_arch(d)

    def arch_record(self, d: Any) -> dict:
        from dna.model.vit import load_vit_arch

        return load_vit_arch(d)

    def arch_layers(self, d: Any) -> list[dict]:
        """One entry per transformer layer: stage (block), heads, MLP ratio, width (heads x the
        space's own head_dim)."""
        from dna.space.vit import vit_space

        rec = self.arch_record(d)
        space = vit_space(rec["space"])
        layers = []
        for k, c in enumerate(space.choices(rec["blocks"])):
            layers += [{"stage": k, "type": "transformer", "heads": c.heads, "mlp_ratio": c.mlp_ratio,
                        "width": c.heads * space.head_dim} for _ in range(c.depth)]
        return layers

    def build(self, d: Any, num_classes: int | None = None, **kwargs: Any):
        from dna.model.vit import build_from_arch

        return build_from_arch(d, num_classes=num_classes, **kwargs)

    def summarize(self, d: Any, num_classes: int | None = None, resolution: int | None = None) -> dict:
        from dna.model.vit import summarize_vit

        return summarize_vit(d, num_classes=num_classes, resolution=resolution)

    def format_summary(self, r: dict) -> str:
        from dna.model.vit import format_vit_summary

        return format_vit_summary(r)

    def scale(self, arch: Any, **kwargs: Any):
        raise DnaError("compound scaling is EfficientNet's (width, depth, resolution of a CNN); a ViT "
                       "architecture (space kind 'vit') has no such scaling: search a larger ViT space instead")

    def retrain(self, cfg, lr: float | None = None, on_epoch_end=None) -> dict:
        """A searched ViT retrains with the DeiT recipe (``dna.retrain_vit``)."""
        from dna.retrain_vit import RetrainViTConfig, retrain_vit

        return retrain_vit(RetrainViTConfig(arch=cfg.model, out=cfg.out, data=cfg.data, epochs=cfg.epochs,
                                            batch_size=cfg.batch_size, lr=lr, seed=cfg.seed,
                                            steps_per_epoch=cfg.steps_per_epoch, device=cfg.device),
                           on_epoch_end=on_epoch_end)
