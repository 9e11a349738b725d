"""KFP component: segmentation and detection transfer of the retrained searched backbone."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer(run_config: str, generation: int, arch: Input[Model], model: Input[Model],
             results: Output[Artifact], metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.transfer_step`` of the ``arch`` backbone with the ``model`` weights for the
    run's ``transfer`` tasks (``seg``: DeepLabv3+, ``det``: Faster R-CNN C4, ``cls``):
    ``<root>/gen<g>/transfer/<task>/``; ``results`` points at that folder."""
    from components import _runtime as rt
    from components import reports
    from dna.generation import transfer_step
    from dna.layout import generation as layout
    from dna.progress import reporter
    from dna.run_summary import transfer_results

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    arch_uri, weights = rt.input_uri(arch, "arch"), rt.input_uri(model, "model")
    if cfg.transfer:
        rt.log(f"[gen {g}] transfer: {', '.join(cfg.transfer)}")
        with reporter(f"[gen {g}] transfer", log=rt.log) as show:
            transfer_step(cfg, g, arch=arch_uri, weights=weights, on_epoch_end=show)
    out = layout(cfg.root, g).transfer
    found, samples = transfer_results(cfg, g, out)
    for task, r in found.items():
        rt.log(f"[gen {g}] transfer {task}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float) and k in (
                "miou", "mIoU", "map", "mAP", "map_50", "top1", "pixel_acc")))
        rt.log_metrics(metrics, {k: v for k, v in r.items() if k not in ("history", "config")}, prefix=f"{task}.")
    rt.write_pointer(results, "transfer", out, g, tasks=sorted(found), arch=arch_uri, model=weights)
    rt.publish_report(reports.transfer_report(found, samples, g), report, cfg, g, "transfer.html")
