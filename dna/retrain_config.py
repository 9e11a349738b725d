"""The retraining config alone, importable without torch or timm: a run config's pre-flight and
the pipelines' ``--compile`` check the teacher's and the final net's retraining before any network
is built (:mod:`dna.retrain` trains with it and re-exports it).

The optimizer name is checked against :data:`dna.timm_names.OPTIMIZERS` (timm's registry as
data), not by importing timm.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dna.data import DataConfig
from dna.device_check import check_device
from dna.errors import DnaError, check_keys, field_names
from dna.retrain_recipe import FAST_RECIPE, PAPER_BATCH, PAPER_LR, SCHEDULES
from dna.teacher_config import TeacherConfig
from dna.timm_names import OPTIMIZERS as TIMM_OPTIMIZERS


@dataclass
class RetrainConfig:
    """How to retrain; defaults are the paper's recipe (see the module docstring)."""

    model: str = "efficientnet_b0"  # timm model name or architecture JSON URI
    out: str = ""  # output folder URI
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 10
    batch_size: int | None = None  # None: data.batch_size
    opt: str = "rmsproptf"
    lr: float | None = None  # None: 0.256 * batch / 4096
    momentum: float = 0.9
    weight_decay: float = 1e-5
    opt_eps: float | None = None  # None: 1e-3 for RMSprop (as TF EfficientNet), else the optimizer's
    sched: str = "step"
    decay_epochs: float = 2.4
    decay_rate: float = 0.97
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    auto_augment: str | None = None  # e.g. "rand-m9-mstd0.5"; None: data.auto_augment
    ema: bool = False
    ema_decay: float = 0.9998
    teacher: TeacherConfig | None = None  # knowledge distillation when set
    kd_alpha: float = 0.5  # loss = (1 - a) * CE + a * T^2 * KL(teacher || student)
    kd_temperature: float = 1.0
    clip_grad: float | None = None
    steps_per_epoch: int | None = None  # cap on updates per epoch (smoke tests)
    eval_epochs: int | None = None  # evaluate only in the last N epochs (None: every epoch)
    zero_head: bool = False  # start the classifier at zero (dna.model.efficientnet.zero_classifier)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA

    def validate(self) -> RetrainConfig:
        """Raise :class:`DnaError` naming the first bad field (cheap checks only); returns self."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise DnaError(f"model {self.model!r} must be a timm model name or an architecture .json URI")
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError("out must name an output folder URI (local path or s3://...)")
        if not isinstance(self.data, DataConfig):
            raise DnaError(f"data must be a DataConfig, got {type(self.data).__name__}")
        _int_at_least("epochs", self.epochs, 1)
        if self.batch_size is not None:
            _int_at_least("batch_size", self.batch_size, 1)
        if self.steps_per_epoch is not None:
            _int_at_least("steps_per_epoch", self.steps_per_epoch, 1)
        if self.eval_epochs is not None:
            _int_at_least("eval_epochs", self.eval_epochs, 1)
        if not isinstance(self.zero_head, bool):
            raise DnaError(f"zero_head {self.zero_head!r} must be true or false")
        _int_at_least("seed", self.seed, 0)
        if self.lr is not None:
            _number_in("lr", self.lr, 0, None, low_open=True)
        if not isinstance(self.opt, str) or self.opt.lower() not in TIMM_OPTIMIZERS:
            raise DnaError(f"opt {self.opt!r} is not a timm optimizer (e.g. rmsproptf, adamw, sgd, lamb)")
        if self.sched not in SCHEDULES:
            raise DnaError(f"sched {self.sched!r} must be one of {', '.join(SCHEDULES)}")
        _number_in("momentum", self.momentum, 0, 1)
        _number_in("weight_decay", self.weight_decay, 0, None)
        if self.opt_eps is not None:
            _number_in("opt_eps", self.opt_eps, 0, None, low_open=True)
        _number_in("decay_epochs", self.decay_epochs, 0, None, low_open=True)
        _number_in("decay_rate", self.decay_rate, 0, None, low_open=True)
        _number_in("warmup_epochs", self.warmup_epochs, 0, None)
        _number_in("warmup_lr", self.warmup_lr, 0, None)
        _number_in("min_lr", self.min_lr, 0, None)
        _number_in("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        _number_in("drop_rate", self.drop_rate, 0, 1, high_open=True)
        _number_in("drop_path_rate", self.drop_path_rate, 0, 1, high_open=True)
        _number_in("ema_decay", self.ema_decay, 0, 1, low_open=True, high_open=True)
        _number_in("kd_alpha", self.kd_alpha, 0, 1)
        _number_in("kd_temperature", self.kd_temperature, 0, None, low_open=True)
        if self.clip_grad is not None:
            _number_in("clip_grad", self.clip_grad, 0, None, low_open=True)
        if self.teacher is not None and not isinstance(self.teacher, TeacherConfig):
            raise DnaError(f"teacher must be a TeacherConfig or None, got {type(self.teacher).__name__}")
        check_device(self.device)
        return self

    def data_config(self) -> DataConfig:
        """The data config with this run's batch size and augmentation applied."""
        return dataclasses.replace(
            self.data,
            batch_size=self.batch_size or self.data.batch_size,
            auto_augment=self.auto_augment or self.data.auto_augment,
        )

    def effective_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return PAPER_LR * (self.batch_size or self.data.batch_size) / PAPER_BATCH

    @classmethod
    def fast(cls, **overrides: Any) -> RetrainConfig:
        """A config with :data:`FAST_RECIPE` (AdamW 2e-2, cosine, half-epoch warm-up, no
        regularisation) instead of the paper's recipe; ``overrides`` win."""
        return cls(**{**FAST_RECIPE, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetrainConfig:
        check_keys(d, field_names(cls), "retrain config keys")
        d = dict(d)
        if isinstance(d.get("data"), dict):
            d["data"] = DataConfig.from_dict(d["data"])
        if isinstance(d.get("teacher"), dict):
            d["teacher"] = TeacherConfig(**d["teacher"])
        return cls(**d)


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DnaError(f"{name} {value!r} must be an integer >= {low}")


def _number_in(name: str, value: Any, low: float | None, high: float | None,
               low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise DnaError(f"{name} {value!r} must be a number {' and '.join(s for s in (lo, hi) if s)}")
