"""Where a run's artifacts live under its root URI (local folder or s3://...): folders AND files.

``<root>/`` holds ``config.json``, ``summary.json``, ``summary.html`` and the run-level reports;
``<root>/gen<g>/`` one generation: ``teacher/``, ``supernet/block<k>/``,
``scores/block=<k>/part-0.parquet``, ``search/`` (arch.json, result.json, pareto.json),
``retrain/``, ``scaled/`` (arch.json, retrain/), ``random/`` (the random-architecture baseline:
arch.json, retrain/ as the final net is trained, scaled/ (arch.json, retrain/) as the next teacher), ``transfer/<task>/``, ``reports/``. A stage that
trains writes its own folder in one shape (:class:`StageFiles`: model.pt, metrics.json,
curve.png, checkpoint.pt ...). Every module takes its paths from here, so a file name is
written once and any stage can run alone on a stored run.
"""

from __future__ import annotations

from dataclasses import dataclass

from dna import storage

ARCH_FILE = "arch.json"
RESULT_FILE = "result.json"
PARETO_FILE = "pareto.json"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
CURVE_PNG = "curve.png"
CURVE_CSV = "curve.csv"
CHECKPOINT_FILE = "checkpoint.pt"
SAMPLES_FILE = "samples.png"
JOINT_TEACHER_FILE = "teacher.pt"          # DNA++: the CNN teacher trained with the ViT supernet
JOINT_TEACHER_ARCH = "teacher.json"
BLOCK_SUPERNET_FILE = "supernet.pt"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
SUMMARY_HTML = "summary.html"
RAY_DIR = "ray"


def _file(name: str) -> property:
    """A property: the file ``name`` in the object's folder ``dir``."""
    return property(lambda self: storage.join(self.dir, name), doc=f"``{name}`` in the folder")


@dataclass(frozen=True)
class StageFiles:
    """The artifact files of one folder: what a training stage (retrain, teacher, transfer task)
    writes into its ``out``, or the run root's own files."""

    dir: str
    model = _file(MODEL_FILE)
    metrics = _file(METRICS_FILE)
    curve = _file(CURVE_PNG)
    curve_csv = _file(CURVE_CSV)
    checkpoint = _file(CHECKPOINT_FILE)
    samples = _file(SAMPLES_FILE)
    arch = _file(ARCH_FILE)
    config = _file(CONFIG_FILE)
    summary = _file(SUMMARY_FILE)
    summary_html = _file(SUMMARY_HTML)

    def report(self, name: str) -> str:
        return storage.join(self.dir, name)


