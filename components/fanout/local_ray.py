"""Where the in-process fan-out runs: a quiet local Ray, or a Ray this process connects to, and
whether one block fits a local session (without an autoscaler it would wait forever)."""

from __future__ import annotations

import os
from pathlib import Path

from components.fanout.quiet import ray_init_kwargs
from components.fanout.sizing import check_fits
from components.fanout.spec import FanOut

REPO_ROOT = str(Path(__file__).resolve().parents[2])

# Quiet, fast settings for a Ray started here (not forced on a cluster this process connects to).
LOCAL_RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    # A safety margin only: the fan-out starts no more blocks than fit (components.fanout.sizing),
    # but a worker importing torch on a loaded 2-core machine can take longer than Ray's 60 s.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",
}


def is_dashboard_address(address: str) -> bool:
    return address.startswith(("http://", "https://"))


def init_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Start a local Ray whose workers can import ``dna`` and ``components``, quiet unless
    ``DNA_VERBOSE`` (:mod:`components.fanout.quiet`).

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
    for k, v in ray_init_kwargs().items():
        kwargs.setdefault(k, v)
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, runtime_env=runtime_env, **kwargs)


def connect(spec: FanOut, address: str | None) -> None:
    import ray

    in_job = bool(os.environ.get("RAY_ADDRESS")) and not is_dashboard_address(os.environ["RAY_ADDRESS"])
    if not ray.is_initialized():
        if address is None and in_job:
            # inside a Ray Job, or a task of a local run: RAY_ADDRESS is the GCS address
            ray.init(**ray_init_kwargs())
        elif address is None:
            # one block's worker group plus its driver trial must fit (logical CPUs may exceed cores)
            init_local_ray(num_cpus=max(os.cpu_count() or 1, spec.workers_per_block + 1))
        else:
            ray.init(address=address, **ray_init_kwargs())
    if address is None and not in_job:
        check_fits(spec, ray.cluster_resources())
