"""Fan the blocks of one generation out on Ray: supernet training and rating, one job per block.

SPEC section 4: the blocks are independent given the teacher, so each block is its own job.

Training (``task="train"``)
    One Ray Tune trial per block (the Tune "driver function" pattern): the trial is a tiny
    function trainable (``{"cpu": 0.01}``) that builds and fits a
    :class:`ray.train.torch.TorchTrainer` for its block, with
    ``ScalingConfig(num_workers=workers_per_block, use_gpu=use_gpu)``. Every worker runs
    :func:`dna.train.block.train_block` on :func:`dna.generation.block_config` and rank 0 reports
    each finished epoch with ``ray.train.report`` (all ranks call it: it is a barrier).
    Trials run in parallel (``max_concurrent`` caps them), so the blocks train concurrently.

Rating (``task="rate"``)
    Plain Tune trials, one per block, each holding one CPU (or one GPU): rating is one inference
    pass over the rating split, so a TorchTrainer's worker group (and its ~20 s start-up) buys
    nothing. A trial runs :func:`dna.rate.block.rate` on :func:`dna.generation.rate_config`,
    which writes the block's partition ``scores/block=K/part-0.parquet`` atomically; a failed
    trial is retried by Tune (``max_failures``) and simply rates its block again.

Checkpoints and resume
    Ray Train and Tune keep their run state under ``<run root>/gen<g>/ray/`` (a local folder or
    ``s3://``: the pyarrow filesystem from :func:`dna.storage.filesystem` is passed as
    ``storage_filesystem``). Model state is *not* reported as Ray checkpoints: ``train_block``
    already writes ``<gen>/supernet/block<k>/supernet.pt`` in the run storage after every epoch
    and resumes from it, and that is what a restarted worker group (``FailureConfig(max_failures)``)
    picks up, so a failed block restarts from its last finished epoch without touching the other
    blocks. Reporting the same state again as a Ray checkpoint would only copy it twice. Blocks
    whose checkpoint is complete (or whose scores partition exists) are read back without starting
    Ray at all. Every run and experiment name is unique (``dna-<task>-g<g>-<uuid>``), because
    reusing a name with the same storage path would resume an old Ray run.

Where it runs
    :func:`fan_out_blocks` with no address (argument or ``RAY_ADDRESS``) starts a local Ray (or
    reuses the session of this process); with a Ray address (``auto``, ``host:6379``,
    ``ray://...``) it connects and fans out from this process; with an ``http(s)://`` address
    (the KubeRay head's dashboard, ``http://dna-ray-head-svc:8265``) it submits the same fan-out
    as a Ray Job (``python -m components.ray_blocks --config '<json>'``), waits for it, and reads
    the per-block metrics back from ``<gen>/supernet/fanout-<task>.json`` in the run storage.
    Only non-secret storage settings travel in the job's ``runtime_env``; credentials are the Ray
    pods' own (``k8s/README.md``). A live job of the same fan-out (same root, generation, task and
    blocks: a retried pipeline task) is attached to instead of submitted twice. A local Ray gets at
    least ``workers_per_block + 1`` logical CPUs, and a block that cannot fit a local session is
    refused up front (it would wait for resources forever; a cluster's autoscaler may add them).

Fault injection (tests and chaos drills)
    ``DNA_FAULT_BLOCK=<k>:<epoch>`` (read where the fan-out starts and forwarded to the job) makes
    block ``k``'s rank-0 worker die with ``os._exit(1)`` right after the checkpoint of epoch
    ``<epoch>`` (1-based) is stored, on its first attempt only: before dying it writes the marker
    ``<gen>/supernet/block<k>/fault-epoch<epoch>.json`` (the epochs that attempt trained), and an
    attempt that finds the marker carries on. Ray Train then restarts the block's worker group,
    which resumes from the stored checkpoint. Training only; rating ignores it.

Data parallelism
    ``workers_per_block > 1`` needs ``dna.train.block`` to train data-parallel when a
    ``torch.distributed`` process group is up (it declares ``DATA_PARALLEL = True``); without that
    the workers would train the same block independently and race on one checkpoint, so the
    fan-out refuses before starting.

The ``dna`` library imports neither Ray nor KFP; everything Ray lives here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from dna import storage  # noqa: E402
from dna.errors import DnaError  # noqa: E402
from dna.generation import RunConfig  # noqa: E402
from dna.layout import generation as generation_layout  # noqa: E402
from dna.teacher import TeacherConfig  # noqa: E402

TASKS = ("train", "rate")
FAULT_ENV = "DNA_FAULT_BLOCK"
IN_JOB_ENV = "DNA_RAY_IN_JOB"          # set in the submitted job: never submit again from there
REPO_ROOT = str(Path(__file__).resolve().parents[1])

# Quiet, fast settings for a Ray started here (not forced on a cluster this process connects to).
LOCAL_RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
}
# Storage settings forwarded to a submitted job (never credentials: the Ray pods have their own).
STORAGE_ENV = ("DNA_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
               "AWS_DEFAULT_REGION")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
JOB_POLL_S = 5.0                        # seconds between job status polls


class FanOutError(RuntimeError):
    """Some blocks failed after all retries (or the submitted job failed)."""


# ----- the fan-out spec (what travels to a Ray Job as JSON) -------------------------------------
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
        return storage.join(self.gen_dir, "ray")

    @property
    def result_uri(self) -> str:
        return storage.join(generation_layout(self.run.root, self.generation).supernets,
                            f"fanout-{self.task}.json")

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


def parse_fault(spec: str | None) -> tuple[int, int] | None:
    """``"k:epoch"`` -> (block, 1-based epoch); None or empty -> None."""
    if not spec:
        return None
    try:
        k, e = (int(x) for x in spec.split(":"))
    except ValueError:
        raise DnaError(f"{FAULT_ENV}={spec!r}: expected '<block>:<epoch>', e.g. '1:1'") from None
    if k < 0 or e < 1:
        raise DnaError(f"{FAULT_ENV}={spec!r}: expected block >= 0 and epoch >= 1")
    return k, e


def fault_marker(block_out: str, epoch: int) -> str:
    return storage.join(block_out, f"fault-epoch{epoch}.json")


# ----- public API -------------------------------------------------------------------------------
def fan_out_blocks(task: str, run_cfg: RunConfig, generation: int, teacher: TeacherConfig,
                   blocks: list[int] | None = None, workers_per_block: int = 1, use_gpu: bool = False,
                   max_concurrent: int | None = None, max_failures: int = 2,
                   ray_address: str | None = None, supernets: str | None = None) -> dict[int, dict]:
    """Train (``task="train"``) or rate (``task="rate"``) ``blocks`` (default: all) of generation
    ``generation`` in parallel on Ray; returns ``{block: metrics}``.

    ``ray_address`` (else ``RAY_ADDRESS``): None starts/reuses a local Ray; ``http(s)://...``
    submits a Ray Job to that dashboard; anything else is handed to ``ray.init(address=...)``.
    Train metrics are :func:`dna.train.block.train_block`'s plus ``"ray"``: start/end times,
    the epochs this attempt trained, the epoch it resumed from, the number of attempts.
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


