"""KFP component: exact traversal search of the scores table under the run's constraint."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def search(run_config: str, generation: int, scores: Input[Dataset], arch: Output[Model],
           metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.search_step`` (Algorithm 2, exact): ``<root>/gen<g>/search/arch.json``;
    the ``arch`` artifact is that architecture JSON. The report shows the chosen net, the
    loss-vs-params/FLOPs Pareto fronts and a Fig. 13-style drawing."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import ARCH_FILE, search_step
    from dna.layout import generation as layout

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    gen = layout(cfg.root, g)
    result = search_step(cfg, g)
    best = result["architectures"][0]
    arch_uri = storage.join(gen.search, ARCH_FILE)
    arch_json = storage.read_json(arch_uri)
    rt.log(f"[gen {g}] searched: loss {best['loss']:.4f}, params {best['params']:,}, FLOPs {best['flops']:,}; "
           + " ".join(f"{b['cell']}:{b['ops']}" for b in best["blocks"]))
    pareto_uri = storage.join(gen.search, "pareto.json")
    fronts = rt.read_optional_json(pareto_uri)
    if fronts is None:
        fronts = rt.pareto_fronts(gen.scores)
        storage.write_json(fronts, pareto_uri)
    rt.log_metrics(metrics, {"loss": best["loss"], "params": best["params"], "flops": best["flops"],
                             "pareto_points.params": len(fronts["params"]),
                             "pareto_points.flops": len(fronts["flops"])})
    rt.write_json_artifact(arch, arch_json, uri=arch_uri, loss=best["loss"], params=best["params"],
                           flops=best["flops"], generation=g)
    html = reports.search_report(result, arch_json, fronts, rt.limits(cfg), g,
                                 where={"architecture": arch_uri, "search result": storage.join(gen.search, "result.json"),
                                        "Pareto fronts": pareto_uri, "scores": gen.scores})
    rt.publish_report(html, report, cfg, g, "search.html")
