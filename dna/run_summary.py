"""The run summary: one shape, read back from what the run root holds, written as
``<root>/summary.json`` by :func:`dna.generation.run` and by the pipelines' ``summarize`` stage.

``{"root", "generations": [{generation, dir, teacher, search[, scaled][, retrain][, random]}], "final":
{generation, search, arch, retrain, model, transfer}, "limits", "artifacts": {what: URI},
"comparison": [per generation: teacher, searched and random top-1 and params], "trend": [lines]}``.

``comparison`` puts side by side what DNA+ claims: each generation's teacher, the searched net
trained as the method trains it (scaled and retrained as the next teacher before the last
generation, retrained at its own size in the last) and a random architecture of the same params
trained the same way (:mod:`dna.random_baseline`). ``trend`` holds one plain line for every
place the teachers do not rise, or the generation-0 teacher is not above the searched students,
with the likely cause.
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
        for key in ("params", "epochs", "train_images", "updates_per_epoch"):
            if m.get(key) is not None:
                entry[key] = m[key]
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
    scaled = g < cfg.generations - 1        # trained as this generation's searched net is
    random_files = gen.random_scaled_files if scaled else gen.random_files
    random_m = read_optional_json(random_files.metrics)
    if random_m:
        sample = (read_optional_json(gen.random_arch) or {}).get("random_baseline", {})
        entry["random"] = {"arch": gen.random_scaled_arch if scaled else gen.random_arch,
                           "model": random_files.model, "scaled": scaled, "sample": sample,
                           "metrics": short_metrics(random_m)}
        artifacts[f"gen{g} random baseline"] = gen.random
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
    out = {"root": cfg.root, "generations": gens, "final": final, "limits": limits(cfg), "artifacts": artifacts}
    out["comparison"] = comparison(out)
    out["trend"] = teacher_trend(out["comparison"])
    return out


def _metric(entry: dict | None, key: str) -> Any:
    return ((entry or {}).get("metrics") or {}).get(key)


def comparison(summary: dict) -> list[dict[str, Any]]:
    """Per generation: ``teacher_top1``/``teacher_params``/``teacher_epochs`` (generation 0's
    trained teacher, else the previous generation's scaled net), ``searched_top1``/``_params``/
    ``_epochs`` of the searched net as trained there (``searched_as``: "scaled" or "retrained"),
    and ``random_top1``/``random_params`` of the random architecture trained the same way (None
    where a stage did not run or was switched off)."""
    rows = []
    gens = summary.get("generations") or []
    for i, g in enumerate(gens):
        teacher = g.get("teacher") or {}
        if i > 0:
            teacher = (gens[i - 1].get("scaled") or {}).get("metrics") or {}
        searched, kind = (g.get("scaled"), "scaled") if g.get("scaled") else (g.get("retrain"), "retrained")
        rnd = g.get("random")
        rows.append({"generation": g.get("generation", i), "teacher_top1": teacher.get("top1"),
                     "teacher_params": teacher.get("params"), "teacher_epochs": teacher.get("epochs"),
                     "teacher_training": _training(teacher), "searched_as": kind,
                     "searched_top1": _metric(searched, "top1"), "searched_params": _metric(searched, "params"),
                     "searched_epochs": _metric(searched, "epochs"),
                     "searched_training": _training((searched or {}).get("metrics") or {}),
                     "random_top1": _metric(rnd, "top1"), "random_params": _metric(rnd, "params")})
    return rows


def _training(m: dict) -> dict[str, int] | None:
    """``{"epochs", "images", "updates"}`` of a training's metrics (None where a run predates them):
    nets trained on different train sizes are compared by updates, not epochs."""
    try:
        epochs, images, per_epoch = int(m["epochs"]), int(m["train_images"]), int(m["updates_per_epoch"])
    except (KeyError, TypeError, ValueError):
        return None
    return {"epochs": epochs, "images": images, "updates": epochs * per_epoch}


def _undertrained(weak: Any, stronger: Any) -> str | None:
    """The "undertrained: ..." cause when ``weak`` had fewer updates (``_training`` dicts) or, for runs
    without them, fewer epochs (ints) than ``stronger``."""
    if isinstance(weak, dict) and isinstance(stronger, dict):
        if weak["updates"] >= stronger["updates"]:
            return None
        return (f"undertrained: {weak['updates']:,} updates ({weak['epochs']} epochs of {weak['images']:,} images) "
                f"against the other's {stronger['updates']:,} ({stronger['epochs']} of {stronger['images']:,})")
    weak, stronger = (x["epochs"] if isinstance(x, dict) else x for x in (weak, stronger))
    if isinstance(weak, int) and isinstance(stronger, int) and weak < stronger:
        return f"undertrained: {weak} epochs against the other's {stronger}"
    return None


def _cause(stronger_training: Any, stronger_params: Any, weak_training: Any, weak_params: Any) -> str:
    """Why a net is not more accurate than another: less training (updates, or epochs), fewer
    params, else neither."""
    causes = []
    under = _undertrained(weak_training, stronger_training)
    if under:
        causes.append(under)
    if weak_params is not None and stronger_params is not None and weak_params < stronger_params:
        causes.append(f"smaller: {weak_params:,} params against {stronger_params:,}")
    return "; ".join(causes) or "neither less training nor fewer params: likely undertrained (curve still rising) " \
                                "or a weaker architecture"


def _amount(row: dict, who: str) -> Any:
    """A comparison row's training amount of ``who`` (teacher / searched): updates where known,
    else its epochs."""
    return row.get(f"{who}_training") or row.get(f"{who}_epochs")


def teacher_trend(rows: list[dict[str, Any]]) -> list[str]:
    """One line per break of what DNA+ relies on (:func:`comparison` rows): a generation's
    teacher not more accurate than the previous one's, and the generation-0 teacher not above the
    searched students (the last generation's retrained searched and random nets); each names both
    figures and the likely cause. Empty: the teachers rise as they should."""
    lines = []
    for prev, cur in zip(rows, rows[1:], strict=False):
        a, b = prev.get("teacher_top1"), cur.get("teacher_top1")
        if a is None or b is None or b > a:
            continue
        lines.append(f"gen {cur['generation']}'s teacher (gen {prev['generation']}'s searched net scaled and "
                     f"retrained) reaches {b:.2f}% top-1, not above gen {prev['generation']}'s teacher at "
                     f"{a:.2f}%: likely cause: " + _cause(_amount(prev, "teacher"), prev.get("teacher_params"),
                                                          _amount(cur, "teacher"), cur.get("teacher_params")))
    if rows:
        t0, last = rows[0], rows[-1]
        if t0.get("teacher_top1") is not None and last.get("searched_as") == "retrained":
            for what, top1, params in (("searched", last.get("searched_top1"), last.get("searched_params")),
                                       ("random", last.get("random_top1"), last.get("random_params"))):
                if top1 is None or t0["teacher_top1"] > top1:
                    continue
                amount = _amount(last, "searched")
                lines.append(f"the gen-0 teacher reaches {t0['teacher_top1']:.2f}% top-1, not above the {what} "
                             f"student of gen {last['generation']} at {top1:.2f}%: likely cause: "
                             + _cause(amount, params, _amount(t0, "teacher"), t0.get("teacher_params")))
    return lines


def write_summary(cfg, arch: str | None = None, model: str | None = None, transfer: str | None = None) -> dict:
    """:func:`run_summary`, stored as ``<root>/summary.json``."""
    s = run_summary(cfg, arch, model, transfer)
    storage.write_json(s, run_files(cfg.root).summary)
    return s
