"""What one Ray Train worker of one block runs: ``train_block`` with per-epoch ``ray.train.report``."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

from components.fanout.fault import FAULT_ENV, fault_marker, parse_fault
from components.fanout.spec import FanOut, result_uri, train_run_name
from dna import storage
from dna.errors import DnaError


def torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("DNA_TORCH_THREADS")
                                     or os.environ.get("OMP_NUM_THREADS") or 1)))


def train_worker(config: dict) -> None:
    """One Ray Train worker of one block: ``train_block`` with per-epoch ``ray.train.report``.

    ``train_block`` calls ``progress`` after every step; the first call of a new epoch means the
    previous epoch's checkpoint is stored, so that is where the epoch is reported (and where the
    fault hook fires). The last epoch is reported after ``train_block`` returns.
    """
    import ray.train

    from dna.generation import block_config
    from dna.train.block import checkpoint_uri, train_block

    torch_threads()
    spec = FanOut.from_dict(config["fanout"])
    k = int(config["block"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = block_config(spec.run, spec.generation, k, spec.teacher)
    fault = parse_fault(spec.fault)
    started = time.time()
    attempts_dir = storage.join(cfg.out, "ray")
    if rank == 0:
        storage.write_json({"fanout": spec.name, "started_at": started, "host": socket.gethostname(),
                            "pid": os.getpid()},
                           storage.join(attempts_dir, f"{spec.name}-attempt-{time.time_ns()}.json"))
    seen: dict[str, Any] = {"epoch": None, "first": None}
    trained: list[int] = []

    def epoch_done(epoch: int, final: dict | None = None) -> None:
        """``epoch`` (1-based) is stored: report it, then maybe inject the fault."""
        trained.append(epoch)
        report: dict[str, Any] = {"block": k, "epoch": epoch}
        if rank == 0:
            m = final if final is not None else storage.load_torch(checkpoint_uri(cfg.out))["metrics"]
            report["loss"] = m["loss"]
            if final is not None:
                report["dna_json"] = json.dumps(final)
        ray.train.report(report)
        if rank == 0 and fault == (k, epoch):
            marker = fault_marker(cfg.out, epoch)
            if not storage.exists(marker):
                storage.write_json({"block": k, "epoch": epoch, "trained_epochs": list(trained),
                                    "resumed_from_epoch": seen["first"], "time": time.time(),
                                    "pid": os.getpid()}, marker)
                print(f"[{spec.name}] {FAULT_ENV}: block {k} worker exits after epoch {epoch}",
                      flush=True)
                sys.stderr.flush()
                os._exit(1)

    def progress(epoch: int, step: int, loss: float) -> None:
        if seen["epoch"] is None:
            seen["epoch"] = seen["first"] = epoch
        elif epoch > seen["epoch"]:
            done_epoch = seen["epoch"] + 1
            seen["epoch"] = epoch
            epoch_done(done_epoch)

    metrics = train_block(cfg, progress=progress)
    last = metrics["epochs"]
    n_attempts = sum(1 for name in _listdir(attempts_dir) if name.startswith(f"{spec.name}-attempt-"))
    metrics = dict(metrics)
    metrics["ray"] = {
        "name": train_run_name(spec, k), "started_at": started, "finished_at": time.time(),
        "resumed_from_epoch": seen["first"] if seen["first"] is not None else last,
        "trained_epochs": [*trained, last] if seen["epoch"] is not None else [],
        "attempts": n_attempts, "world_size": world, "host": socket.gethostname(),
    }
    if rank == 0:
        storage.write_json(metrics, result_uri(spec, k))
    if seen["epoch"] is not None:
        epoch_done(last, final=metrics)
    else:                                       # already finished: nothing trained here
        ray.train.report({"block": k, "epoch": last, "loss": metrics["loss"],
                          "dna_json": json.dumps(metrics)})


def _listdir(uri: str) -> list[str]:
    try:
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in storage.listdir(uri)]
    except DnaError:
        return []
