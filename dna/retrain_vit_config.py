"""The ViT retraining config alone, importable without torch: a DNA++ run's pre-flight and
``pipelines/dna_pp.py --compile`` check it before any network is built (:mod:`dna.retrain_vit`
trains with it and re-exports it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dna.data import DataConfig
from dna.device_check import check_device
from dna.errors import DnaError

DEIT_LR = 1e-3
DEIT_BATCH = 1024


@dataclass
class RetrainViTConfig:
    arch: Any = ""                  # ViT architecture JSON URI or dict (dna.model.vit.vit_arch_json)
    out: str = ""                   # output folder URI
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 300
    batch_size: int | None = None   # None: data.batch_size
    lr: float | None = None         # None: 1e-3 * batch / 1024
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup: float = 0.8              # Mixup alpha (0: off)
    cutmix: float = 1.0             # CutMix alpha (0: off)
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25            # random erasing probability
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    clip_grad: float | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True                # bf16 autocast on CUDA

    def validate(self) -> RetrainViTConfig:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError("out must name an output folder URI (local path or s3://...)")
        if not isinstance(self.data, DataConfig):
            raise DnaError(f"data must be a DataConfig, got {type(self.data).__name__}")
        for name, low in (("epochs", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise DnaError(f"{name} {v!r} must be an integer >= {low}")
        for name in ("batch_size", "steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise DnaError(f"{name} {v!r} must be an integer >= 1")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise DnaError(f"lr {self.lr!r} must be a number > 0")
        for name in ("weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "mixup", "cutmix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise DnaError(f"{name} {v!r} must be a number >= 0")
        for name in ("label_smoothing", "mixup_prob", "mixup_switch_prob", "reprob", "drop_rate", "drop_path_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise DnaError(f"{name} {v!r} must be a number in [0, 1]")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise DnaError(f"clip_grad {self.clip_grad!r} must be > 0")
        check_device(self.device)
        return self

    def data_config(self) -> DataConfig:
        return dataclasses.replace(self.data, batch_size=self.batch_size or self.data.batch_size,
                                   auto_augment=self.auto_augment or self.data.auto_augment)

    def effective_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return DEIT_LR * (self.batch_size or self.data.batch_size) / DEIT_BATCH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
