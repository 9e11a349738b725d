"""The DNA++ teacher: a timm CNN split at its stage boundaries, trainable or frozen.

Same split as :class:`dna.teacher.BlockTeacher` (whose validation and channel probing it reuses):
the last ``num_blocks`` stages of an EfficientNet-style CNN are the blocks, the stem and the
stages before them the prefix. For a 7-stage EfficientNet (B0, B1, the tiny test teacher) and the
4 ViT blocks this gives:

==========  ==========================  =====================================
boundary    teacher map                 B1 at 224 px (channels, grid)
==========  ==========================  =====================================
``Y_0``     output of stage 2           40 ch, 28 x 28 (stride 8)
``Y_1``     output of stage 3 (block 0) 80 ch, 14 x 14 (stride 16: DeiT's grid)
``Y_2``     output of stage 4 (block 1) 112 ch, 14 x 14
``Y_3``     output of stage 5 (block 2) 192 ch, 7 x 7
``Y_4``     output of stage 6 (block 3) 320 ch, 7 x 7
==========  ==========================  =====================================

Unlike ``BlockTeacher`` (frozen, for DNA/DNA+), ``SplitTeacher(trainable=True)`` keeps gradients
and BatchNorm updates so DNA++ trains it jointly with the students; its conv head and classifier
are unused (frozen). The module holds the timm model once (``self.model``), so its state dict is a
plain timm state dict under ``model.``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dna.errors import DnaError
from dna.ssl_config import FULL_TEACHER, TINY_TEACHER, default_teacher  # noqa: F401 (re-exported)
from dna.teacher import BlockTeacher, TeacherConfig, create_model, load_state


def tiny_teacher_arch(resolution: int, num_classes: int = 10):
    """The architecture of ``efficientnet-tiny``: EfficientNet-B0 at half width and half depth."""
    from dna.model.arch import EFFICIENTNET_B0, Architecture

    return Architecture(EFFICIENTNET_B0, resolution=resolution, num_classes=num_classes,
                        channel_multiplier=0.5, depth_multiplier=0.5)


def create_teacher_model(cfg: TeacherConfig, resolution: int, load_weights: bool = True) -> nn.Module:
    """The teacher network of ``cfg``: a timm name, an architecture JSON URI, or
    ``efficientnet-tiny`` (half-width, half-depth EfficientNet-B0 built here, CPU-sized). Weights
    from ``cfg.checkpoint`` / ``cfg.pretrained`` when ``load_weights``; random otherwise."""
    if cfg.model == TINY_TEACHER:
        from dna.model.efficientnet import build_model

        if cfg.pretrained:
            raise DnaError(f"teacher {TINY_TEACHER!r} has no pretrained weights: give a checkpoint")
        model = build_model(tiny_teacher_arch(resolution, cfg.num_classes or 10))
    else:
        model = create_model(cfg.model, num_classes=cfg.num_classes,
                             pretrained=bool(cfg.pretrained and load_weights))
    if load_weights and cfg.checkpoint:
        load_state(model, cfg.checkpoint)
    return model


class SplitTeacher(nn.Module):
    """A teacher CNN split into prefix + one stage per block (see the module docstring)."""

    def __init__(self, model: nn.Module, num_blocks: int, name: str = "teacher", trainable: bool = False):
        super().__init__()
        BlockTeacher(model, num_blocks, name)  # validates the layout (and would freeze: undone below)
        stages = list(model.blocks)
        self.name = name
        self.model = model
        self.first = len(stages) - num_blocks
        self.channels = [BlockTeacher._out_channels(s) for s in stages[self.first - 1:]]
        self.trainable = trainable
        self.requires_grad_(False)
        if trainable:
            for m in self.body():
                m.requires_grad_(True)
        self.train(trainable)

    def body(self) -> list[nn.Module]:
        m = self.model
        return [m.conv_stem, m.bn1, *m.blocks]

    def train(self, mode: bool = True) -> SplitTeacher:
        # A frozen teacher stays in eval mode (BatchNorm statistics never move).
        return super().train(mode and self.trainable)

    @property
    def num_blocks(self) -> int:
        return len(self.model.blocks) - self.first

    def in_channels(self, block: int) -> int:
        return self.channels[block]

    def out_channels(self, block: int) -> int:
        return self.channels[block + 1]

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        y = m.bn1(m.conv_stem(x))
        for stage in m.blocks[: self.first]:
            y = stage(y)
        feats = [y]
        for stage in m.blocks[self.first:]:
            feats.append(stage(feats[-1]))
        return feats

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps at the block boundaries ``[Y_0, Y_1, ..., Y_n]`` (with gradients when trainable)."""
        if self.trainable:
            return self._features(x)
        with torch.no_grad():
            return self._features(x)

    @torch.no_grad()
    def grids(self, resolution: int) -> list[tuple[int, int]]:
        """Spatial sizes of ``[Y_0, ..., Y_n]`` for a ``resolution`` input."""
        was = self.training
        nn.Module.train(self, False)
        try:
            p = next(self.model.parameters())
            feats = self._features(torch.zeros(1, 3, resolution, resolution, device=p.device, dtype=p.dtype))
        finally:
            nn.Module.train(self, was)
        return [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
