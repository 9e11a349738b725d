"""The in-process fan-out: one Ray Tune trial per block; a training trial fits its block's
:class:`ray.train.torch.TorchTrainer` (the Tune "driver function" pattern), a rating trial rates
its block itself (one inference pass: a worker group's start-up would buy nothing)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from components.fanout.local_ray import connect
from components.fanout.spec import FanOut, FanOutError, finished_blocks, result_uri, train_run_name
from components.fanout.worker import torch_threads, train_worker
from dna import storage


def run_local(spec: FanOut, address: str | None = None, log: Callable[[str], Any] = print) -> dict[int, dict]:
    """The fan-out from this process; writes ``<gen>/supernet/fanout-<task>.json``."""
    spec.validate()
    t0 = time.time()
    done = finished_blocks(spec)
    todo = [k for k in spec.blocks if k not in done]
    results: dict[int, dict] = dict(done)
    if todo:
        log(f"[{spec.name}] {spec.task}: blocks {todo} on Ray"
            + (f" (cached: {sorted(done)})" if done else ""))
        results.update(_tune(spec, todo, address))
    out = {k: results[k] for k in spec.blocks}
    storage.write_json({"name": spec.name, "task": spec.task, "generation": spec.generation,
                        "blocks": {str(k): v for k, v in out.items()}, "cached": sorted(done),
                        "seconds": time.time() - t0}, spec.result_uri)
    return out


def _tune(spec: FanOut, todo: list[int], address: str | None) -> dict[int, dict]:
    from ray import tune

    connect(spec, address)
    fs, path = storage.filesystem(spec.ray_storage)
    if spec.task == "train":
        resources = {"cpu": 0.01}
    else:
        resources = {"cpu": 1, "gpu": 1} if spec.use_gpu else {"cpu": 1}
    tuner = tune.Tuner(
        tune.with_resources(block_trial, resources),
        param_space={"fanout": spec.to_dict(), "block": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent),
        run_config=tune.RunConfig(name=spec.name, storage_path=path, storage_filesystem=fs,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  verbose=0),
    )
    grid = tuner.fit()
    results: dict[int, dict] = {}
    errors: dict[int, str] = {}
    for r in grid:
        k = int(r.config["block"])
        m = r.metrics or {}
        if r.error is not None or "dna_json" not in m:
            errors[k] = repr(r.error) if r.error is not None else m.get("dna_error", "no metrics reported")
        else:
            results[k] = json.loads(r.metrics["dna_json"])
    if errors:
        raise FanOutError(f"{spec.name}: {spec.task} failed for blocks {sorted(errors)} after "
                          f"{spec.max_failures} retries: {errors}")
    return results


def block_trial(config: dict) -> None:
    """Tune trial of one block: fit its TorchTrainer (train) or rate it here (rate)."""
    from ray import tune
    from ray.train import TrainingFailedError

    spec = FanOut.from_dict(config["fanout"])
    k = int(config["block"])
    try:
        metrics = _fit_block(spec, k) if spec.task == "train" else _rate_block(spec, k)
    except TrainingFailedError as exc:
        # Ray Train already spent its max_failures restarts: report, so Tune does not retry the
        # whole trainer again (Tune retries only a lost trial process, e.g. its node went away).
        tune.report({"block": k, "dna_error": f"{type(exc).__name__}: {exc}"})
        return
    tune.report({"block": k, "dna_json": json.dumps(metrics)})


def _rate_block(spec: FanOut, k: int) -> dict:
    from dna.generation import rate_config
    from dna.rate.block import rate

    torch_threads()
    t0 = time.time()
    metrics = rate(rate_config(spec.run, spec.generation, spec.teacher, k, spec.supernets))
    metrics["ray"] = {"started_at": t0, "finished_at": time.time(), "host": socket.gethostname()}
    return metrics


def _fit_block(spec: FanOut, k: int) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    fs, path = storage.filesystem(spec.ray_storage)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"fanout": spec.to_dict(), "block": k},
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers_per_block, use_gpu=spec.use_gpu),
        run_config=ray.train.RunConfig(
            name=train_run_name(spec, k), storage_path=path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures)),
    )
    t0 = time.time()
    result = trainer.fit()
    # Ray Train V2's Result holds the metrics of the last reported epoch; the block's own
    # (history, attempts) come after training ends, so rank 0 stores them for this trial.
    metrics = storage.read_json(result_uri(spec, k))
    pointer = result.checkpoint.path if result.checkpoint is not None else None
    if pointer is not None and storage.is_s3(spec.ray_storage):
        pointer = f"s3://{pointer}"
    metrics["ray"].update(run_started_at=t0, run_finished_at=time.time(), checkpoint=pointer)
    return metrics
