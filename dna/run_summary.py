"""The run summary: one shape, read back from what the run root holds, written as
``<root>/summary.json`` by :func:`dna.generation.run` and by the pipelines' ``summarize`` stage.

``{"root", "generations": [{generation, dir, teacher, search[, scaled][, retrain]}], "final":
{generation, search, arch, retrain, model, transfer}, "limits", "artifacts": {what: URI}}``.
"""

from __future__ import annotations

from typing import Any

from dna import storage
from dna.layout import Generation, generation, run_files, task_dir


def read_optional_json(uri: str) -> Any:
    return storage.read_json(uri) if storage.exists(uri) else None


def read_optional_bytes(uri: str) -> bytes | None:
    return storage.read_bytes(uri) if storage.exists(uri) else None


def limits(cfg) -> dict[str, float | None]:
    """The run's search limits by cost name: params and FLOPs always (None: no limit), every other
    cost of the registry when it is limited (none is dropped)."""
    from dna.cost_registry import COSTS

    return {c.name: cfg.limits.get(c.name) for c in COSTS if c.required or c.name in cfg.limits}


def transfer_results(cfg, g: int, transfer: str | None = None) -> tuple[dict[str, dict], dict[str, bytes]]:
    """Stored transfer metrics and sample images of the tasks that finished under ``transfer``
    (default: generation ``g``'s transfer folder)."""
    from dna.layout import stage_files

    base = transfer or generation(cfg.root, g).transfer
    results, samples = {}, {}
    for task in cfg.transfer:
        files = stage_files(task_dir(base, task))
        m = read_optional_json(files.metrics)
        if m is not None:
            results[task] = m
        png = read_optional_bytes(files.samples)
        if png:
            samples[task] = png
    return results, samples


def short_metrics(m: dict) -> dict:
    """Metrics without the bulky history / arch / config entries."""
    return {k: v for k, v in m.items() if k not in ("history", "arch", "config") and not isinstance(v, (list, dict))}


def _teacher_entry(cfg, gen: Generation, vit: bool) -> dict[str, Any]:
    from dna.generation import TINY_TEACHERS

    if gen.index > 0:
        return {"model": generation(cfg.root, gen.index - 1).scaled_arch}
    if vit:
        return {"model": cfg.teacher.model, "checkpoint": gen.joint_teacher,
                "trained": "jointly with the ViT supernet (DNA++)"}
    entry: dict[str, Any] = {"model": gen.teacher_files.arch if cfg.teacher.model in TINY_TEACHERS
                             else cfg.teacher.model}
    m = read_optional_json(gen.teacher_files.metrics)
    if m:
        entry["top1"] = m.get("top1")
        if m.get("params") is not None:
            entry["params"] = m["params"]
    return entry


def _generation_entry(cfg, g: int, vit: bool, artifacts: dict[str, str]) -> dict[str, Any]:
    gen = generation(cfg.root, g)
    best = ((read_optional_json(gen.search_result) or {}).get("architectures") or [{}])[0]
    entry: dict[str, Any] = {"generation": g, "dir": gen.dir, "search": best, "teacher": _teacher_entry(cfg, gen, vit)}
    scaled_m = read_optional_json(gen.scaled_files.metrics)
    if scaled_m:
        entry["scaled"] = {"arch": gen.scaled_arch, "model": gen.scaled_files.model,
                           "metrics": short_metrics(scaled_m)}
    retrain_m = read_optional_json(gen.retrain_files.metrics)
    if retrain_m:
        entry["retrain"] = {"model": gen.retrain_files.model, "metrics": short_metrics(retrain_m)}
    artifacts[f"gen{g} scores (Parquet by block)"] = gen.scores
    artifacts[f"gen{g} supernets"] = gen.supernets
    artifacts[f"gen{g} reports"] = gen.reports
    if best:
        artifacts[f"gen{g} searched architecture"] = gen.search_arch
    if scaled_m:
        artifacts[f"gen{g} scaled teacher"] = gen.scaled_files.model
    return entry


def block_histories(supernets: str, blocks: int) -> dict[int, list[dict]]:
    """The block supernet losses per epoch (``{block: [{epoch, loss, ...}]}``) of the generation
    whose supernets lie under ``supernets``: each block's ``history.json`` next to its checkpoint,
    else the fan-out's result file (blocks trained before the history file existed). Blocks with
    neither are left out."""
    from dna.layout import block_dir
    from dna.train.block import history_uri

    fanout = (read_optional_json(storage.join(supernets, "fanout-train.json")) or {}).get("blocks") or {}
    out: dict[int, list[dict]] = {}
    for k in range(blocks):
        h = (read_optional_json(history_uri(block_dir(supernets, k))) or {}).get("history")
        h = h or (fanout.get(str(k)) or {}).get("history")
        if h:
            out[k] = h
    return out


def generation_block_histories(cfg, g: int) -> dict[int, list[dict]]:
    """:func:`block_histories` of generation ``g`` of the run ``cfg``."""
    from dna.space import get_space

    return block_histories(generation(cfg.root, g).supernets, len(get_space(cfg.space).blocks))


def run_summary(cfg, arch: str | None = None, model: str | None = None, transfer: str | None = None) -> dict:
    """The summary of the run ``cfg`` from its run root; the final answer is the architecture
    ``arch``, the retrained weights ``model`` and the transfer results under ``transfer``
    (default: the last generation's layout paths)."""
    from dna.space import get_family, get_space

    vit = get_family(get_space(cfg.space)).joint_teacher
    files = run_files(cfg.root)
    artifacts: dict[str, str] = {"run config": files.config, "summary": files.summary,
                                 "summary report": files.summary_html}
    gens = [_generation_entry(cfg, g, vit, artifacts) for g in range(cfg.generations)]
    last = generation(cfg.root, cfg.generations - 1)
    results, _ = transfer_results(cfg, last.index, transfer)
    final = {"generation": last.index, "search": gens[-1]["search"], "arch": arch or last.search_arch,
             "retrain": (gens[-1].get("retrain") or {}).get("metrics", {}),
             "model": model or last.retrain_files.model,
             "transfer": {t: short_metrics(m) for t, m in results.items()}}
    artifacts["final model (retrained)"] = final["model"]
    artifacts["final architecture"] = final["arch"]
    artifacts["final retrain curves"] = last.retrain_files.curve
    for t in results:
        artifacts[f"transfer {t}"] = task_dir(transfer or last.transfer, t)
    return {"root": cfg.root, "generations": gens, "final": final, "limits": limits(cfg), "artifacts": artifacts}


def write_summary(cfg, arch: str | None = None, model: str | None = None, transfer: str | None = None) -> dict:
    """:func:`run_summary`, stored as ``<root>/summary.json``."""
    s = run_summary(cfg, arch, model, transfer)
    storage.write_json(s, run_files(cfg.root).summary)
    return s
