"""KFP component (DNA+): scale the searched net, retrain it: the next generation's teacher."""

from kfp import dsl
from kfp.dsl import HTML, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def scale_teacher(run_config: str, generation: int, scale_retrain: str, arch: Input[Model], teacher: Input[Model],
                  scaled: Output[Model], metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.scale_step``: EfficientNet compound scaling (``scale_to``) of the ``arch``
    artifact's net, retrained from scratch under ``<root>/gen<g>/scaled/``. The ``scaled`` artifact
    is the teacher of generation g + 1 (a TeacherConfig JSON). ``scale_retrain``: a JSON object of
    ``RetrainSettings`` fields for this retraining only (empty: the run's ``retrain``)."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import scale_step, teacher_step, with_retrain
    from dna.layout import stage_files
    from dna.progress import reporter
    from dna.run_summary import read_optional_bytes

    rt.setup()
    cfg = with_retrain(rt.load_config(run_config), scale_retrain)
    g = generation
    arch_uri = rt.input_uri(arch, "arch")
    rt.log(f"[gen {g}] scaling the searched net to {cfg.scale_to} and retraining it: the teacher of "
           f"generation {g + 1}")
    with reporter(f"[gen {g}] scaled teacher", log=rt.log) as show:
        out = scale_step(cfg, g, rt.read_teacher(teacher), arch=arch_uri, on_epoch_end=show)
    m = out["metrics"]
    rt.log(f"[gen {g}] scaled teacher: top-1 {m['top1']:.2f}%, params {m['params']:,}, FLOPs {m['flops']:,}")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "params", "flops", "resolution", "epochs")
                             if k in m})
    nxt = teacher_step(cfg, g + 1, arch=out["arch"], weights=out["model"])
    rt.write_teacher(scaled, nxt, g + 1, top1=m["top1"], params=m["params"], flops=m["flops"])
    html = reports.retrain_report(m, read_optional_bytes(stage_files(out["dir"]).curve), storage.read_json(out["arch"]),
                                  title=f"Scaled ({cfg.scale_to}) teacher of generation {g + 1}",
                                  where={"architecture": out["arch"], "weights": out["model"]})
    rt.publish_report(html, report, cfg, g, "scaled.html")
