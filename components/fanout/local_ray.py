"""Where the in-process fan-out runs: a quiet local Ray, or a Ray this process connects to, and
whether one block fits a local session (without an autoscaler it would wait forever)."""

from __future__ import annotations

import os
from pathlib import Path

from components.fanout.spec import FanOut
from dna.errors import DnaError

REPO_ROOT = str(Path(__file__).resolve().parents[2])

# Quiet, fast settings for a Ray started here (not forced on a cluster this process connects to).
LOCAL_RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
}


def is_dashboard_address(address: str) -> bool:
    return address.startswith(("http://", "https://"))


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


def connect(spec: FanOut, address: str | None) -> None:
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
        check_fits(spec)


def check_fits(spec: FanOut) -> None:
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
