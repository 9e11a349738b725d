"""KFP component: exact traversal search of the scores table under the run's constraint."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def search(run_config: str, generation: int, scores: Input[Dataset], arch: Output[Model],
           metrics: Output[Metrics], report: Output[HTML]):
    """``dna.generation.search_step`` (Algorithm 2, exact) of the ``scores`` artifact's table:
    ``<root>/gen<g>/search/arch.json``; the ``arch`` artifact is that architecture JSON. The report
    shows the chosen net, the loss-vs-params/FLOPs Pareto fronts and a Fig. 13-style drawing."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import search_step
    from dna.layout import generation as layout
    from dna.run_summary import limits, read_optional_json

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    gen = layout(cfg.root, g)
    scores_uri = rt.input_uri(scores, "scores")
    result = search_step(cfg, g, scores=scores_uri)
    best = result["architectures"][0]
    arch_json = storage.read_json(gen.search_arch)
    rt.log(f"[gen {g}] searched: loss {best['loss']:.4f}, params {best['params']:,}, FLOPs {best['flops']:,}; "
           + " ".join(f"{b['cell']}:{b['ops']}" for b in best["blocks"]))
    fronts = read_optional_json(gen.pareto)
    if fronts is None:
        fronts = rt.pareto_fronts(scores_uri)
        storage.write_json(fronts, gen.pareto)
    rt.log_metrics(metrics, {"loss": best["loss"], "params": best["params"], "flops": best["flops"],
                             "pareto_points.params": len(fronts["params"]),
                             "pareto_points.flops": len(fronts["flops"])})
    rt.write_json_artifact(arch, arch_json, uri=gen.search_arch, loss=best["loss"], params=best["params"],
                           flops=best["flops"], generation=g)
    html = reports.search_report(result, arch_json, fronts, limits(cfg), g,
                                 where={"architecture": gen.search_arch, "search result": gen.search_result,
                                        "Pareto fronts": gen.pareto, "scores": scores_uri})
    rt.publish_report(html, report, cfg, g, "search.html")
