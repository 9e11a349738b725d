"""KFP component: retrain the searched net from scratch (the run's answer)."""

from kfp import dsl
from kfp.dsl import HTML, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def retrain(run_config: str, generation: int, arch: Input[Model], teacher: Input[Model], model: Output[Model],
            metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.retrain_step`` of the ``arch`` artifact's net (distilled from ``teacher``
    when ``kd_alpha`` > 0): ``<root>/gen<g>/retrain/`` (model.pt, metrics.json, curve.png; resumes
    from checkpoint.pt). The ``model`` artifact is a copy of model.pt."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import retrain_step
    from dna.layout import stage_files
    from dna.progress import reporter
    from dna.run_summary import read_optional_bytes

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    arch_uri = rt.input_uri(arch, "arch")
    rt.log(f"[gen {g}] retraining the searched net for {cfg.retrain.epochs} epochs")
    with reporter(f"[gen {g}] retrain", log=rt.log) as show:
        out = retrain_step(cfg, g, rt.read_teacher(teacher), arch=arch_uri, on_epoch_end=show)
    m = out["metrics"]
    rt.log(f"[gen {g}] retrained: top-1 {m['top1']:.2f}%, params {m['params']:,}, FLOPs {m['flops']:,}")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "best_top1", "val_loss", "params", "flops", "epochs")
                             if k in m})
    rt.copy_to_artifact(out["model"], model)
    model.metadata.update({"uri": out["model"], "top1": m["top1"], "params": m["params"], "flops": m["flops"],
                           "generation": g})
    files = stage_files(out["dir"])
    html = reports.retrain_report(m, read_optional_bytes(files.curve), storage.read_json(arch_uri),
                                  title=f"Retrained searched net (generation {g})",
                                  where={"weights": out["model"], "metrics": files.metrics, "curves": files.curve})
    rt.publish_report(html, report, cfg, g, "retrain.html")
