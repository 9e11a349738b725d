"""All of a DNA/DNA++ run in one module: the teacher, one ViT supernet per block, projectors.

``PPModel.forward`` computes the whole training loss of one step, so the module can be wrapped in
``torch.nn.parallel.DistributedDataParallel`` as it is (one teacher forward per batch feeds every
student block).

Projectors (DNA++): per block an MLP ``Linear -> BatchNorm1d -> ReLU -> Linear`` for the teacher
and one for the student, both from the teacher's output channels ``C_out`` of that block to
``proj_dim``. The teacher's map ``Y_k`` ``[B, C_out, H, W]`` is average-pooled over positions; the
student's output tokens ``[B, N, C_out]`` (its readout maps every width to ``C_out``) are averaged
over tokens. The student of block k reads the teacher's ``Y_{k-1}`` *detached*: the student is
rated given the teacher's input, and the teacher learns from the loss through its own outputs
``Y_k`` (Z side), not through the students' inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.errors import DnaError
from dna.space import get_family
from dna.space.vit import PathChoice, ViTSpace
from dna.ssl.loss import PPLossConfig, dnapp_loss
from dna.ssl.teacher import SplitTeacher
from dna.ssl_config import MODES  # noqa: F401 (re-exported)


class Projector(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


class PPModel(nn.Module):
    """Teacher + students (+ projectors for DNA++); ``mode`` is ``dnapp`` or ``dna``."""

    def __init__(self, space: ViTSpace, teacher: SplitTeacher, resolution: int, mode: str = "dnapp",
                 proj_hidden: int = 256, proj_dim: int = 256, loss: PPLossConfig | None = None):
        super().__init__()
        if mode not in MODES:
            raise DnaError(f"mode {mode!r}: expected one of {list(MODES)}")
        if teacher.num_blocks != len(space.blocks):
            raise DnaError(f"teacher split into {teacher.num_blocks} blocks, space has {len(space.blocks)}")
        if mode == "dnapp" and not teacher.trainable:
            raise DnaError("DNA++ trains the teacher jointly: give a trainable SplitTeacher")
        self.space = space
        self.mode = mode
        self.teacher = teacher
        self.loss_cfg = loss or PPLossConfig()
        self.grids = teacher.grids(resolution)
        family = get_family(space)
        self.students = nn.ModuleList(family.make_supernet(space, k, teacher, resolution)
                                      for k in range(len(space.blocks)))
        if mode == "dnapp":
            outs = [teacher.out_channels(k) for k in range(len(space.blocks))]
            self.teacher_proj = nn.ModuleList(Projector(c, proj_hidden, proj_dim) for c in outs)
            self.student_proj = nn.ModuleList(Projector(c, proj_hidden, proj_dim) for c in outs)

    # ----- pieces ----------------------------------------------------------------------------
    def teacher_embed(self, k: int, y: torch.Tensor) -> torch.Tensor:
        """Z_k: the teacher projector of the position-averaged map ``Y_k``."""
        return self.teacher_proj[k](y.mean(dim=(2, 3)))

    def student_embed(self, k: int, tokens: torch.Tensor) -> torch.Tensor:
        """Zhat_k: the student projector of the token-averaged student output."""
        return self.student_proj[k](tokens.mean(dim=1))

    def sample(self, generator: torch.Generator) -> list[PathChoice]:
        return [s.sample(generator) for s in self.students]

    # ----- the loss of one step ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, choices: Sequence[PathChoice]) -> dict[str, torch.Tensor]:
        """DNA++: ``x`` is both views stacked (``[2B, 3, H, W]``, view 1 first); DNA: one batch.
        Returns ``loss`` and its parts."""
        if len(choices) != len(self.students):
            raise DnaError(f"expected one path per block ({len(self.students)}), got {len(choices)}")
        feats = self.teacher.features(x)
        if self.mode == "dna":
            parts = {}
            total = 0.0
            for k, (student, c) in enumerate(zip(self.students, choices, strict=True)):
                out = student.to_map(student(feats[k], c))
                mse = F.mse_loss(out.float(), feats[k + 1].float())
                parts[f"block{k}"] = mse
                total = total + mse
            return {"loss": total, **parts}
        if x.shape[0] % 2:
            raise DnaError("DNA++ needs both views stacked: an even batch")
        b = x.shape[0] // 2
        z1, z2, zh1, zh2 = [], [], [], []
        for k, (student, c) in enumerate(zip(self.students, choices, strict=True)):
            z = self.teacher_embed(k, feats[k + 1]).float()
            zh = self.student_embed(k, student(feats[k].detach(), c)).float()
            z1.append(z[:b])
            z2.append(z[b:])
            zh1.append(zh[:b])
            zh2.append(zh[b:])
        with torch.autocast(device_type=x.device.type, enabled=False):  # covariances in fp32
            return dnapp_loss(z1, z2, zh1, zh2, self.loss_cfg)