def is_dashboard_address(address: str) -> bool:
    return address.startswith(("http://", "https://"))


# ----- in-process fan-out (local Ray, or connected to a cluster) --------------------------------
def init_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Start a quiet local Ray whose workers can import ``dna`` and ``components``.

    No-op when this process already has a Ray session (it is reused).
    """
    import ray

    if ray.is_initialized():
        return
    for k, v in LOCAL_RAY_ENV.items():
        os.environ.setdefault(k, v)
    path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = kwargs.pop("runtime_env", {}) or {}
    runtime_env.setdefault("env_vars", {}).setdefault("PYTHONPATH", path)
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", True)
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, runtime_env=runtime_env, **kwargs)


def _connect(spec: FanOut, address: str | None) -> None:
    import ray

    in_job = bool(os.environ.get("RAY_ADDRESS")) and not is_dashboard_address(os.environ["RAY_ADDRESS"])
    if not ray.is_initialized():
        if address is None and in_job:
            ray.init()                          # inside a Ray Job: RAY_ADDRESS is the GCS address
        elif address is None:
            # one block's worker group plus its driver trial must fit (logical CPUs may exceed cores)
            init_local_ray(num_cpus=max(os.cpu_count() or 1, spec.workers_per_block + 1))
        else:
            ray.init(address=address)
    if address is None and not in_job:
        _check_fits(spec)


def _check_fits(spec: FanOut) -> None:
    """On a local Ray (no autoscaler) a block that cannot fit would wait forever: refuse it."""
    import ray

    have = ray.cluster_resources()
    if spec.task == "train":                    # the worker group + the 0.01-CPU driver trial
        cpu_need, gpu_need = spec.workers_per_block + 0.01, spec.workers_per_block * spec.use_gpu
    else:                                       # one rating trial
        cpu_need, gpu_need = 1, int(spec.use_gpu)
    if have.get("CPU", 0) < cpu_need or have.get("GPU", 0) < gpu_need:
        raise DnaError(
            f"this Ray session has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; one "
            f"{spec.task} block needs {cpu_need:g} CPUs and {gpu_need} GPUs "
            f"(workers_per_block={spec.workers_per_block}, use_gpu={spec.use_gpu})")


def finished_blocks(spec: FanOut) -> dict[int, dict]:
    """Blocks whose work is already stored: complete checkpoints / written score partitions."""
    from dna.generation import block_config
    from dna.train.block import checkpoint_uri

    gen = generation_layout(spec.run.root, spec.generation)
    done: dict[int, dict] = {}
    for k in spec.blocks:
        if spec.task == "train":
            uri = checkpoint_uri(block_config(spec.run, spec.generation, k, spec.teacher).out)
            if storage.exists(uri):
                state = storage.load_torch(uri)
                if state["epoch"] >= spec.run.block_epochs:
                    done[k] = dict(state["metrics"], cached=True)
        else:
            if storage.exists(gen.scores_part(k)):
                done[k] = {"scores": gen.scores, "blocks": [k], "cached": True}
    return done


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

    _connect(spec, address)
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


# ----- what runs on Ray -------------------------------------------------------------------------
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("DNA_TORCH_THREADS")
                                     or os.environ.get("OMP_NUM_THREADS") or 1)))


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

    _torch_threads()
    t0 = time.time()
    metrics = rate(rate_config(spec.run, spec.generation, spec.teacher, k, spec.supernets))
    metrics["ray"] = {"started_at": t0, "finished_at": time.time(), "host": socket.gethostname()}
    return metrics


def train_run_name(spec: FanOut, k: int) -> str:
    return f"{spec.name}-block{k}"


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
    trainer.fit()
    # Ray Train V2 keeps only the metrics attached to checkpoints in its Result, and no
    # checkpoint is reported (see the module docstring): rank 0 stores the block's metrics.
    metrics = storage.read_json(result_uri(spec, k))
    metrics["ray"].update(run_started_at=t0, run_finished_at=time.time())
    return metrics


def result_uri(spec: FanOut, k: int) -> str:
    from dna.generation import block_config

    out = block_config(spec.run, spec.generation, k, spec.teacher).out
    return storage.join(out, "ray", f"{spec.name}-result.json")


def train_worker(config: dict) -> None:
    """One Ray Train worker of one block: ``train_block`` with per-epoch ``ray.train.report``.

    ``train_block`` calls ``progress`` after every step; the first call of a new epoch means the
    previous epoch's checkpoint is stored, so that is where the epoch is reported (and where the
    fault hook fires). The last epoch is reported after ``train_block`` returns.
    """
    import ray.train

    from dna.generation import block_config
    from dna.train.block import checkpoint_uri, train_block

    _torch_threads()
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


# ----- Ray Jobs API -----------------------------------------------------------------------------
def job_entrypoint(spec: FanOut) -> str:
    return f"python -m components.ray_blocks --config {shlex.quote(json.dumps(spec.to_dict()))}"


def job_runtime_env(spec: FanOut) -> dict:
    env = {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}
    env[IN_JOB_ENV] = "1"
    if spec.fault:
        env[FAULT_ENV] = spec.fault
    return {"env_vars": env}


def job_metadata(spec: FanOut) -> dict[str, str]:
    return {"dna_root": spec.run.root, "dna_generation": str(spec.generation), "dna_task": spec.task,
            "dna_blocks": ",".join(map(str, spec.blocks))}


def _status(client, submission_id: str) -> str:
    s = client.get_job_status(submission_id)
    return str(getattr(s, "value", s))


def _find_running(client, spec: FanOut) -> str | None:
    """A live job of the same fan-out (a retried pipeline task): attach to it, don't duplicate."""
    meta = job_metadata(spec)
    try:
        jobs = client.list_jobs()
    except Exception:                           # listing is an optimisation only
        return None
    for job in jobs:
        status = str(getattr(job.status, "value", job.status))
        if status not in TERMINAL and (job.metadata or {}) == meta and job.submission_id:
            return job.submission_id
    return None


