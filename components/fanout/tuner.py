"""The in-process fan-out: one Ray Tune trial per block; a training trial fits its block's
:class:`ray.train.torch.TorchTrainer` (the Tune "driver function" pattern), a rating trial rates
its block itself (one inference pass: a worker group's start-up would buy nothing)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from components.fanout.events import BlockEvents, cause_line, tune_callback
from components.fanout.local_ray import connect
from components.fanout.quiet import apply_quiet_env, tune_verbosity
from components.fanout.sizing import block_need, max_concurrent, trial_resources
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
        if done:
            log(f"{_prefix(spec)}: blocks {sorted(done)} already stored, not run again")
        results.update(_tune(spec, todo, address, log))
    out = {k: results[k] for k in spec.blocks}
    storage.write_json({"name": spec.name, "task": spec.task, "generation": spec.generation,
                        "blocks": {str(k): v for k, v in out.items()}, "cached": sorted(done),
                        "seconds": time.time() - t0}, spec.result_uri)
    return out


def _tune(spec: FanOut, todo: list[int], address: str | None, log: Callable[[str], Any]) -> dict[int, dict]:
    import ray
    from ray import tune

    connect(spec, address)
    apply_quiet_env()
    fs, path = storage.filesystem(spec.ray_storage)
    cluster = ray.cluster_resources()
    at_once = max_concurrent(spec, cluster, len(todo))
    need = block_need(spec)
    log(f"{_prefix(spec)}: blocks {todo} on Ray, {at_once} at a time (cluster {cluster.get('CPU', 0):g} CPUs, "
        f"{cluster.get('GPU', 0):g} GPUs; a block holds {need.get('CPU', 0):g} CPUs, {need.get('GPU', 0):g} GPUs"
        + ("; --max-concurrent-blocks" if spec.max_concurrent else "") + ")")
    log(f"{_prefix(spec)}: Ray Tune results: {storage.join(spec.ray_storage, spec.name)} "
        f"(tensorboard --logdir there)")
    events = BlockEvents(_prefix(spec), log, len(todo))
    tuner = tune.Tuner(
        tune.with_resources(block_trial, trial_resources(spec)),
        param_space={"fanout": spec.to_dict(), "block": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=at_once, reuse_actors=True),
        run_config=tune.RunConfig(name=spec.name, storage_path=path, storage_filesystem=fs,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  callbacks=[tune_callback(events)], verbose=tune_verbosity()),
    )
    grid = tuner.fit()
    results: dict[int, dict] = {}
    errors: dict[int, str] = {}
    for r in grid:
        k = int(r.config["block"])
        m = r.metrics or {}
        if r.error is not None or "dna_json" not in m:
            cause = cause_line(repr(r.error)) if r.error is not None else m.get("dna_error", "no metrics reported")
            where = m.get("dna_log") or (storage.join(r.path, "error.txt") if r.error is not None and r.path else None)
            errors[k] = cause + (f" (full log: {where})" if where else "")
        else:
            results[k] = json.loads(r.metrics["dna_json"])
    if errors:
        detail = "; ".join(f"block {k}: {v}" for k, v in sorted(errors.items()))
        raise FanOutError(f"{spec.name}: {spec.task} failed for blocks {sorted(errors)} after "
                          f"{spec.max_failures} retries: {detail}")
    return results


def _prefix(spec: FanOut) -> str:
    return f"[gen {spec.generation}] {spec.task}"


def error_log_uri(spec: FanOut, k: int) -> str:
    """Where a failed block's full error text is kept (next to Tune's results, in the run root)."""
    return storage.join(spec.ray_storage, spec.name, f"block{k}-error.txt")


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
        # The full text (worker tracebacks) goes to a file in the run root; the event is one line.
        text = f"{type(exc).__name__}: {exc}"
        log_uri = error_log_uri(spec, k)
        storage.write_text(text, log_uri)
        tune.report({"block": k, "dna_error": _failure_cause(exc), "dna_log": log_uri})
        return
    tune.report({"block": k, "dna_json": json.dumps(metrics)})


def _failure_cause(exc: BaseException) -> str:
    """The root cause of a failed Ray Train run, in one line (the worker's own exception)."""
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return cause_line(f"{type(inner).__name__}: {inner}")


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
    from ray.tune.integration.ray_train import TuneReportCallback

    fs, path = storage.filesystem(spec.ray_storage)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"fanout": spec.to_dict(), "block": k},
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers_per_block, use_gpu=spec.use_gpu),
        run_config=ray.train.RunConfig(
            name=train_run_name(spec, k), storage_path=path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            callbacks=[TuneReportCallback()]),     # each reported epoch becomes a Tune result
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
