"""KFP component: rate every path of every block (Algorithm 1), one Ray job per block."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def rate_blocks(run_config: str, generation: int, teacher: Input[Model], supernets: Input[Model],
                gpus_per_block: int, max_concurrent_blocks: int, ray_address: str, scores: Output[Dataset],
                metrics: Output[Metrics], report: Output[Markdown], heatmaps: Output[HTML]):
    """``fan_out_blocks("rate", ...)`` of the ``supernets`` artifact's supernets: writes the scores
    table as Parquet partitions ``<root>/gen<g>/scores/block=<k>/``; blocks already rated are kept.
    Reports: ``rating.md`` (a row per block, the best candidates) and ``rating.html`` (per block the
    op-by-cell loss heatmap of the scores table)."""
    from components import _runtime as rt
    from components import nas_reports, reports
    from components.fanout import fan_out_blocks
    from dna.layout import generation as layout
    from dna.rate.scores import read_scores
    from dna.run_summary import block_histories

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    t = rt.read_teacher(teacher)
    supernets_uri = rt.input_uri(supernets, "supernets")
    rt.log(f"[gen {g}] rating every path of every block")
    try:
        results = fan_out_blocks("rate", cfg, g, t, workers_per_block=1, use_gpu=gpus_per_block > 0,
                                 max_concurrent=max_concurrent_blocks or None, ray_address=ray_address or None,
                                 supernets=supernets_uri)
    finally:
        rt.shutdown_ray()
    scores_uri = layout(cfg.root, g).scores
    top, counts = rt.top_candidates(scores_uri)
    for k in sorted(top):
        rt.log(f"[gen {g}] block {k}: {counts[k]} candidates, best {top[k][0]['ops']} loss {top[k][0]['loss']:.4f}")
    rt.log_metrics(metrics, {"candidates": sum(counts.values()),
                             **{f"best_loss.block{k}": v[0]["loss"] for k, v in top.items()}})
    rt.write_pointer(scores, "scores", scores_uri, g, rows=counts)
    scores.metadata["rows"] = sum(counts.values())
    epochs = {k: h[-1]["epoch"] for k, h in block_histories(supernets_uri, len(results)).items()}
    md = reports.blocks_report("rate", results, g, extra=reports.scores_markdown(top, counts, scores_uri),
                               counts=counts, best={k: v[0]["loss"] for k, v in top.items()}, supernet_epochs=epochs)
    rt.publish_report(md + "\nOp-by-cell loss heatmaps: `rating.html`.\n", report, cfg, g, "rating.md")
    by_block = nas_reports.scores_by_block(read_scores(scores_uri)[0])
    rt.publish_report(nas_reports.rating_page(by_block, g, md), heatmaps, cfg, g, "rating.html")
