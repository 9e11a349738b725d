"""Helpers the component bodies import at run time (in the task's container or subprocess).

KFP lightweight components ship only their function's source, so everything shared lives here
and is imported inside the function body (``from components import _runtime as rt``). No KFP
import: artifacts are duck-typed (``.path``, ``.metadata``, ``.log_metric``).

The run root holds the real outputs (``dna.layout``); KFP artifacts are small: an architecture
JSON, a teacher/pointer JSON naming URIs in the run root, the retrained weights, and the
reports (also written to ``<root>/gen<g>/reports/``). Every output artifact carries the run-root
URI it stands for (metadata ``uri``); a component reads what it consumes from its input artifacts
(:func:`input_uri`, :func:`read_teacher`, :func:`read_data`), so the DAG's edges carry the data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

POINTER_FORMAT = "dna.pointer/v1"
TASK_THREADS_ENV = "DNA_TASK_THREADS"   # torch threads of a task's own process (pipelines.local_run sets it)


def log(msg: str) -> None:
    print(f"[dna {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setup() -> None:
    """Quiet, offline-safe process settings for a component. Its torch CPU threads:
    ``DNA_TASK_THREADS`` (local runs: the cores, as their runner runs one task at a time), else
    ``DNA_TORCH_THREADS`` (the Ray workers' cap; local runs: 1), else torch's default."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import matplotlib

    matplotlib.use("Agg")
    threads = task_threads()
    if threads:
        import torch

        torch.set_num_threads(threads)


def task_threads() -> int | None:
    """The torch threads a component's own process sets (None: torch's default)."""
    for name in (TASK_THREADS_ENV, "DNA_TORCH_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def shutdown_ray() -> None:
    """Stop a Ray session this process started (a local Ray of the fan-out), so its workers and
    their CPUs are free before the next stage starts."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


# ----- run config -------------------------------------------------------------------------------
def load_config(run_config: str, overrides: dict[str, Any] | None = None):
    """The :class:`dna.generation.RunConfig` of a component's ``run_config`` JSON parameter, with
    the typed pipeline parameters in ``overrides`` applied (:mod:`components.overrides`)."""
    from components.overrides import apply_overrides
    from dna.errors import DnaError
    from dna.generation import RunConfig

    try:
        d = json.loads(run_config)
    except json.JSONDecodeError as exc:
        raise DnaError(f"run_config is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise DnaError("run_config must be a JSON object (dna.generation.RunConfig)")
    cfg = RunConfig.from_dict(apply_overrides(d, overrides))
    hold_root(cfg.root)
    if cfg.root:  # every stage starts here: clear what writers killed in earlier stages left
        from dna import storage

        storage.sweep_stale(cfg.root)
    return cfg


_leases: dict[str, Any] = {}


def hold_root(root: str) -> None:
    """Join or take the run root's lease (``dna.lease``) for this task's process, as the run
    ``DNA_RUN_ID`` names (the local driver's run; in KFP the pipeline run's id, from the pod's
    label); without a run id, only refuse a root another live run holds. Kept fresh until the
    process ends; never removed here (the driver that created it does, or it goes stale)."""
    from dna import lease

    if not root or root in _leases:
        return
    run_id = lease.env_run_id()
    if run_id is None:
        lease.check_free(root, log=log)
        return
    _leases[root] = lease.Lease(root, run_id, log=log).acquire()


def end_run(root: str) -> None:
    """The run's last task: stop this task's heartbeat and remove the run root's lease
    (:func:`dna.lease.end_run`), so that the next run on the same root is not refused."""
    from dna import lease

    held = _leases.pop(root, None)
    if held is not None:
        held.release()
    if root and lease.end_run(root):
        log(f"released the lease of the run root {root}")


def resolve_root(root: str, run_id: str) -> str:
    """The run root: as given, else ``$DNA_RUN_ROOT/<run id>`` (the cluster default)."""
    from dna import storage
    from dna.errors import DnaError

    if root:
        return root
    base = os.environ.get("DNA_RUN_ROOT", "").strip()
    if not base:
        raise DnaError("no run root: set 'root' in run_config (e.g. s3://bucket/dna-runs/NAME) or "
                       "DNA_RUN_ROOT in the ConfigMap dna-settings (k8s/README.md)")
    rid = (run_id or "").strip()
    if not rid or rid.startswith("{{"):
        rid = time.strftime("%Y%m%d-%H%M%S")
    return storage.join(base, rid)


def config_json(cfg) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


# ----- artifacts --------------------------------------------------------------------------------
def _write_file(path: str, data: bytes | str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def write_json_artifact(artifact, obj: Any, **metadata: Any) -> None:
    """The artifact's file holds ``obj`` as JSON; scalar ``metadata`` goes to its metadata."""
    _write_file(artifact.path, json.dumps(obj, indent=1, sort_keys=True, default=str))
    for k, v in metadata.items():
        artifact.metadata[k] = v


def read_json_artifact(artifact) -> Any:
    with open(artifact.path) as f:
        return json.load(f)


def write_teacher(artifact, teacher, generation: int, **metadata: Any) -> None:
    """A teacher artifact: the :class:`dna.teacher.TeacherConfig` as JSON."""
    d = dataclasses.asdict(teacher)
    write_json_artifact(artifact, {"format": POINTER_FORMAT, "kind": "teacher", "teacher": d,
                                   "generation": generation},
                        model=d["model"], checkpoint=d["checkpoint"] or "", generation=generation,
                        **metadata)


def read_teacher(artifact, name: str = "teacher"):
    """The :class:`dna.teacher.TeacherConfig` of a teacher artifact, its files verified to exist."""
    from dna.errors import DnaError
    from dna.teacher import TeacherConfig

    d = read_json_artifact(artifact)
    if not isinstance(d, dict) or "teacher" not in d:
        raise DnaError(f"{artifact.path}: not a teacher artifact (expected a JSON with 'teacher')")
    t = TeacherConfig(**d["teacher"])
    for uri in (t.checkpoint, t.model if t.model.endswith(".json") else None):
        if uri:
            _check_exists(uri, name)
    return t


def write_pointer(artifact, kind: str, uri: str, generation: int, **extra: Any) -> None:
    """A pointer artifact: ``{"format", "kind", "uri", "generation", ...}`` naming a folder of
    the run root (supernets, scores, transfer results); ``uri`` also goes to its metadata."""
    write_json_artifact(artifact, {"format": POINTER_FORMAT, "kind": kind, "uri": uri, "generation": generation,
                                   **extra}, uri=uri, generation=generation)


def _check_exists(uri: str, name: str) -> str:
    from dna import storage
    from dna.errors import DnaError

    if not storage.exists(uri):
        raise DnaError(f"input {name!r} points at {uri}, which does not exist: the run root was deleted or moved "
                       "after the upstream stage wrote it (e.g. a KFP cache hit of an earlier run); rerun with "
                       "--no-cache or a new root")
    return uri


def input_uri(artifact, name: str, exists: bool = True) -> str:
    """The run-root URI an input artifact points at (its metadata ``uri``, else the ``uri`` of
    the pointer JSON it holds), verified to exist (``exists``: a folder that may still be empty
    is not): what a component consumes comes from its edge."""
    from dna.errors import DnaError

    uri = (getattr(artifact, "metadata", None) or {}).get("uri")
    if not uri:
        try:
            d = read_json_artifact(artifact)
        except (OSError, ValueError):
            d = None
        uri = d.get("uri") if isinstance(d, dict) else None
    if not uri or not isinstance(uri, str):
        raise DnaError(f"input {name!r} ({artifact.path}) names no URI (no 'uri' in its metadata or pointer JSON): "
                       "expected the output artifact of the upstream stage")
    return _check_exists(uri, name) if exists else uri


def read_data(artifact):
    """The :class:`dna.data.DataConfig` of a ``prepare_data`` artifact (its data verified readable)."""
    from dna import storage
    from dna.data import DataConfig
    from dna.errors import DnaError

    d = read_json_artifact(artifact)
    if not isinstance(d, dict) or not isinstance(d.get("data"), dict):
        raise DnaError(f"{artifact.path}: not a data artifact (expected a JSON with 'data')")
    data = DataConfig.from_dict(d["data"])
    if not data.is_builtin:
        storage.check_readable(data.uri)
    return data


def copy_to_artifact(uri: str, artifact) -> None:
    """Copy a file of the run root (local or s3://) into a KFP output artifact."""
    from dna import storage

    _write_file(artifact.path, storage.read_bytes(uri))


def publish_report(text: str, artifact, cfg, generation: int | None, name: str) -> str:
    """Write a report to the KFP artifact and to the run root; returns its run-root URI."""
    from dna import storage
    from dna.layout import generation as layout
    from dna.layout import run_files

    _write_file(artifact.path, text)
    ext = "md" if name.endswith(".md") else "html"
    base = name.rsplit(".", 1)[0]
    where = run_files(cfg.root) if generation is None else layout(cfg.root, generation)
    uri = where.report(f"{base}.{ext}")
    storage.write_text(text, uri)
    artifact.metadata["uri"] = uri
    return uri


def log_metrics(metrics, values: dict[str, Any], prefix: str = "") -> None:
    """``Metrics.log_metric`` for every finite number in ``values`` (nested dicts flattened)."""
    for k, v in values.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            log_metrics(metrics, v, prefix=f"{name}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            metrics.log_metric(name, float(v))


# ----- reading a run root -----------------------------------------------------------------------
def pareto_fronts(scores_uri: str) -> dict[str, list[dict]]:
    """The exact loss-vs-params and loss-vs-FLOPs fronts of a scores table (short records)."""
    from dna.search.run import run_search

    out = {}
    for cost in ("params", "flops"):
        front = run_search(scores_uri, pareto=True, cost=cost)["architectures"]
        out[cost] = [{"loss": a["loss"], "params": a["params"], "flops": a["flops"]} for a in front]
    return out


def top_candidates(scores_uri: str, per_block: int = 3) -> tuple[dict[int, list[dict]], dict[int, int]]:
    """The lowest-loss rows of every block of a scores table, and the row count per block."""
    from dna.rate.scores import read_scores

    table, _ = read_scores(scores_uri)
    rows = table.select(["block", "cell", "ops", "in_channels", "loss", "params", "flops"]).to_pylist()
    best: dict[int, list[dict]] = {}
    counts: dict[int, int] = {}
    for r in rows:
        counts[r["block"]] = counts.get(r["block"], 0) + 1
        best.setdefault(r["block"], []).append(r)
    return {k: sorted(v, key=lambda r: r["loss"])[:per_block] for k, v in best.items()}, counts
