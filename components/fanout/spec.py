"""The fan-out spec (what travels to a Ray Job as JSON), its checks, and its run-storage layout."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from components.fanout.fault import parse_fault
from dna import storage
from dna.errors import DnaError
from dna.generation import RunConfig
from dna.layout import generation as generation_layout
from dna.teacher import TeacherConfig

TASKS = ("train", "rate")


class FanOutError(RuntimeError):
    """Some blocks failed after all retries (or the submitted job failed)."""


@dataclass
class FanOut:
    task: str
    run: RunConfig
    generation: int
    teacher: TeacherConfig
    blocks: list[int] = field(default_factory=list)
    workers_per_block: int = 1
    use_gpu: bool = False
    max_concurrent: int | None = None
    max_failures: int = 2
    fault: str | None = None                 # DNA_FAULT_BLOCK of the caller
    name: str = ""                           # unique per fan-out: Ray run/experiment/job name
    supernets: str | None = None             # rate: the supernets to rate (None: the layout's)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"dna-{self.task}-g{self.generation}-{uuid.uuid4().hex[:10]}"

    # layout in the run storage
    @property
    def gen_dir(self) -> str:
        return generation_layout(self.run.root, self.generation).dir

    @property
    def ray_storage(self) -> str:
        return generation_layout(self.run.root, self.generation).ray_storage

    @property
    def result_uri(self) -> str:
        return generation_layout(self.run.root, self.generation).fanout_result(self.task)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["run"] = self.run.to_dict()
        d["teacher"] = dataclasses.asdict(self.teacher)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FanOut:
        d = dict(d)
        d["run"] = RunConfig.from_dict(d["run"])
        d["teacher"] = TeacherConfig(**d["teacher"])
        return cls(**d)

    def validate(self) -> FanOut:
        from dna.generation import block_config
        from dna.space import get_space

        if self.task not in TASKS:
            raise DnaError(f"task={self.task!r}: expected one of {list(TASKS)}")
        self.run.validate()
        if not isinstance(self.generation, int) or self.generation < 0:
            raise DnaError(f"generation={self.generation!r}: expected an integer >= 0")
        space = get_space(self.run.space)
        if not self.blocks:
            raise DnaError(f"blocks={self.blocks!r}: expected at least one block")
        if len(set(self.blocks)) != len(self.blocks):
            raise DnaError(f"blocks={self.blocks!r}: expected each block once")
        for k in self.blocks:
            space.check_block(k)
            if self.task == "train":
                block_config(self.run, self.generation, k, self.teacher).validate()
        if not isinstance(self.workers_per_block, int) or self.workers_per_block < 1:
            raise DnaError(f"workers_per_block={self.workers_per_block!r}: expected an integer >= 1")
        if self.workers_per_block > 1 and self.task == "train" and not data_parallel_supported():
            raise DnaError(
                f"workers_per_block={self.workers_per_block}: dna.train.block does not train "
                "data-parallel (no DATA_PARALLEL support); use workers_per_block=1")
        if self.max_concurrent is not None and (not isinstance(self.max_concurrent, int)
                                                or self.max_concurrent < 1):
            raise DnaError(f"max_concurrent={self.max_concurrent!r}: expected None or an integer >= 1")
        if not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise DnaError(f"max_failures={self.max_failures!r}: expected an integer >= 0")
        parse_fault(self.fault)
        return self


def data_parallel_supported() -> bool:
    import dna.train.block as block_mod

    return bool(getattr(block_mod, "DATA_PARALLEL", False))


def finished_blocks(spec: FanOut) -> dict[int, dict]:
    """Blocks whose work is already stored: complete checkpoints / written score partitions."""
    from dna.generation import block_config
    from dna.train.block import stored_checkpoint

    gen = generation_layout(spec.run.root, spec.generation)
    done: dict[int, dict] = {}
    for k in spec.blocks:
        if spec.task == "train":        # a checkpoint of other settings is refused, not reused
            state = stored_checkpoint(block_config(spec.run, spec.generation, k, spec.teacher))
            if state is not None:
                if state["epoch"] >= spec.run.block_epochs:
                    done[k] = dict(state["metrics"], cached=True)
        else:
            if storage.exists(gen.scores_part(k)):
                done[k] = {"scores": gen.scores, "blocks": [k], "cached": True}
    return done


def train_run_name(spec: FanOut, k: int) -> str:
    return f"{spec.name}-block{k}"


def result_uri(spec: FanOut, k: int) -> str:
    """Where rank 0 of block ``k``'s workers stores the block's metrics for the trial to read."""
    from dna.generation import block_config
    from dna.layout import ray_result

    return ray_result(block_config(spec.run, spec.generation, k, spec.teacher).out, spec.name)
