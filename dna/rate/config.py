"""The rating stage's config alone, importable without torch: a run config's pre-flight and the
pipelines' ``--compile`` check it before any supernet exists (:mod:`dna.rate.block` rates with it
and re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dna import storage
from dna.data import DataConfig
from dna.errors import DnaError
from dna.space import get_space
from dna.teacher_config import TeacherConfig


@dataclass
class RateConfig:
    supernets: str                          # folder holding block<k>/supernet.pt
    out: str                                # scores folder (hive-partitioned by block)
    block: int | None = None                # None: every block
    space: str = "mbconv-tiny"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    calib_batches: int = 2                  # BatchNorm recalibration batches (from the rating split)
    max_batches: int | None = None          # cap on rating batches (None: the whole split)
    latency_table: str | None = None        # URI of a `dna latency-table` to add latency_ms
    generation: int = 0
    device: str | None = None

    def blocks(self) -> list[int]:
        space = get_space(self.space)
        if self.block is None:
            return list(range(len(space.blocks)))
        space.check_block(self.block)
        return [self.block]

    def validate(self) -> None:
        self.blocks()
        if self.calib_batches < 0:
            raise DnaError(f"calib_batches={self.calib_batches}: expected >= 0")
        if self.max_batches is not None and self.max_batches < 1:
            raise DnaError(f"max_batches={self.max_batches}: expected >= 1")
        if self.latency_table is not None:
            storage.check_readable(self.latency_table)
