"""Pod settings of the pipeline tasks by kind: CPU/memory, ``/dev/shm``, retries, timeouts.

Three kinds of task need different pods:

- ``light``: prepare data, search, summary (seconds to minutes, little memory);
- ``train``: teacher, retrain, scale, transfer, DNA++'s supernet and rating (GPU training with
  data-loader worker processes, which pass batches through ``/dev/shm``);
- ``fanout``: the block supernet / rating tasks, which drive the Ray fan-out (with a Ray cluster
  they only wait for it; with a Ray inside their pod the blocks train there: raise their
  resources to the training kind's).

CPU and memory are pipeline parameters (``<kind>_cpu_request`` ...: KFP resolves them when the
pod starts, so they can be changed per run in the UI). Retries, timeouts and the ``/dev/shm``
size are fixed in the compiled YAML (KFP takes only constants there): ``--retries``,
``--task-timeout KIND=DURATION`` and ``--shm-size``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kfp import kubernetes

from pipelines.flags import UsageError

LIGHT, TRAIN, FANOUT = "light", "train", "fanout"
KINDS = (LIGHT, TRAIN, FANOUT)
RESOURCE_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")

# Sized for the imagenet preset on one GPU (8 data-loader workers): requests a node can usually
# offer, limits that leave room for peaks; memory limits include what /dev/shm holds.
RESOURCE_DEFAULTS: dict[str, dict[str, str]] = {
    LIGHT: {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi", "memory_limit": "4Gi"},
    TRAIN: {"cpu_request": "8", "cpu_limit": "16", "memory_request": "32Gi", "memory_limit": "64Gi"},
    FANOUT: {"cpu_request": "1", "cpu_limit": "4", "memory_request": "4Gi", "memory_limit": "16Gi"},
}

# Wall-clock limits (seconds, the pod's activeDeadlineSeconds): generous, so that only a hung
# task is stopped (the imagenet retraining runs for days on one GPU).
TIMEOUT_DEFAULTS: dict[str, int] = {LIGHT: 6 * 3600, TRAIN: 14 * 86400, FANOUT: 7 * 86400}
RETRIES = 2                      # training and fan-out tasks; each resumes from the run root
RETRY_BACKOFF = "60s"
RETRY_BACKOFF_MAX = "3600s"
SHM_SIZE = "8Gi"
SHM_VOLUME = "dshm"

_CPU = re.compile(r"^([0-9]*\.)?[0-9]+m?$")
_MEMORY = re.compile(r"^([0-9]*\.)?[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki|k)?$")
_MEMORY_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def resource_parameter(kind: str, field: str) -> str:
    """The pipeline parameter of one resource of one kind, e.g. ``train_memory_limit``."""
    return f"{kind}_{field}"


RESOURCE_PARAMETERS: dict[str, str] = {
    resource_parameter(k, f): RESOURCE_DEFAULTS[k][f] for k in KINDS for f in RESOURCE_FIELDS}


def quantity(value: str, field: str, what: str) -> float:
    """A Kubernetes CPU (``500m``, ``2``) or memory (``512Mi``, ``4Gi``) quantity as a number,
    so that a request can be compared with its limit; a UsageError names the bad value."""
    text = str(value).strip()
    if field.startswith("cpu"):
        if not _CPU.match(text):
            raise UsageError(f"{what} {value!r}: expected CPUs such as 500m, 2 or 1.5")
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    m = _MEMORY.match(text)
    if not m:
        raise UsageError(f"{what} {value!r}: expected memory such as 512Mi, 4Gi or 1G")
    return float(text[: len(text) - len(m.group(2) or "")]) * _MEMORY_UNITS[m.group(2) or ""]


def check_resources(values: dict[str, str]) -> None:
    """Every resource parameter a valid quantity and no request above its limit."""
    for kind in KINDS:
        for res in ("cpu", "memory"):
            req_name, lim_name = resource_parameter(kind, f"{res}_request"), resource_parameter(kind, f"{res}_limit")
            req = quantity(values[req_name], f"{res}_request", req_name)
            lim = quantity(values[lim_name], f"{res}_limit", lim_name)
            if req > lim:
                raise UsageError(f"{req_name}={values[req_name]!r} is above {lim_name}={values[lim_name]!r}: "
                                 "a request cannot exceed its limit")


def parse_task_resources(items: Sequence[str]) -> dict[str, str]:
    """``--task-resource KIND.FIELD=VALUE`` items -> resource parameters."""
    out = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        kind, dot, field = key.strip().partition(".")
        if not eq or not dot or kind not in KINDS or field not in RESOURCE_FIELDS:
            raise UsageError(f"--task-resource {item!r}: expected KIND.FIELD=VALUE with KIND one of "
                             f"{', '.join(KINDS)} and FIELD one of {', '.join(RESOURCE_FIELDS)}, "
                             "e.g. train.memory_limit=64Gi")
        quantity(value, field, f"--task-resource {key}")
        out[resource_parameter(kind, field)] = value.strip()
    return out


def parse_shm_size(value: str | None) -> str | None:
    """``--shm-size``: a memory quantity, ``none`` for no size limit; None: the default."""
    if value is None:
        return SHM_SIZE
    if value.strip().lower() == "none":
        return None
    quantity(value, "memory", "--shm-size")
    return value.strip()


def parse_duration(text: str, what: str) -> int:
    """``90``, ``3600s``, ``30m``, ``6h``, ``14d`` -> seconds (> 0)."""
    m = _DURATION.match(str(text).strip())
    if not m or int(m.group(1)) <= 0:
        raise UsageError(f"{what} {text!r}: expected a positive duration such as 3600s, 30m, 6h or 14d")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def parse_task_timeouts(items: Sequence[str]) -> dict[str, int]:
    """The default timeouts with ``--task-timeout KIND=DURATION`` items applied."""
    out = dict(TIMEOUT_DEFAULTS)
    for item in items or ():
        kind, eq, value = item.partition("=")
        if not eq or kind.strip() not in KINDS:
            raise UsageError(f"--task-timeout {item!r}: expected KIND=DURATION with KIND one of "
                             f"{', '.join(KINDS)}, e.g. train=3d")
        out[kind.strip()] = parse_duration(value, f"--task-timeout {kind.strip()}")
    return out


def apply(task, kind: str, resources: dict, timeouts: dict[str, int], retries: int, shm_size: str | None):
    """The pod settings of a ``kind`` task: CPU/memory from ``resources`` (name -> pipeline
    channel or constant), its timeout, and for training and fan-out tasks a memory-backed
    ``/dev/shm`` (the 64 MiB default stops data loaders with several workers) and retries."""
    task.set_cpu_request(resources[resource_parameter(kind, "cpu_request")])
    task.set_cpu_limit(resources[resource_parameter(kind, "cpu_limit")])
    task.set_memory_request(resources[resource_parameter(kind, "memory_request")])
    task.set_memory_limit(resources[resource_parameter(kind, "memory_limit")])
    kubernetes.set_timeout(task, timeouts[kind])
    if kind != LIGHT:
        kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path="/dev/shm", medium="Memory",
                                   size_limit=shm_size or None)
        if retries:
            task.set_retry(num_retries=retries, backoff_duration=RETRY_BACKOFF, backoff_factor=2.0,
                           backoff_max_duration=RETRY_BACKOFF_MAX)
    return task
