"""KFP component: retrain the searched net from scratch (the run's answer)."""

from kfp import dsl
from kfp.dsl import HTML, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def retrain(run_config: str, generation: int, arch: Input[Model], teacher: Input[Model], model: Output[Model],
            metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.retrain_step``: ``<root>/gen<g>/retrain/`` (model.pt, metrics.json,
    curve.png; resumes from checkpoint.pt). The ``model`` artifact is a copy of model.pt."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import ARCH_FILE, retrain_step
    from dna.layout import generation as layout

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    gen = layout(cfg.root, g)
    rt.log(f"[gen {g}] retraining the searched net for {cfg.retrain.epochs} epochs")
    out = retrain_step(cfg, g, rt.read_teacher(teacher))
    m = out["metrics"]
    rt.log(f"[gen {g}] retrained: top-1 {m['top1']:.2f}%, params {m['params']:,}, FLOPs {m['flops']:,}")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "best_top1", "val_loss", "params", "flops", "epochs")
                             if k in m})
    rt.copy_to_artifact(out["model"], model)
    for k in ("top1", "params", "flops"):
        model.metadata[k] = m[k]
    model.metadata["uri"] = out["model"]
    model.metadata["generation"] = g
    arch_json = storage.read_json(storage.join(gen.search, ARCH_FILE))
    html = reports.retrain_report(m, rt.read_optional_bytes(storage.join(gen.retrain, "curve.png")), arch_json,
                                  title=f"Retrained searched net (generation {g})",
                                  where={"weights": out["model"], "metrics": storage.join(gen.retrain, "metrics.json"),
                                         "curves": storage.join(gen.retrain, "curve.png")})
    rt.publish_report(html, report, cfg, g, "retrain.html")
