"""KFP component: train the block supernets of one generation, one Ray job per block."""

from kfp import dsl
from kfp.dsl import HTML, Input, Markdown, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_supernets(run_config: str, generation: int, teacher: Input[Model], gpus_per_block: int,
                    max_concurrent_blocks: int, ray_address: str, supernets: Output[Model],
                    metrics: Output[Metrics], report: Output[Markdown], curves: Output[HTML]):
    """``components.fanout.fan_out_blocks("train", ...)``: every block's supernet trains as its
    own Ray job (local Ray without an address / ``RAY_ADDRESS``; the KubeRay cluster's Jobs API
    with ``http://...:8265``). Finished blocks (stored checkpoints) are not trained again."""
    from components import _runtime as rt
    from components import nas_reports, reports
    from components.fanout import fan_out_blocks
    from dna.layout import generation as layout

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    t = rt.read_teacher(teacher)
    rt.log(f"[gen {g}] training block supernets against {t.model}")
    try:
        results = fan_out_blocks("train", cfg, g, t, workers_per_block=max(1, gpus_per_block),
                                 use_gpu=gpus_per_block > 0, max_concurrent=max_concurrent_blocks or None,
                                 ray_address=ray_address or None)
    finally:
        rt.shutdown_ray()
    for k, r in sorted(results.items()):
        rt.log(f"[gen {g}] block {k}: loss {r.get('loss', float('nan')):.4f} after {r.get('epochs')} epochs"
               + (" (cached)" if r.get("cached") else ""))
    rt.log_metrics(metrics, {f"loss.block{k}": r.get("loss") for k, r in results.items()})
    rt.write_pointer(supernets, "supernets", layout(cfg.root, g).supernets, g,
                     blocks={str(k): {"loss": r.get("loss"), "epochs": r.get("epochs")} for k, r in results.items()})
    histories = {k: r["history"] for k, r in results.items() if r.get("history")}
    md = reports.blocks_report("train", results, g, extra=nas_reports.curves_markdown(histories))
    rt.publish_report(md, report, cfg, g, "supernets.md")
    rt.publish_report(nas_reports.supernets_page(histories, g, md), curves, cfg, g, "supernets.html")
