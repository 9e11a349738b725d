"""The fan-out's entry: pick where it runs (a Ray Job for a dashboard address, else in this process)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from components.fanout.fault import FAULT_ENV
from components.fanout.jobs import IN_JOB_ENV, submit_job
from components.fanout.local_ray import is_dashboard_address
from components.fanout.spec import FanOut, finished_blocks
from components.fanout.tuner import run_local
from dna.generation import RunConfig
from dna.teacher import TeacherConfig


def fan_out_blocks(task: str, run_cfg: RunConfig, generation: int, teacher: TeacherConfig,
                   blocks: list[int] | None = None, workers_per_block: int = 1, use_gpu: bool = False,
                   max_concurrent: int | None = None, max_failures: int = 2,
                   ray_address: str | None = None, supernets: str | None = None) -> dict[int, dict]:
    """Train (``task="train"``) or rate (``task="rate"``) ``blocks`` (default: all) of generation
    ``generation`` in parallel on Ray; returns ``{block: metrics}``.

    ``ray_address`` (else ``RAY_ADDRESS``): None starts/reuses a local Ray; ``http(s)://...``
    submits a Ray Job to that dashboard; anything else is handed to ``ray.init(address=...)``.
    Train metrics are :func:`dna.train.block.train_block`'s plus ``"ray"``: start/end times,
    the epochs this attempt trained, the epoch it resumed from, the number of attempts and the
    Ray checkpoint of the last reported epoch (a folder whose JSON points at ``supernet.pt``).
    """
    from dna.space import get_space

    if blocks is None:
        blocks = list(range(len(get_space(run_cfg.space).blocks)))
    spec = FanOut(task=task, run=run_cfg, generation=generation, teacher=teacher,
                  blocks=list(blocks), workers_per_block=workers_per_block, use_gpu=use_gpu,
                  max_concurrent=max_concurrent, max_failures=max_failures,
                  fault=os.environ.get(FAULT_ENV) or None, supernets=supernets)
    return run(spec, ray_address)


def run(spec: FanOut, ray_address: str | None = None, log: Callable[[str], Any] = print) -> dict[int, dict]:
    """Dispatch a fan-out: Ray Job submission for an http(s) address, else in this process."""
    spec.validate()
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if address and is_dashboard_address(address) and not os.environ.get(IN_JOB_ENV):
        done = finished_blocks(spec)
        if len(done) == len(spec.blocks):       # nothing to do: no job needed
            return {k: done[k] for k in spec.blocks}
        return submit_job(spec, address, log=log)
    return run_local(spec, None if (address and is_dashboard_address(address)) else address, log=log)
