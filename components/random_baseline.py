"""KFP component: one random architecture of the searched net's params budget, trained like it."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def random_baseline(run_config: str, generation: int, scale_retrain: str, arch: Input[Model], teacher: Input[Model],
                    baseline: Output[Artifact], metrics: Output[Metrics], report: Output[HTML]):
    """``dna.random_baseline.random_baseline_step`` against the ``arch`` artifact's searched net:
    a seeded random architecture within +-10% of its params, under ``<root>/gen<g>/random/``,
    scaled and retrained with ``scale_retrain`` as the next teacher is (generations before the
    last), else retrained with the run's ``retrain`` as the final net is. The ``baseline`` artifact
    holds its metrics; with ``random_baseline`` off in the run config it says so and trains nothing."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.layout import stage_files
    from dna.progress import reporter
    from dna.random_baseline import random_baseline_step
    from dna.run_summary import read_optional_bytes, short_metrics

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    arch_uri, searched_teacher = rt.input_uri(arch, "arch"), rt.read_teacher(teacher)
    if not cfg.random_baseline:
        rt.log(f"[gen {g}] random baseline: off (random_baseline=false)")
        rt.write_json_artifact(baseline, {"generation": g, "skipped": True}, generation=g)
        rt.publish_report(reports.html_page(f"Random baseline of generation {g}", [reports.section(
            "Off", "<p>random_baseline is false in the run config: no random architecture was trained.</p>")]),
            report, cfg, g, "random.html")
        return
    final = g == cfg.generations - 1
    if not final:
        from dna.generation import with_retrain

        cfg = with_retrain(cfg, scale_retrain)      # the recipe of the scaled net it is compared with
    how = "retrained" if final else f"scaled to {cfg.scale_to} and retrained"
    rt.log(f"[gen {g}] random baseline: a random architecture of the searched net's params (+-10%), {how} "
           f"for {cfg.retrain.epochs} epochs like it")
    with reporter(f"[gen {g}] random baseline", log=rt.log) as show:
        out = random_baseline_step(cfg, g, searched_teacher, arch=arch_uri, on_epoch_end=show)
    m = out["metrics"]
    rt.log(f"[gen {g}] random baseline: top-1 {m['top1']:.2f}%, params {m['params']:,} "
           f"(drawn at {out['sample'].get('params', 0):,} for a searched {out['sample'].get('target_params', 0):,})")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "params", "flops", "epochs") if k in m})
    rt.write_json_artifact(baseline, {"generation": g, "arch": out["arch"], "trained_arch": out["trained_arch"],
                                      "scaled": out["scaled"], "sample": out["sample"],
                                      "metrics": short_metrics(m)},
                           uri=out["dir"], top1=m["top1"], params=m["params"], generation=g)
    html = reports.retrain_report(m, read_optional_bytes(stage_files(out["dir"]).curve),
                                  storage.read_json(out["trained_arch"]),
                                  title=f"Random architecture of generation {g} ({how} like the searched net)",
                                  where={"architecture": out["trained_arch"], "weights": out["model"]})
    rt.publish_report(html, report, cfg, g, "random.html")
