"""What one Ray Train worker of one block runs: ``train_block`` with per-epoch ``ray.train.report``."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time

from components.fanout.fault import inject_fault, parse_fault
from components.fanout.spec import FanOut, result_uri, train_run_name
from dna import storage
from dna.errors import DnaError
from dna.layout import block_ray_dir, ray_attempt

POINTER_FILE = "dna_checkpoint.json"   # in a reported Ray checkpoint: where the block's checkpoint is


def torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("DNA_TORCH_THREADS")
                                     or os.environ.get("OMP_NUM_THREADS") or 1)))


def train_worker(config: dict) -> None:
    """One Ray Train worker of one block: ``train_block``, whose ``on_epoch_end`` reports every
    stored epoch (:func:`report_epoch`; every rank calls it: it is a barrier) and then lets the
    fault hook fire. Rank 0 stores the block's metrics, with this attempt's, for the trial."""
    import ray.train

    from dna.generation import block_config
    from dna.progress import chain, reporter
    from dna.train.block import train_block

    torch_threads()
    spec = FanOut.from_dict(config["fanout"])
    k = int(config["block"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = block_config(spec.run, spec.generation, k, spec.teacher)
    fault = parse_fault(spec.fault)
    started = time.time()
    attempts_dir = block_ray_dir(cfg.out)
    if rank == 0:
        storage.write_json({"fanout": spec.name, "started_at": started, "host": socket.gethostname(),
                            "pid": os.getpid()},
                           ray_attempt(cfg.out, spec.name, time.time_ns()))
    trained: list[int] = []

    def on_epoch_end(m: dict) -> None:
        trained.append(m["epoch"])
        report_epoch(m, rank)
        if rank == 0:
            inject_fault(fault, spec.name, cfg.out, m, trained)

    metrics = dict(train_block(cfg, on_epoch_end=chain(reporter(f"[gen {spec.generation}] supernet"), on_epoch_end)))
    last = metrics["epochs"]
    n_attempts = sum(1 for name in _listdir(attempts_dir) if name.startswith(f"{spec.name}-attempt-"))
    metrics["ray"] = {
        "name": train_run_name(spec, k), "started_at": started, "finished_at": time.time(),
        "resumed_from_epoch": trained[0] - 1 if trained else last, "trained_epochs": trained,
        "attempts": n_attempts, "world_size": world, "host": socket.gethostname(),
    }
    if rank == 0:
        storage.write_json(metrics, result_uri(spec, k))


def report_epoch(metrics: dict, rank: int) -> None:
    """``ray.train.report`` of one stored epoch of ``train_block`` (its ``on_epoch_end`` metrics).

    Rank 0 attaches a Ray checkpoint that only points at the block's own checkpoint: a directory
    with ``{"uri", "epoch"}`` in :data:`POINTER_FILE`, which Ray copies into its run folder (a
    ``NO_UPLOAD`` checkpoint must already lie in that folder, and copying ``supernet.pt`` there
    would store the model twice). A restarted worker resumes from the block's checkpoint, as
    ``train_block`` does on any rerun; Ray's own latest checkpoint is not needed for that."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="dna-ckpt-pointer-") as tmp:
        with open(os.path.join(tmp, POINTER_FILE), "w") as f:
            json.dump({"uri": metrics["checkpoint"], "epoch": metrics["epoch"]}, f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _listdir(uri: str) -> list[str]:
    try:
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in storage.listdir(uri)]
    except DnaError:
        return []
