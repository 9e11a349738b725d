"""The DNA++ training config alone, importable without torch or timm: a DNA++ run's pre-flight
and ``pipelines/dna_pp.py --compile`` check it before any network is built. :mod:`dna.ssl` trains
with it and re-exports every name (``PPTrainConfig`` from ``dna.ssl.train``, ``PPLossConfig`` from
``dna.ssl.loss``, ``ViewAugment`` from ``dna.ssl.augment``, ``MODES`` from ``dna.ssl.model``, the
default teachers from ``dna.ssl.teacher``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dna import storage
from dna.data import DataConfig
from dna.errors import DnaError
from dna.space.vit import ViTSpace, vit_space
from dna.teacher_config import TeacherConfig
from dna.train.config import check_count

MODES = ("dnapp", "dna")

TINY_TEACHER = "efficientnet-tiny"
FULL_TEACHER = "efficientnet_b1"


def default_teacher(space) -> str:
    """EfficientNet-B1 (the paper's DNA++ teacher) for full-size spaces, the tiny CNN below 128 px."""
    return FULL_TEACHER if space.resolution >= 128 else TINY_TEACHER


@dataclass
class PPLossConfig:
    lambda_1: float | None = None   # None: 25 / C (VICReg's invariance weight)
    lambda_2: float | None = None   # None: C (VICReg's covariance weight 1)
    lambda_3: float = 12.5          # VICReg's variance weight 25, halved (Z and Zhat are summed)
    gamma: float = 1.0
    eps: float = 1e-4

    def validate(self) -> PPLossConfig:
        for name in ("lambda_1", "lambda_2", "lambda_3", "gamma", "eps"):
            v = getattr(self, name)
            if v is None and name in ("lambda_1", "lambda_2"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise DnaError(f"{name}={v!r}: expected a number >= 0")
        if not self.eps > 0:
            raise DnaError(f"eps={self.eps!r}: expected a number > 0")
        return self

    def lambdas(self, channels: int) -> tuple[float, float, float]:
        l1 = 25.0 / channels if self.lambda_1 is None else float(self.lambda_1)
        l2 = float(channels) if self.lambda_2 is None else float(self.lambda_2)
        return l1, l2, float(self.lambda_3)


@dataclass
class ViewAugment:
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.4
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2

    def validate(self) -> ViewAugment:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise DnaError(f"scale={self.scale}: expected 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise DnaError(f"ratio={self.ratio}: expected 0 < low <= high")
        for name in ("flip", "jitter_prob", "grayscale_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise DnaError(f"{name}={getattr(self, name)}: expected a probability in [0, 1]")
        if not 0 <= self.jitter < 1:
            raise DnaError(f"jitter={self.jitter}: expected 0 <= jitter < 1")
        return self


PP_LR_PER_256 = 0.0025
DNA_LR_PER_256 = 5e-4


@dataclass
class PPTrainConfig:
    out: str                                   # folder URI for checkpoint.pt / teacher.pt
    space: Any = "vit-tiny"                    # ViT space name, .json URI, dict or ViTSpace
    mode: str = "dnapp"                        # "dnapp" (joint, self-supervised) or "dna" (frozen teacher)
    teacher: TeacherConfig | None = None       # None: efficientnet_b1 (>= 128 px spaces) or efficientnet-tiny
    data: DataConfig = field(default_factory=lambda: DataConfig(augment=False))
    epochs: int = 20
    batch_size: int | None = None              # per process; None: data.batch_size
    lr: float | None = None                    # None: 0.0025 (dnapp) / 5e-4 (dna) per 256 images
    weight_decay: float | None = None          # None: 1e-6 (dnapp, LARS) / 0.05 (dna, AdamW)
    momentum: float = 0.9                      # LARS momentum
    trust_coeff: float = 0.001                 # LARS trust coefficient (timm's default)
    warmup_epochs: float = 0.0                 # dnapp: linear warm-up before the cosine
    lr_decay: float = 0.9                      # dna: LR factor ...
    lr_decay_epochs: int = 3                   # ... every this many epochs
    proj_dim: int = 256                        # DNA++ projector output (C of Eq. 10/11)
    proj_hidden: int = 256
    loss: PPLossConfig = field(default_factory=PPLossConfig)
    views: ViewAugment = field(default_factory=ViewAugment)
    max_steps_per_epoch: int | None = None
    seed: int = 0
    device: str | None = None

    def vit_space(self) -> ViTSpace:
        return vit_space(self.space)

    def data_config(self) -> DataConfig:
        """The data config with this run's batch size."""
        if self.batch_size is None:
            return self.data
        return dataclasses.replace(self.data, batch_size=self.batch_size)

    def teacher_config(self) -> TeacherConfig:
        if self.teacher is not None:
            return self.teacher
        return TeacherConfig(model=default_teacher(self.vit_space()))

    def validate(self) -> PPTrainConfig:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError("out must name an output folder URI (local path or s3://...)")
        self.vit_space()
        if self.mode not in MODES:
            raise DnaError(f"mode {self.mode!r}: expected one of {list(MODES)}")
        if not isinstance(self.data, DataConfig):
            raise DnaError(f"data must be a DataConfig, got {type(self.data).__name__}")
        self.data.validate()
        for name, low in (("epochs", 1), ("proj_dim", 2), ("proj_hidden", 1), ("lr_decay_epochs", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise DnaError(f"{name}={v!r}: expected an integer >= {low}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise DnaError(f"batch_size={self.batch_size!r}: expected an integer >= 1")
        check_count("max_steps_per_epoch", self.max_steps_per_epoch)
        if self.lr is not None and not self.lr > 0:
            raise DnaError(f"lr={self.lr}: expected a positive learning rate")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise DnaError(f"weight_decay={self.weight_decay}: expected >= 0")
        if not 0 <= self.momentum < 1:
            raise DnaError(f"momentum={self.momentum}: expected 0 <= momentum < 1")
        if not self.trust_coeff > 0:
            raise DnaError(f"trust_coeff={self.trust_coeff}: expected > 0")
        if not self.warmup_epochs >= 0:
            raise DnaError(f"warmup_epochs={self.warmup_epochs}: expected >= 0")
        if not 0 < self.lr_decay <= 1:
            raise DnaError(f"lr_decay={self.lr_decay}: expected 0 < lr_decay <= 1")
        self.loss.validate()
        self.views.validate()
        if self.mode == "dnapp" and self.data_config().batch_size < 2:
            raise DnaError("DNA++ needs batches of at least 2 images (covariance and variance terms)")
        t = self.teacher_config()
        if self.mode == "dna" and not (t.checkpoint or t.pretrained):
            raise DnaError(f"mode 'dna' distils from a frozen teacher: teacher {t.model!r} needs a checkpoint "
                           "or pretrained=True (DNA++ trains its teacher and needs neither)")
        if t.checkpoint:
            storage.check_readable(t.checkpoint)
        return self

    def learning_rate(self, world_size: int = 1) -> float:
        if self.lr is not None:
            return float(self.lr)
        per_256 = PP_LR_PER_256 if self.mode == "dnapp" else DNA_LR_PER_256
        return per_256 * self.data_config().batch_size * world_size / 256

    def wd(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return 1e-6 if self.mode == "dnapp" else 0.05

    def to_dict(self) -> dict:
        d = dataclasses.asdict(dataclasses.replace(self, space=None))
        d["space"] = self.vit_space().to_json()
        d["teacher"] = dataclasses.asdict(self.teacher_config())
        return d