def stage_files(out: str) -> StageFiles:
    return StageFiles(out)


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
    def teacher_files(self) -> StageFiles:
        """The teacher trained here (generation 0): arch.json of the tiny default, model.pt, ..."""
        return StageFiles(self.teacher)

    @property
    def supernets(self) -> str:
        return self.path("supernet")

    @property
    def joint_teacher(self) -> str:
        return joint_teacher(self.supernets)

    def block(self, k: int) -> str:
        return block_dir(self.supernets, k)

    @property
    def scores(self) -> str:
        return self.path("scores")

    def scores_part(self, k: int) -> str:
        return scores_part(self.scores, k)

    @property
    def search(self) -> str:
        return self.path("search")

    @property
    def search_arch(self) -> str:
        return storage.join(self.search, ARCH_FILE)

    @property
    def search_result(self) -> str:
        return storage.join(self.search, RESULT_FILE)

    @property
    def pareto(self) -> str:
        return storage.join(self.search, PARETO_FILE)

    @property
    def retrain(self) -> str:
        return self.path("retrain")

    @property
    def retrain_files(self) -> StageFiles:
        return StageFiles(self.retrain)

    @property
    def scaled(self) -> str:
        return self.path("scaled")

    @property
    def scaled_arch(self) -> str:
        return storage.join(self.scaled, ARCH_FILE)

    @property
    def scaled_retrain(self) -> str:
        return storage.join(self.scaled, "retrain")

    @property
    def scaled_files(self) -> StageFiles:
        return StageFiles(self.scaled_retrain)

    @property
    def random(self) -> str:
        """The random-architecture baseline (:mod:`dna.random_baseline`)."""
        return self.path("random")

    @property
    def random_arch(self) -> str:
        """The drawn architecture, at the searched net's size."""
        return storage.join(self.random, ARCH_FILE)

    @property
    def random_retrain(self) -> str:
        """The drawn architecture retrained at its own size (as the last generation's searched net)."""
        return storage.join(self.random, "retrain")

    @property
    def random_files(self) -> StageFiles:
        return StageFiles(self.random_retrain)

    @property
    def random_scaled_arch(self) -> str:
        """The drawn architecture compound-scaled as the searched net is (generations before the last)."""
        return storage.join(self.random, "scaled", ARCH_FILE)

    @property
    def random_scaled_retrain(self) -> str:
        return storage.join(self.random, "scaled", "retrain")

    @property
    def random_scaled_files(self) -> StageFiles:
        return StageFiles(self.random_scaled_retrain)

    @property
    def transfer(self) -> str:
        return self.path("transfer")

    def transfer_task(self, task: str) -> str:
        return task_dir(self.transfer, task)

    def transfer_files(self, task: str) -> StageFiles:
        return StageFiles(self.transfer_task(task))

    def stage(self, name: str) -> StageFiles:
        """The folder of a stage named ``name`` (``<root>/gen<g>/<name>/``) and its files."""
        return StageFiles(self.path(name))

    @property
    def ray_storage(self) -> str:
        """Ray Tune's and Ray Train's run state of the generation's block fan-outs."""
        return self.path(RAY_DIR)

    def fanout_result(self, task: str) -> str:
        """The metrics of every block of one fan-out (``train`` or ``rate``)."""
        return storage.join(self.supernets, f"fanout-{task}.json")

    @property
    def reports(self) -> str:
        return self.path("reports")

    def report(self, name: str) -> str:
        return storage.join(self.reports, name)


def run_files(root: str) -> StageFiles:
    """The files of the run root itself: config.json, summary.json, summary.html, reports."""
    return StageFiles(root)


def block_dir(supernets: str, block: int) -> str:
    return storage.join(supernets, f"block{block}")


def block_supernet(block_out: str) -> str:
    return storage.join(block_out, BLOCK_SUPERNET_FILE)


def block_ray_dir(block_out: str) -> str:
    """A block's Ray bookkeeping: one record per worker attempt, the result rank 0 stores."""
    return storage.join(block_out, RAY_DIR)


def ray_attempt(block_out: str, fanout: str, stamp: int) -> str:
    return storage.join(block_ray_dir(block_out), f"{fanout}-attempt-{stamp}.json")


def ray_result(block_out: str, fanout: str) -> str:
    return storage.join(block_ray_dir(block_out), f"{fanout}-result.json")


def fault_marker(block_out: str, epoch: int) -> str:
    """Written by an injected fault (``DNA_FAULT_BLOCK``) before its worker dies."""
    return storage.join(block_out, f"fault-epoch{epoch}.json")


def task_dir(transfer: str, task: str) -> str:
    """The folder of one transfer task (seg, det, cls) under a transfer folder."""
    return storage.join(transfer, task)


def joint_teacher(supernets: str) -> str:
    """DNA++: the weights of the CNN teacher trained jointly with the ViT supernet."""
    return storage.join(supernets, JOINT_TEACHER_FILE)


def joint_teacher_arch(supernets: str) -> str:
    """DNA++: the architecture JSON of the tiny default teacher trained there."""
    return storage.join(supernets, JOINT_TEACHER_ARCH)


def scores_part(scores: str, block: int) -> str:
    """The Parquet partition holding block ``block``'s rows of a scores table."""
    return storage.join(scores, f"block={block}", storage.PART_FILE)


def generation(root: str, index: int) -> Generation:
    return Generation(root, index)
