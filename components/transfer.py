"""KFP component: segmentation and detection transfer of the retrained searched backbone."""

from kfp import dsl
from kfp.dsl import HTML, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer(run_config: str, generation: int, arch: Input[Model], model: Input[Model],
             metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.transfer_step`` for the run's ``transfer`` tasks (``seg``: DeepLabv3+,
    ``det``: Faster R-CNN C4, ``cls``): ``<root>/gen<g>/transfer/<task>/``."""
    from components import _runtime as rt
    from components import reports

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    if cfg.transfer:
        from dna.generation import transfer_step

        rt.log(f"[gen {g}] transfer: {', '.join(cfg.transfer)}")
        transfer_step(cfg, g)
    results, samples = rt.transfer_results(cfg, g)
    for task, r in results.items():
        rt.log(f"[gen {g}] transfer {task}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float) and k in (
                "miou", "mIoU", "map", "mAP", "map_50", "top1", "pixel_acc")))
        rt.log_metrics(metrics, {k: v for k, v in r.items() if k not in ("history", "config")}, prefix=f"{task}.")
    rt.publish_report(reports.transfer_report(results, samples, g), report, cfg, g, "transfer.html")
