"""Helpers the component bodies import at run time (in the task's container or subprocess).

KFP lightweight components ship only their function's source, so everything shared lives here
and is imported inside the function body (``from components import _runtime as rt``). No KFP
import: artifacts are duck-typed (``.path``, ``.metadata``, ``.log_metric``).

The run root holds the real outputs (``dna.layout``); KFP artifacts are small: an architecture
JSON, a teacher/pointer JSON naming URIs in the run root, the retrained weights, and the
reports (also written to ``<root>/gen<g>/reports/``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

POINTER_FORMAT = "dna.pointer/v1"


def log(msg: str) -> None:
    print(f"[dna {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setup() -> None:
    """Quiet, offline-safe process settings for a component; ``DNA_TORCH_THREADS`` (set by the
    local runs: 1) caps torch's CPU threads, which on a small shared CPU is far faster than
    letting every process spin up one thread per core."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import matplotlib

    matplotlib.use("Agg")
    threads = os.environ.get("DNA_TORCH_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


def shutdown_ray() -> None:
    """Stop a Ray session this process started (a local Ray of the fan-out), so its workers and
    their CPUs are free before the next stage starts."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


# ----- run config -------------------------------------------------------------------------------
def load_config(run_config: str):
    """The :class:`dna.generation.RunConfig` of a component's ``run_config`` JSON parameter."""
    from dna.errors import DnaError
    from dna.generation import RunConfig

    try:
        d = json.loads(run_config)
    except json.JSONDecodeError as exc:
        raise DnaError(f"run_config is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise DnaError("run_config must be a JSON object (dna.generation.RunConfig)")
    return RunConfig.from_dict(d)


def with_retrain(cfg, overrides: str):
    """``cfg`` with its ``retrain`` settings updated from a JSON object (empty: unchanged)."""
    from dna.errors import DnaError, check_keys, field_names

    if not (overrides or "").strip():
        return cfg
    try:
        d = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise DnaError(f"retrain overrides are not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise DnaError(f"retrain overrides {overrides!r}: expected a JSON object")
    check_keys(d, field_names(cfg.retrain), "retrain overrides keys")
    return dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, **d))


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


def read_teacher(artifact):
    from dna.errors import DnaError
    from dna.teacher import TeacherConfig

    d = read_json_artifact(artifact)
    if not isinstance(d, dict) or "teacher" not in d:
        raise DnaError(f"{artifact.path}: not a teacher artifact (expected a JSON with 'teacher')")
    return TeacherConfig(**d["teacher"])


def fix_teacher_classes(teacher, cfg):
    """A timm-named teacher trained here predicts the data's classes, not timm's 1000."""
    if teacher.num_classes is None and not teacher.model.endswith(".json") and teacher.checkpoint \
            and not teacher.pretrained:
        from dna.data import num_classes

        return dataclasses.replace(teacher, num_classes=num_classes(cfg.data))
    return teacher


def copy_to_artifact(uri: str, artifact) -> None:
    """Copy a file of the run root (local or s3://) into a KFP output artifact."""
    from dna import storage

    _write_file(artifact.path, storage.read_bytes(uri))


def read_optional_bytes(uri: str) -> bytes | None:
    from dna import storage

    return storage.read_bytes(uri) if storage.exists(uri) else None


def read_optional_json(uri: str) -> Any:
    from dna import storage

    return storage.read_json(uri) if storage.exists(uri) else None


def publish_report(text: str, artifact, cfg, generation: int | None, name: str) -> str:
    """Write a report to the KFP artifact and to the run root; returns its run-root URI."""
    from dna import storage
    from dna.layout import generation as layout

    _write_file(artifact.path, text)
    ext = "md" if name.endswith(".md") else "html"
    base = name.rsplit(".", 1)[0]
    if generation is None:
        uri = storage.join(cfg.root, f"{base}.{ext}")
    else:
        uri = storage.join(layout(cfg.root, generation).reports, f"{base}.{ext}")
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


# ----- DNA++ -------------------------------------------------------------------------------------
# teacher names meaning DNA++'s default CNN teacher (dna.ssl picks it for the space)
PP_DEFAULT_TEACHERS = ("", "tiny", "default")


def pp_settings(pp_config: str) -> dict:
    from dna.errors import DnaError

    try:
        d = json.loads(pp_config or "{}")
    except json.JSONDecodeError as exc:
        raise DnaError(f"pp_config is not valid JSON: {exc}") from None
    if not isinstance(d, dict) or set(d) - {"train", "retrain"}:
        raise DnaError("pp_config must be a JSON object with 'train' and/or 'retrain' sections")
    return d


def pp_train_config(cfg, pp_config: str):
    """The :class:`dna.ssl.PPTrainConfig` of a DNA++ run: the run config's root, space, data,
    teacher, epochs and caps, plus ``pp_config["train"]``."""
    from dna.layout import generation as layout
    from dna.ssl import PPLossConfig, PPTrainConfig

    train = dict(pp_settings(pp_config).get("train") or {})
    if isinstance(train.get("loss"), dict):
        train["loss"] = PPLossConfig(**train["loss"])
    teacher = None if cfg.teacher.model in PP_DEFAULT_TEACHERS else cfg.teacher
    base = dict(out=layout(cfg.root, 0).supernets, space=cfg.space, teacher=teacher,
                data=dataclasses.replace(cfg.data, augment=False), epochs=cfg.block_epochs,
                max_steps_per_epoch=cfg.block_max_steps, seed=cfg.seed, device=cfg.device)
    base.update(train)
    return PPTrainConfig(**base).validate()


def retrain_vit_config(cfg, pp_config: str, arch: str, out: str):
    """The :class:`dna.retrain_vit.RetrainViTConfig` of a DNA++ run: the run config's retrain
    settings (epochs, lr, steps, dropout, smoothing, RandAugment) plus ``pp_config["retrain"]``."""
    from dna.retrain_vit import RetrainViTConfig

    r = cfg.retrain
    base = dict(arch=arch, out=out, data=cfg.data, epochs=r.epochs, lr=r.lr, steps_per_epoch=r.steps_per_epoch,
                drop_rate=r.drop_rate, drop_path_rate=r.drop_path_rate, label_smoothing=r.label_smoothing,
                auto_augment=r.auto_augment, seed=cfg.seed, device=cfg.device or "auto")
    base.update(pp_settings(pp_config).get("retrain") or {})
    return RetrainViTConfig(**base).validate()


# ----- reading a run root -----------------------------------------------------------------------
def limits(cfg) -> dict[str, float | None]:
    """The run's search limits by cost name: params and FLOPs always (None: no limit), every other
    cost of the registry when it is limited."""
    from dna.cost_registry import COSTS

    return {c.name: cfg.limits.get(c.name) for c in COSTS if c.required or c.name in cfg.limits}


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


def transfer_results(cfg, g: int) -> tuple[dict[str, dict], dict[str, bytes]]:
    """Stored transfer metrics and sample images of generation ``g`` (tasks that finished)."""
    from dna import storage
    from dna.layout import generation as layout

    results, samples = {}, {}
    for task in cfg.transfer:
        out = storage.join(layout(cfg.root, g).transfer, task)
        m = read_optional_json(storage.join(out, "metrics.json"))
        if m is not None:
            results[task] = m
        png = read_optional_bytes(storage.join(out, "samples.png"))
        if png:
            samples[task] = png
    return results, samples


def run_summary(cfg) -> dict[str, Any]:
    """What :func:`dna.generation.run` returns, read back from the run root, plus where every
    artifact is: written as ``<root>/summary.json`` by the pipelines' last stage."""
    from dna import storage
    from dna.generation import ARCH_FILE, MODEL_FILE, TINY_TEACHERS
    from dna.layout import generation as layout
    from dna.space import get_space

    vit = getattr(get_space(cfg.space), "kind", "mbconv") == "vit"
    gens = []
    final: dict[str, Any] = {}
    artifacts: dict[str, str] = {"run config": storage.join(cfg.root, "config.json"),
                                 "summary": storage.join(cfg.root, "summary.json"),
                                 "summary report": storage.join(cfg.root, "summary.html")}
    for g in range(cfg.generations):
        gen = layout(cfg.root, g)
        result = read_optional_json(storage.join(gen.search, "result.json")) or {}
        best = (result.get("architectures") or [{}])[0]
        entry: dict[str, Any] = {"generation": g, "dir": gen.dir, "search": best}
        teacher_m = read_optional_json(storage.join(gen.teacher, "metrics.json"))
        if g == 0 and vit:
            entry["teacher"] = {"model": cfg.teacher.model, "checkpoint": storage.join(gen.supernets, "teacher.pt"),
                                "trained": "jointly with the ViT supernet (DNA++)"}
        elif g == 0:
            tiny = cfg.teacher.model in TINY_TEACHERS
            entry["teacher"] = {"model": storage.join(gen.teacher, ARCH_FILE) if tiny else cfg.teacher.model}
            if teacher_m:
                entry["teacher"]["top1"] = teacher_m.get("top1")
        else:
            entry["teacher"] = {"model": storage.join(layout(cfg.root, g - 1).scaled, ARCH_FILE)}
        scaled_m = read_optional_json(storage.join(gen.scaled, "retrain", "metrics.json"))
        if scaled_m:
            entry["scaled"] = {"arch": storage.join(gen.scaled, ARCH_FILE),
                               "model": storage.join(gen.scaled, "retrain", MODEL_FILE),
                               "metrics": _short_metrics(scaled_m)}
        retrain_m = read_optional_json(storage.join(gen.retrain, "metrics.json"))
        if retrain_m:
            entry["retrain"] = {"model": storage.join(gen.retrain, MODEL_FILE), "metrics": _short_metrics(retrain_m)}
        gens.append(entry)
        artifacts[f"gen{g} scores (Parquet by block)"] = gen.scores
        artifacts[f"gen{g} supernets"] = gen.supernets
        artifacts[f"gen{g} reports"] = gen.reports
        if best:
            artifacts[f"gen{g} searched architecture"] = storage.join(gen.search, ARCH_FILE)
        if scaled_m:
            artifacts[f"gen{g} scaled teacher"] = storage.join(gen.scaled, "retrain", MODEL_FILE)
    last = cfg.generations - 1
    gen = layout(cfg.root, last)
    transfer, _ = transfer_results(cfg, last)
    final = {"generation": last, "search": gens[-1]["search"] if gens else {},
             "arch": storage.join(gen.search, ARCH_FILE),
             "retrain": (gens[-1].get("retrain") or {}).get("metrics", {}) if gens else {},
             "model": storage.join(gen.retrain, MODEL_FILE),
             "transfer": {t: _short_metrics(m) for t, m in transfer.items()}}
    artifacts["final model (retrained)"] = final["model"]
    artifacts["final architecture"] = final["arch"]
    artifacts["final retrain curves"] = storage.join(gen.retrain, "curve.png")
    for t in transfer:
        artifacts[f"transfer {t}"] = storage.join(gen.transfer, t)
    return {"root": cfg.root, "generations": gens, "final": final, "limits": limits(cfg),
            "artifacts": artifacts}


def _short_metrics(m: dict) -> dict:
    """Metrics without the bulky history / arch / config entries."""
    return {k: v for k, v in m.items() if k not in ("history", "arch", "config") and not isinstance(v, (list, dict))}
