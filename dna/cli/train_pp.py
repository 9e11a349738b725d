"""dna train-pp: train every block of a ViT supernet in one job, DNA++ (joint, self-supervised)
or DNA (frozen teacher); optionally rate it right away.

The rest of the ViT pipeline:
  rating   ``dna train-pp ... --scores URI`` here, or ``dna.ssl.rate_vit(ViTRateConfig(supernet=OUT,
           out=URI))`` (what ``dna rate`` calls for a ViT space);
  search   ``dna search`` on the scores (``dna.search.search`` reads the same scores table);
  build    ``dna.model.vit.build_vit(space, ["h8-r3.5-d4", ...])``, ``summarize_vit(arch JSON)``
           (what ``dna build`` calls for a ViT architecture JSON);
  retrain  ``dna.retrain_vit.retrain_vit(RetrainViTConfig(arch=..., out=...))``.
"""

from __future__ import annotations

from dna.cli._common import MAX_STEPS_HELP, TEACHER_PRETRAINED, add_data_arguments, data_config

OUTPUTS = ("out", "scores")  # checked writable before training (dna.cli._preflight)
HELP = "train a ViT supernet for all blocks at once: DNA++ (teacher trained jointly, no labels) or DNA"


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="folder URI for checkpoint.pt and teacher.pt (resumes)")
    p.add_argument("--space", default="vit-tiny", help="ViT space name (vit, vit-tiny) or .json URI")
    p.add_argument("--mode", choices=("dnapp", "dna"), default="dnapp",
                   help="dnapp: joint self-supervised (default); dna: distil from a frozen teacher (MSE)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--lr", type=float, default=None,
                   help="start LR (default: 0.0025 per 256 images with LARS for dnapp, 5e-4 per 256 with AdamW for "
                        "dna); on the small built-in data try --lr 0.2 for dnapp")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay (default: 1e-6 for dnapp's LARS, 0.05 for dna's AdamW)")
    p.add_argument("--trust-coeff", type=float, default=0.001, help="LARS trust coefficient")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear LR warm-up epochs")
    p.add_argument("--proj-dim", type=int, default=256, help="DNA++ projector output width")
    p.add_argument("--proj-hidden", type=int, default=256, help="DNA++ projector hidden width")
    p.add_argument("--lambda-1", type=float, default=None, help="Eq. 10 invariance weight (default 25/C)")
    p.add_argument("--lambda-2", type=float, default=None, help="Eq. 10 covariance weight (default C)")
    p.add_argument("--lambda-3", type=float, default=12.5, help="Eq. 11 variance weight")
    p.add_argument("--gamma", type=float, default=1.0, help="Eq. 11 target std")
    p.add_argument("--max-steps", type=int, default=None, help=MAX_STEPS_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    p.add_argument("--scores", default=None, help="after training, rate every path and write the scores here (default: no rating)")
    g = p.add_argument_group("teacher")
    g.add_argument("--teacher", default=None,
                   help="timm CNN name, architecture .json URI or 'efficientnet-tiny' (default: efficientnet_b1 "
                        "for spaces >= 128 px, else efficientnet-tiny)")
    g.add_argument("--teacher-checkpoint", default=None,
                   help="URI of initial (dnapp) or frozen (dna) teacher weights (default: none)")
    g.add_argument(*TEACHER_PRETRAINED, dest="pretrained", action="store_true",
                   help="timm pretrained teacher weights (needs the model hub)")
    add_data_arguments(p)


def run(args) -> dict:
    from dna.ssl import PPTrainConfig, ViTRateConfig, rate_vit, train_pp
    from dna.ssl.loss import PPLossConfig
    from dna.teacher_config import TeacherConfig

    data = data_config(args)
    data.augment = False
    teacher = None
    if args.teacher or args.teacher_checkpoint or args.pretrained:
        from dna.space.vit import vit_space
        from dna.ssl.teacher import default_teacher

        teacher = TeacherConfig(model=args.teacher or default_teacher(vit_space(args.space)),
                                checkpoint=args.teacher_checkpoint, pretrained=args.pretrained)
    cfg = PPTrainConfig(
        out=args.out, space=args.space, mode=args.mode, teacher=teacher, data=data, epochs=args.epochs,
        lr=args.lr, weight_decay=args.weight_decay, trust_coeff=args.trust_coeff,
        warmup_epochs=args.warmup_epochs, proj_dim=args.proj_dim, proj_hidden=args.proj_hidden,
        loss=PPLossConfig(lambda_1=args.lambda_1, lambda_2=args.lambda_2, lambda_3=args.lambda_3, gamma=args.gamma),
        max_steps_per_epoch=args.max_steps, seed=args.seed, device=args.device,
    )
    from dna.progress import reporter

    with reporter(f"train-pp {args.mode}") as show:
        metrics = train_pp(cfg, on_epoch_end=show)
    result = {k: v for k, v in metrics.items() if k != "history"}
    if metrics.get("history"):
        result.update({k: v for k, v in metrics["history"][-1].items() if k not in result and k != "epoch"})
    if args.scores:
        rated = rate_vit(ViTRateConfig(supernet=args.out, out=args.scores, device=args.device))
        result.update(scores=rated["scores"], rows=rated["rows"])
    return result


def format_text(r: dict) -> str:
    lines = [f"{r.get('mode')} on space {r.get('space')} with teacher {r.get('teacher')}: "
             f"{r.get('epochs')} epochs, loss {r.get('loss'):.4g}" if r.get("loss") is not None else str(r)]
    for k in ("invariance", "covariance", "variance"):
        if k in r:
            lines.append(f"  {k}: {r[k]:.4g}")
    lines.append(f"checkpoint: {r.get('out')}")
    if r.get("scores"):
        lines.append(f"scores: {r['scores']} ({r['rows']} rows)")
    return "\n".join(lines)