def submit_job(spec: FanOut, address: str, poll_s: float | None = None, log: Callable[[str], Any] = print,
               client=None) -> dict[int, dict]:
    """Run the fan-out as a Ray Job on the cluster at ``address`` and read its metrics back."""
    if client is None:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)
    submission_id = _find_running(client, spec)
    if submission_id is not None:
        log(f"[{spec.name}] attaching to the running job {submission_id} of the same fan-out")
        spec = dataclasses.replace(spec, name=submission_id)
    else:
        submission_id = client.submit_job(entrypoint=job_entrypoint(spec), runtime_env=job_runtime_env(spec),
                                          submission_id=spec.name, metadata=job_metadata(spec))
        log(f"[{spec.name}] submitted Ray job {submission_id} to {address}")
    shown = 0
    try:
        while True:
            status = _status(client, submission_id)
            logs = _logs(client, submission_id)
            if len(logs) > shown:
                log(logs[shown:].rstrip("\n"))
                shown = len(logs)
            if status in TERMINAL:
                break
            time.sleep(JOB_POLL_S if poll_s is None else poll_s)
    except KeyboardInterrupt:
        client.stop_job(submission_id)
        raise
    if status != "SUCCEEDED":
        tail = "\n".join(_logs(client, submission_id).splitlines()[-60:])
        raise FanOutError(f"Ray job {submission_id} ({spec.task}, generation {spec.generation}) "
                          f"ended {status}; last log lines:\n{tail}")
    if not storage.exists(spec.result_uri):
        raise FanOutError(f"Ray job {submission_id} succeeded but wrote no {spec.result_uri}")
    result = storage.read_json(spec.result_uri)
    if result.get("name") != submission_id:
        raise FanOutError(f"{spec.result_uri} belongs to fan-out {result.get('name')!r}, "
                          f"not to job {submission_id!r}")
    blocks = {int(k): v for k, v in result["blocks"].items()}
    return {k: blocks[k] for k in spec.blocks}


