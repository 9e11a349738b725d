"""Argument groups shared by several sub-commands (data, teacher, device).

One name per concept across sub-commands (the canonical flag first, the old spellings after it as
aliases of the same dest): ``--num-workers`` (alias ``--workers``), ``--teacher-pretrained``
(alias ``--pretrained``), ``--max-steps`` (per-epoch cap on training steps; ``dna retrain``'s
``--steps-per-epoch`` and ``dna transfer``'s ``--max-train-batches`` are aliases) and
``--optimizer`` (``dna retrain``'s ``--opt``). The configs are imported where they are built,
not here: building the parser must not import torch.
"""

from __future__ import annotations

WORKERS = ("--num-workers", "--workers")
TEACHER_PRETRAINED = ("--teacher-pretrained", "--pretrained")
WORKERS_HELP = "data loader worker processes (0: load in the main process)"
MAX_STEPS_HELP = "cap on training steps (batches) per epoch (default: the whole training split)"


def add_workers_argument(g, dest: str = "workers") -> None:
    g.add_argument(*WORKERS, dest=dest, type=int, default=0, help=WORKERS_HELP)


def add_data_arguments(p, resolution: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="builtin:shapes",
                   help="'builtin:shapes' (generated, the default) or an ImageFolder root (local or s3://)")
    g.add_argument("--resolution", type=int, default=resolution or 32, help="input resolution in pixels")
    g.add_argument("--batch-size", type=int, default=64, help="images per batch")
    g.add_argument("--train-size", type=int, default=2000, help="built-in data: training images")
    g.add_argument("--val-size", type=int, default=500, help="built-in data: validation images")
    g.add_argument("--rating-size", type=int, default=256, help="images held out of train for rating")
    g.add_argument("--num-classes", type=int, default=10, help="built-in data: classes")
    add_workers_argument(g)
    g.add_argument("--seed", type=int, default=0, help="random seed (data, weights, sampling)")


def data_config(args):
    from dna.data import DataConfig

    return DataConfig(uri=args.data, resolution=args.resolution, batch_size=args.batch_size,
                      num_workers=args.workers, train_size=args.train_size, val_size=args.val_size,
                      rating_size=args.rating_size, num_classes=args.num_classes, seed=args.seed)


def add_teacher_arguments(p) -> None:
    g = p.add_argument_group("teacher")
    g.add_argument("--teacher", default="efficientnet_b0",
                   help="timm model name or architecture .json URI (default efficientnet_b0)")
    g.add_argument("--teacher-checkpoint", default=None,
                   help="URI of the teacher's weights (default: none; random or --teacher-pretrained weights)")
    g.add_argument(*TEACHER_PRETRAINED, dest="pretrained", action="store_true",
                   help="timm pretrained teacher weights (needs the model hub)")


def teacher_config(args):
    from dna.teacher_config import TeacherConfig

    return TeacherConfig(model=args.teacher, checkpoint=args.teacher_checkpoint, pretrained=args.pretrained,
                         num_classes=getattr(args, "num_classes", None))
