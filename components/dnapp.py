"""KFP components of DNA++ (SPEC section 8): a ViT supernet trained jointly with its CNN teacher
without labels, rated per block; search, retraining and transfer then run in the final stage.
Thin wrappers over :mod:`dna.dnapp` (``pp_config``: see there). DNA++ trains all blocks in one
(data-parallel) job, because the teacher learns with them.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_pp_supernet(run_config: str, pp_config: str, data: Input[Dataset], supernet: Output[Model],
                      teacher: Output[Model], metrics: Output[Metrics], report: Output[Markdown]):
    """``dna.dnapp.pp_supernet_step`` on the ``data`` artifact's data set: the teacher CNN and the
    ViT supernet of every block, trained jointly (Eq. 10-11) under ``<root>/gen0/supernet/``."""
    from components import _runtime as rt
    from components import reports
    from dna.dnapp import pp_supernet_step, pp_train_config
    from dna.progress import reporter

    rt.setup()
    cfg = rt.load_config(run_config)
    data_cfg = rt.read_data(data)
    tcfg = pp_train_config(cfg, pp_config, data_cfg)
    rt.log(f"[gen 0] DNA++ ({tcfg.mode}): training the ViT supernet ({cfg.space}) with teacher "
           f"{tcfg.teacher_config().model} for {tcfg.epochs} epochs")
    with reporter(f"[gen 0] DNA++ supernet ({tcfg.mode})", log=rt.log) as show:
        out = pp_supernet_step(cfg, pp_config, data_cfg, on_epoch_end=show)
    history = out["metrics"].get("history") or []
    last = history[-1] if history else {}
    rt.log(f"[gen 0] DNA++ supernet: loss {last.get('loss', float('nan')):.4f} after {len(history)} epochs")
    rt.log_metrics(metrics, {k: v for k, v in last.items() if k != "epoch"})
    rt.write_pointer(supernet, "supernets", out["supernets"], 0, mode=tcfg.mode)
    rt.write_teacher(teacher, out["teacher"], 0, trained_jointly=tcfg.mode == "dnapp")
    cols = sorted({k for r in history for k in r if k != "epoch"})
    md = "# DNA++ supernet (all blocks, one job)\n\n" + reports.md_table(
        [[r.get("epoch")] + [reports.fmt(r.get(c)) for c in cols] for r in history], ["epoch", *cols])
    rt.publish_report(md, report, cfg, 0, "supernets.md")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def rate_pp(run_config: str, supernet: Input[Model], scores: Output[Dataset], metrics: Output[Metrics],
            report: Output[Markdown]):
    """``dna.dnapp.pp_rate_step`` of the ``supernet`` artifact's supernet: every (heads, MLP ratio,
    depth) path of every block into ``<root>/gen0/scores/block=<k>/`` (rated blocks are kept)."""
    from components import _runtime as rt
    from components import reports
    from dna.dnapp import pp_rate_step

    rt.setup()
    cfg = rt.load_config(run_config)
    out = pp_rate_step(cfg, supernets=rt.input_uri(supernet, "supernet"), log=rt.log)
    top, counts = rt.top_candidates(out["scores"])
    rt.log_metrics(metrics, {"candidates": sum(counts.values()),
                             **{f"best_loss.block{k}": v[0]["loss"] for k, v in top.items()}})
    rt.write_pointer(scores, "scores", out["scores"], 0, rows=counts)
    scores.metadata["rows"] = sum(counts.values())
    md = reports.blocks_report("rate", out["results"], 0, extra=reports.scores_markdown(top, counts, out["scores"]),
                               counts=counts, best={k: v[0]["loss"] for k, v in top.items()})
    rt.publish_report(md, report, cfg, 0, "rating.md")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def retrain_vit(run_config: str, pp_config: str, generation: int, arch: Input[Model], model: Output[Model],
                metrics: Output[Metrics], report: Output[HTML]):
    """``dna.dnapp.retrain_vit_step`` (DeiT recipe) of the ``arch`` artifact's searched ViT:
    ``<root>/gen<g>/retrain/`` in the same layout as the MBConv retraining."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.dnapp import retrain_vit_step
    from dna.layout import stage_files
    from dna.progress import reporter
    from dna.run_summary import read_optional_bytes

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    arch_uri = rt.input_uri(arch, "arch")
    rt.log(f"[gen {g}] retraining the searched ViT (DeiT recipe)")
    with reporter(f"[gen {g}] retrain ViT", log=rt.log) as show:
        out = retrain_vit_step(cfg, pp_config, g, arch=arch_uri, on_epoch_end=show)
    m = out["metrics"]
    rt.log(f"[gen {g}] retrained: top-1 {m['top1']:.2f}%, params {m['params']:,}, FLOPs {m['flops']:,}")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "best_top1", "params", "flops", "epochs") if k in m})
    rt.copy_to_artifact(out["model"], model)
    model.metadata.update({"uri": out["model"], "top1": m["top1"], "params": m["params"], "flops": m["flops"],
                           "generation": g})
    files = stage_files(out["dir"])
    html = reports.retrain_report(m, read_optional_bytes(files.curve), storage.read_json(arch_uri),
                                  title=f"Retrained searched ViT (generation {g})",
                                  where={"weights": out["model"], "metrics": files.metrics})
    rt.publish_report(html, report, cfg, g, "retrain.html")