def _logs(client, submission_id: str) -> str:
    try:
        return client.get_job_logs(submission_id) or ""
    except Exception:
        return ""


# ----- python -m components.ray_blocks ----------------------------------------------------------
def load_spec(text: str) -> FanOut:
    """A fan-out spec from inline JSON or the URI of a JSON file."""
    text = text.strip()
    try:
        d = json.loads(text) if text.startswith("{") else storage.read_json(text)
    except json.JSONDecodeError as exc:
        raise DnaError(f"--config: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise DnaError("--config: expected a JSON object")
    try:
        return FanOut.from_dict(d)
    except (KeyError, TypeError) as exc:
        raise DnaError(f"--config: not a fan-out spec ({type(exc).__name__}: {exc}); expected the "
                       f"keys {[f.name for f in dataclasses.fields(FanOut)]}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m components.ray_blocks",
                                description="Train or rate the blocks of one generation on Ray.")
    p.add_argument("--config", required=True, help="fan-out spec: JSON object or URI of a JSON file")
    p.add_argument("--ray-address", default=None, help="default: RAY_ADDRESS, else a local Ray")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.config)
        results = run(spec, args.ray_address)
    except DnaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"name": spec.name, "result": spec.result_uri,
                      "blocks": {str(k): v.get("loss", v.get("rows")) for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
