"""KFP components of DNA++ (SPEC section 8): a ViT supernet trained jointly with its CNN teacher
without labels, rated per block; search, retraining and transfer then run in the final stage.

``pp_config`` (JSON) holds what the run config does not: ``{"train": PPTrainConfig fields
(mode, lr, weight_decay, warmup_epochs, proj_dim, proj_hidden, loss: {...}, ...),
"retrain": RetrainViTConfig fields (warmup_epochs, mixup, cutmix, reprob, weight_decay, ...)}``.
DNA++ trains all blocks in one (data-parallel) job, because the teacher learns with them.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_pp_supernet(run_config: str, pp_config: str, data: Input[Dataset], supernet: Output[Model],
                      teacher: Output[Model], metrics: Output[Metrics], report: Output[Markdown]):
    """``dna.ssl.train_pp``: the teacher CNN and the ViT supernet of every block, trained jointly
    (Eq. 10-11) under ``<root>/gen0/supernet/`` (resumes from checkpoint.pt)."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.layout import generation as layout
    from dna.ssl import train_pp
    from dna.ssl.train import TEACHER

    rt.setup()
    cfg = rt.load_config(run_config)
    gen = layout(cfg.root, 0)
    tcfg = rt.pp_train_config(cfg, pp_config)
    rt.log(f"[gen 0] DNA++ ({tcfg.mode}): training the ViT supernet ({cfg.space}) with teacher "
           f"{tcfg.teacher_config().model} for {tcfg.epochs} epochs")
    m = train_pp(tcfg)
    history = m.get("history") or []
    last = history[-1] if history else {}
    rt.log(f"[gen 0] DNA++ supernet: loss {last.get('loss', float('nan')):.4f} after {len(history)} epochs")
    rt.log_metrics(metrics, {k: v for k, v in last.items() if k != "epoch"})
    rt.write_json_artifact(supernet, {"format": rt.POINTER_FORMAT, "kind": "supernets", "uri": gen.supernets,
                                      "generation": 0, "mode": tcfg.mode}, uri=gen.supernets, generation=0)
    t = tcfg.teacher_config()
    joint = storage.join(gen.supernets, TEACHER)
    rt.write_teacher(teacher, type(t)(model=t.model, checkpoint=joint if storage.exists(joint) else t.checkpoint),
                     0, trained_jointly=tcfg.mode == "dnapp")
    cols = sorted({k for r in history for k in r if k != "epoch"})
    md = "# DNA++ supernet (all blocks, one job)\n\n" + reports.md_table(
        [[r.get("epoch")] + [reports.fmt(r.get(c)) for c in cols] for r in history], ["epoch", *cols])
    rt.publish_report(md, report, cfg, 0, "supernets.md")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def rate_pp(run_config: str, supernet: Input[Model], scores: Output[Dataset], metrics: Output[Metrics],
            report: Output[Markdown]):
    """``dna.ssl.rate_vit``: every (heads, MLP ratio, depth) path of every block into the scores
    table ``<root>/gen0/scores/block=<k>/`` (blocks already rated are kept)."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.layout import generation as layout
    from dna.space import get_space
    from dna.ssl import ViTRateConfig, rate_vit

    rt.setup()
    cfg = rt.load_config(run_config)
    gen = layout(cfg.root, 0)
    results = {}
    for k in range(len(get_space(cfg.space).blocks)):
        if storage.exists(storage.join(gen.scores, f"block={k}", storage.PART_FILE)):
            results[k] = {"cached": True}
            continue
        rt.log(f"[gen 0] rating block {k}")
        r = rate_vit(ViTRateConfig(supernet=gen.supernets, out=gen.scores, block=k, max_batches=cfg.rate_max_batches,
                                   generation=0, device=cfg.device))
        results[k] = {"rows": r["rows"]}
    top, counts = rt.top_candidates(gen.scores)
    rt.log_metrics(metrics, {"candidates": sum(counts.values()),
                             **{f"best_loss.block{k}": v[0]["loss"] for k, v in top.items()}})
    rt.write_json_artifact(scores, {"format": rt.POINTER_FORMAT, "kind": "scores", "uri": gen.scores,
                                    "generation": 0, "rows": counts}, uri=gen.scores, rows=sum(counts.values()))
    md = reports.blocks_report("rate", results, 0, extra=reports.scores_markdown(top, counts, gen.scores))
    rt.publish_report(md, report, cfg, 0, "rating.md")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def retrain_vit(run_config: str, pp_config: str, generation: int, arch: Input[Model], model: Output[Model],
                metrics: Output[Metrics], report: Output[HTML]):
    """``dna.retrain_vit.retrain_vit`` (DeiT recipe, ``pp_config["retrain"]`` overrides) of the
    searched ViT: ``<root>/gen<g>/retrain/`` in the same layout as the MBConv retraining."""
    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.generation import ARCH_FILE
    from dna.layout import generation as layout
    from dna.retrain_vit import retrain_vit as run_retrain

    rt.setup()
    cfg = rt.load_config(run_config)
    g = generation
    gen = layout(cfg.root, g)
    rcfg = rt.retrain_vit_config(cfg, pp_config, storage.join(gen.search, ARCH_FILE), gen.retrain)
    rt.log(f"[gen {g}] retraining the searched ViT for {rcfg.epochs} epochs")
    m = run_retrain(rcfg)
    rt.log(f"[gen {g}] retrained: top-1 {m['top1']:.2f}%, params {m['params']:,}, FLOPs {m['flops']:,}")
    rt.log_metrics(metrics, {k: m[k] for k in ("top1", "top5", "best_top1", "params", "flops", "epochs") if k in m})
    weights = storage.join(gen.retrain, "model.pt")
    rt.copy_to_artifact(weights, model)
    model.metadata.update({"uri": weights, "top1": m["top1"], "params": m["params"], "flops": m["flops"],
                           "generation": g})
    arch_json = storage.read_json(storage.join(gen.search, ARCH_FILE))
    html = reports.retrain_report(m, rt.read_optional_bytes(storage.join(gen.retrain, "curve.png")), arch_json,
                                  title=f"Retrained searched ViT (generation {g})",
                                  where={"weights": weights, "metrics": storage.join(gen.retrain, "metrics.json")})
    rt.publish_report(html, report, cfg, g, "retrain.html")
