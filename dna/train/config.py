"""A block's training config alone, importable without torch: a run config's pre-flight and the
pipelines' ``--compile`` check every block's config long before a supernet is built
(:mod:`dna.train.block` trains with it and re-exports it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dna.data import DataConfig
from dna.errors import DnaError
from dna.space import get_space
from dna.teacher_config import TeacherConfig


def check_count(name: str, value: Any, optional: bool = True) -> None:
    """A step or epoch count must be an integer >= 1 (None allowed when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DnaError(f"{name}={value!r}: expected an integer >= 1")


@dataclass
class BlockTrainConfig:
    block: int
    out: str                                # folder URI for this block's checkpoints
    space: str = "mbconv-tiny"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 20
    lr: float | None = None                 # default: 0.002 for block 0, 0.005 for the rest
    lr_decay: float = 0.9                   # per epoch
    max_steps_per_epoch: int | None = None
    seed: int = 0
    device: str | None = None

    def validate(self) -> None:
        space = get_space(self.space)
        space.check_block(self.block)
        check_count("epochs", self.epochs, optional=False)
        check_count("max_steps_per_epoch", self.max_steps_per_epoch)
        if self.lr is not None and not self.lr > 0:
            raise DnaError(f"lr={self.lr}: expected a positive learning rate")
        if not 0 < self.lr_decay <= 1:
            raise DnaError(f"lr_decay={self.lr_decay}: expected 0 < lr_decay <= 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.002 if self.block == 0 else 0.005)

    def training_settings(self) -> dict:
        """What a checkpoint must match to be resumed (``epochs`` may grow; device and loader
        workers may change)."""
        return {"space": self.space, "block": self.block, "teacher": asdict(self.teacher),
                "data": asdict(self.data), "lr": self.learning_rate, "lr_decay": self.lr_decay,
                "max_steps_per_epoch": self.max_steps_per_epoch, "seed": self.seed}
