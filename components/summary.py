"""KFP component: the run's summary (``<root>/summary.json`` and ``summary.html``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def summarize(run_config: str, arch: Input[Model], model: Input[Model], transfer: Input[Artifact],
              summary: Output[Artifact], metrics: Output[Metrics], report: Output[HTML]):
    """:func:`dna.run_summary.write_summary` of the answer the inputs point at (``arch``, the
    retrained ``model``, the ``transfer`` results) and every generation of the run root:
    ``<root>/summary.json`` (the shape :func:`dna.generation.run` returns) and the final report."""
    from components import _runtime as rt
    from components import reports
    from dna.layout import generation as layout
    from dna.layout import run_files
    from dna.run_summary import (
        generation_block_histories,
        read_optional_bytes,
        read_optional_json,
        transfer_results,
        write_summary,
    )

    rt.setup()
    cfg = rt.load_config(run_config)
    arch_uri, model_uri = rt.input_uri(arch, "arch"), rt.input_uri(model, "model")
    tasks = (rt.read_json_artifact(transfer) or {}).get("tasks")
    transfer_uri = rt.input_uri(transfer, "transfer", exists=bool(tasks))   # no task ran: no folder
    s = write_summary(cfg, arch=arch_uri, model=model_uri, transfer=transfer_uri)
    final = s["final"]
    gen = layout(cfg.root, final["generation"])
    _, samples = transfer_results(cfg, final["generation"], transfer_uri)
    html = reports.summary_report(s, read_optional_json(arch_uri), read_optional_json(gen.pareto),
                                  read_optional_bytes(gen.retrain_files.curve), samples,
                                  {g: generation_block_histories(cfg, g) for g in range(cfg.generations)})
    rt.publish_report(html, report, cfg, None, "summary.html")
    rt.write_json_artifact(summary, s, root=cfg.root)
    best, acc = final.get("search") or {}, final.get("retrain") or {}
    rt.log_metrics(metrics, {"params": best.get("params"), "flops": best.get("flops"), "loss": best.get("loss"),
                             "top1": acc.get("top1"), "top5": acc.get("top5")})
    rt.log(f"summary: {run_files(cfg.root).summary}")
    rt.end_run(cfg.root)
