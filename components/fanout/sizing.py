"""How many block trials a Ray cluster can run at once, from what one block needs.

Starting more trials than the cluster can place makes their Ray Train controllers wait for a
worker group that cannot start, and after ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (60 s) they
fail and retry: on a 2-core machine that was most of a smoke run's terminal. So the fan-out starts
at most :func:`concurrency_cap` trials, and Tune starts the next one as a running one ends.
"""

from __future__ import annotations

import math

from components.fanout.spec import FanOut
from dna.errors import DnaError

# A training trial only drives its TorchTrainer (whose controller holds no CPU either), so it holds
# no CPU: one byte of Ray's "memory" resource, because Tune refuses an empty resource request.
TRAIN_TRIAL = {"cpu": 0, "memory": 1}


def trial_resources(spec: FanOut) -> dict[str, float]:
    """Tune's ``with_resources`` of one block trial."""
    if spec.task == "train":
        return dict(TRAIN_TRIAL)
    return {"cpu": 1, "gpu": 1} if spec.use_gpu else {"cpu": 1}


def worker_resources(spec: FanOut) -> dict[str, float]:
    """Ray resources of one Ray Train worker of a block (Ray's own ``ScalingConfig`` defaults)."""
    import ray.train

    scaling = ray.train.ScalingConfig(num_workers=spec.workers_per_block, use_gpu=spec.use_gpu)
    return dict(scaling._resources_per_worker_not_none)


def block_need(spec: FanOut, worker: dict[str, float] | None = None) -> dict[str, float]:
    """Ray resources (``CPU``, ``GPU``) one block holds while it runs: its trial, plus its worker
    group when it trains. ``worker``: one worker's resources (default :func:`worker_resources`)."""
    trial = trial_resources(spec)
    need = {"CPU": float(trial.get("cpu", 0)), "GPU": float(trial.get("gpu", 0))}   # memory: negligible
    if spec.task == "train":
        worker = worker_resources(spec) if worker is None else worker
        for key, amount in worker.items():
            need[key] = need.get(key, 0.0) + amount * spec.workers_per_block
    return need


def concurrency_cap(need: dict[str, float], cluster: dict[str, float]) -> int:
    """Blocks of ``need`` that fit ``cluster`` (``ray.cluster_resources()``) at once; at least 1
    (a cluster with an autoscaler may add what one block lacks)."""
    fits = [math.floor(cluster.get(key, 0.0) / amount + 1e-9) for key, amount in need.items() if amount > 0]
    return max(1, min(fits)) if fits else 1


def max_concurrent(spec: FanOut, cluster: dict[str, float], n_blocks: int) -> int:
    """The trials to run at once: ``spec.max_concurrent`` (``--max-concurrent-blocks``) when set,
    else what the cluster fits; never more than the blocks to run."""
    cap = spec.max_concurrent if spec.max_concurrent else concurrency_cap(block_need(spec), cluster)
    return max(1, min(cap, n_blocks))


def check_fits(spec: FanOut, cluster: dict[str, float]) -> None:
    """On a local Ray (no autoscaler) a block that cannot fit would wait forever: refuse it."""
    need = block_need(spec)
    short = {k: v for k, v in need.items() if v > 0 and cluster.get(k, 0.0) + 1e-9 < v}
    if short:
        raise DnaError(
            f"this Ray session has {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs; one "
            f"{spec.task} block needs {need.get('CPU', 0):g} CPUs and {need.get('GPU', 0):g} GPUs "
            f"(workers_per_block={spec.workers_per_block}, use_gpu={spec.use_gpu})")
