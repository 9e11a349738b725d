"""Where a run's artifacts live under its root URI (local folder or s3://...).

``<root>/gen<g>/`` holds one generation: ``teacher/``, ``supernet/block<k>/``,
``scores/block=<k>/part-0.parquet``, ``search/``, ``retrain/``, ``scaled/``, ``transfer/``,
``reports/``. Every stage derives its paths here, so any stage can run alone on a stored run.
"""

from __future__ import annotations

from dataclasses import dataclass

from dna import storage


@dataclass(frozen=True)
class Generation:
    root: str
    index: int

    @property
    def dir(self) -> str:
        return storage.join(self.root, f"gen{self.index}")

    def path(self, *parts: str) -> str:
        return storage.join(self.dir, *parts)

    @property
    def teacher(self) -> str:
        return self.path("teacher")

    @property
    def supernets(self) -> str:
        return self.path("supernet")

    def block(self, k: int) -> str:
        return block_dir(self.supernets, k)

    @property
    def scores(self) -> str:
        return self.path("scores")

    @property
    def search(self) -> str:
        return self.path("search")

    @property
    def retrain(self) -> str:
        return self.path("retrain")

    @property
    def scaled(self) -> str:
        return self.path("scaled")

    @property
    def transfer(self) -> str:
        return self.path("transfer")

    @property
    def reports(self) -> str:
        return self.path("reports")


def block_dir(supernets: str, block: int) -> str:
    return storage.join(supernets, f"block{block}")


def generation(root: str, index: int) -> Generation:
    return Generation(root, index)
