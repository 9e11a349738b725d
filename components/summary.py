"""KFP component: the run's summary (``<root>/summary.json`` and ``summary.html``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def summarize(run_config: str, model: Input[Model], transfer_metrics: Input[Metrics], summary: Output[Artifact],
              metrics: Output[Metrics], report: Output[HTML]):
    """Collect the answer (architecture, params, FLOPs, accuracy, transfer) and every
    generation from the run root; write ``<root>/summary.json`` and the final report."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.layout import generation as layout

    rt.setup()
    cfg = rt.load_config(run_config)
    s = rt.run_summary(cfg)
    storage.write_json(s, storage.join(cfg.root, "summary.json"))
    final = s["final"]
    gen = layout(cfg.root, final["generation"])
    arch = rt.read_optional_json(final["arch"])
    fronts = rt.read_optional_json(storage.join(gen.search, "pareto.json"))
    curve = rt.read_optional_bytes(storage.join(gen.retrain, "curve.png"))
    _, samples = rt.transfer_results(cfg, final["generation"])
    html = reports.summary_report(s, arch, fronts, curve, samples)
    rt.publish_report(html, report, cfg, None, "summary.html")
    rt.write_json_artifact(summary, s, root=cfg.root)
    best, acc = final.get("search") or {}, final.get("retrain") or {}
    rt.log_metrics(metrics, {"params": best.get("params"), "flops": best.get("flops"), "loss": best.get("loss"),
                             "top1": acc.get("top1"), "top5": acc.get("top5")})
    rt.log(f"summary: {storage.join(cfg.root, 'summary.json')}")
