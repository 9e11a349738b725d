"""KFP component: the teacher of generation 0 (trained on the data, or a given checkpoint)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_teacher(run_config: str, generation: int, data: Input[Dataset], teacher: Output[Model],
                  metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.teacher_step`` on the ``data`` artifact's data set: trains the teacher when
    it has no weights (stored ``<root>/gen<g>/teacher/`` is reused), else passes the given
    checkpoint on. The ``teacher`` artifact is the :class:`dna.teacher.TeacherConfig` as JSON."""
    import dataclasses

    from components import _runtime as rt
    from components import reports
    from dna.generation import teacher_step
    from dna.layout import generation as layout
    from dna.progress import reporter
    from dna.run_summary import read_optional_bytes, read_optional_json

    rt.setup()
    cfg = rt.load_config(run_config)
    cfg = dataclasses.replace(cfg, data=rt.read_data(data))
    g = generation
    files = layout(cfg.root, g).teacher_files
    rt.log(f"[gen {g}] teacher")
    with reporter(f"[gen {g}] teacher", log=rt.log) as show:
        t = teacher_step(cfg, g, on_epoch_end=show)
    m = read_optional_json(files.metrics)
    trained = g == 0 and m is not None and not (cfg.teacher.checkpoint or cfg.teacher.pretrained)
    if trained:
        arch = read_optional_json(t.model) if t.model.endswith(".json") else None
        rt.log(f"[gen {g}] teacher {t.model}: top-1 {m['top1']:.2f}% after {m['epochs']} epochs")
        rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "params", "flops", "epochs") if k in m})
        html = reports.retrain_report(m, read_optional_bytes(files.curve), arch,
                                      title=f"Teacher of generation {g} (trained here)",
                                      where={"weights": t.checkpoint or "", "architecture": t.model})
    else:
        html = reports.teacher_given_report(vars(t), g)
    rt.write_teacher(teacher, t, g, trained=trained)
    rt.publish_report(html, report, cfg, g, "teacher.html")
