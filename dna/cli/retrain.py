"""dna retrain ARCH_OR_MODEL --out URI: train a searched/scaled net (or a timm model) from scratch."""

from __future__ import annotations

from dna.cli._common import MAX_STEPS_HELP, add_workers_argument

DATA_SPLITS = ("train", "val")  # an ImageFolder --data is listed and decoded first
HELP = "retrain an architecture JSON or timm model from scratch (paper recipe, optional KD/EMA/RandAugment); resumable"


def add_arguments(p) -> None:
    from types import SimpleNamespace

    from dna.retrain_recipe import FAST_RECIPE, PAPER_RECIPE, SCHEDULES

    d = SimpleNamespace(**PAPER_RECIPE)  # RetrainConfig's defaults (dna.retrain imports torch)
    p.add_argument("model", help="architecture JSON URI (from search/scale) or a timm model name")
    p.add_argument("--out", required=True, help="output folder URI (checkpoint.pt, model.pt, metrics.json, curves)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="builtin:shapes", help="'builtin:shapes' or an ImageFolder root URI")
    g.add_argument("--resolution", type=int, default=None,
                   help="input resolution (default: the model's own, e.g. the architecture's resolution)")
    g.add_argument("--batch-size", type=int, default=64, help="images per batch")
    g.add_argument("--train-size", type=int, default=None, help="built-in data: train samples (default: the data config's, 2000)")
    g.add_argument("--val-size", type=int, default=None, help="built-in data: val samples (default: the data config's, 500)")
    g.add_argument("--num-classes", type=int, default=None, help="built-in data: classes (1..10; default: the data config's, 10)")
    g.add_argument("--rating-size", type=int, default=None,
                   help="images held out of an ImageFolder's train split for rating (not trained on; default: "
                        "the data config's, 256)")
    add_workers_argument(g, dest="num_workers")
    g.add_argument("--auto-augment", default=None, help="timm augmentation policy, e.g. rand-m9-mstd0.5 (default: none)")
    g = p.add_argument_group("optimisation (defaults: the --recipe's)")
    g.add_argument("--recipe", choices=("paper", "fast"), default="paper",
                   help="paper: RMSprop, LR 0.256*batch/4096, x0.97 every 2.4 epochs, label smoothing 0.1, "
                        f"dropout/drop-path 0.2; fast: {', '.join(f'{k}={v}' for k, v in FAST_RECIPE.items())} "
                        "(learns small data in a few epochs)")
    g.add_argument("--optimizer", "--opt", dest="opt", default=None,
                   help=f"timm optimizer name (default: the recipe's; paper: {d.opt})")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's; paper: 0.256 * batch / 4096)")
    recipe = "default: the recipe's; paper: {}"
    g.add_argument("--weight-decay", type=float, default=None,
                   help=f"weight decay ({recipe.format(d.weight_decay)})")
    g.add_argument("--sched", choices=SCHEDULES, default=None, help=f"LR schedule ({recipe.format(d.sched)})")
    g.add_argument("--decay-epochs", type=float, default=None,
                   help=f"epochs between step-schedule LR decays ({recipe.format(d.decay_epochs)})")
    g.add_argument("--decay-rate", type=float, default=None,
                   help=f"LR factor per step-schedule decay ({recipe.format(d.decay_rate)})")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help=f"linear LR warm-up epochs ({recipe.format(d.warmup_epochs)})")
    g.add_argument("--label-smoothing", type=float, default=None,
                   help=f"label smoothing of the cross-entropy ({recipe.format(d.label_smoothing)})")
    g.add_argument("--drop-rate", type=float, default=None,
                   help=f"dropout before the classifier ({recipe.format(d.drop_rate)})")
    g.add_argument("--drop-path-rate", type=float, default=None,
                   help=f"stochastic depth rate ({recipe.format(d.drop_path_rate)})")
    g.add_argument("--ema", action="store_true", help="keep a weight EMA; model.pt then holds the EMA weights")
    g.add_argument("--ema-decay", type=float, default=d.ema_decay, help="decay of the weight EMA (with --ema)")
    g.add_argument("--max-steps", "--steps-per-epoch", dest="steps_per_epoch", type=int, default=None,
                   help=MAX_STEPS_HELP)
    g = p.add_argument_group("knowledge distillation")
    g.add_argument("--teacher", default=None,
                   help="teacher: timm model name or architecture JSON URI (default: no distillation)")
    g.add_argument("--teacher-checkpoint", default=None,
                   help="teacher weights URI (state dict or model.pt; default: none)")
    g.add_argument("--teacher-pretrained", action="store_true", help="timm pretrained teacher (needs the hub)")
    g.add_argument("--kd-alpha", type=float, default=d.kd_alpha,
                   help="weight of the distillation term: (1 - a) * CE + a * T^2 * KL")
    g.add_argument("--kd-temperature", type=float, default=d.kd_temperature, help="distillation temperature T")
    p.add_argument("--seed", type=int, default=0, help="random seed (data, weights, sampling)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def config_from_args(args):
    from dna.data import DataConfig
    from dna.errors import DnaError
    from dna.retrain import FAST_RECIPE, RetrainConfig, model_resolution
    from dna.teacher_config import TeacherConfig

    if args.teacher is None and (args.teacher_checkpoint or args.teacher_pretrained):
        raise DnaError("--teacher-checkpoint/--teacher-pretrained need --teacher NAME_OR_ARCH")
    resolution = args.resolution if args.resolution is not None else model_resolution(args.model)
    data_kw = dict(uri=args.data, resolution=resolution, batch_size=args.batch_size,
                   num_workers=args.num_workers, seed=args.seed, auto_augment=args.auto_augment)
    for name in ("train_size", "val_size", "num_classes", "rating_size"):
        if getattr(args, name) is not None:
            data_kw[name] = getattr(args, name)
    teacher = None
    if args.teacher is not None:
        teacher = TeacherConfig(model=args.teacher, checkpoint=args.teacher_checkpoint,
                                pretrained=args.teacher_pretrained)
    recipe = dict(FAST_RECIPE) if args.recipe == "fast" else {}
    for name in ("opt", "lr", "weight_decay", "sched", "decay_epochs", "decay_rate", "warmup_epochs",
                 "label_smoothing", "drop_rate", "drop_path_rate"):
        if getattr(args, name) is not None:
            recipe[name] = getattr(args, name)
    return RetrainConfig(
        model=args.model, out=args.out, data=DataConfig(**data_kw), epochs=args.epochs,
        ema=args.ema, ema_decay=args.ema_decay, steps_per_epoch=args.steps_per_epoch,
        teacher=teacher, kd_alpha=args.kd_alpha, kd_temperature=args.kd_temperature,
        seed=args.seed, device=args.device, **recipe,
    ).validate()


def run(args) -> dict:
    from dna.progress import reporter
    from dna.retrain import retrain

    cfg = config_from_args(args)
    with reporter("retrain") as show:
        if cfg.model.endswith(".json"):
            from dna import storage
            from dna.space import family_of_arch

            # The architecture's family retrains it (a searched ViT: the DeiT recipe).
            result = dict(family_of_arch(storage.read_json(cfg.model)).retrain(cfg, lr=args.lr, on_epoch_end=show))
        else:
            result = dict(retrain(cfg, on_epoch_end=show))
    result.pop("arch", None)
    return result


def format_text(r: dict) -> str:
    lines = [
        f"{r['status']}: {r['model']} for {r['epochs']} epochs (resumed from epoch {r['resumed_from']})"
        if r.get("status") == "trained" else f"{r.get('status')}: {r['model']}, {r['epochs']} epochs",
        f"top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  best top-1 {r['best_top1']:.2f}% "
        f"(epoch {r['best_epoch']})",
        f"params {r['params']:,}  FLOPs {r['flops']:,} at {r['resolution']} px",
    ]
    for h in r.get("history", []):
        lines.append(f"  epoch {h['epoch']:>3}: train loss {h['train_loss']:.4f}  val loss "
                     f"{h['val_loss']:.4f}  top-1 {h['val_top1']:.2f}%  lr {h['lr']:.3g}")
    lines.append(f"model: {r.get('model_uri')}")
    return "\n".join(lines)
