"""Argument groups shared by several sub-commands (data, teacher, device)."""

from __future__ import annotations

from dna.data import DataConfig
from dna.teacher import TeacherConfig


def add_data_arguments(p, resolution: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="builtin:shapes",
                   help="'builtin:shapes' (generated, the default) or an ImageFolder root (local or s3://)")
    g.add_argument("--resolution", type=int, default=resolution or 32, help="input resolution in pixels")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--train-size", type=int, default=2000, help="built-in data: training images")
    g.add_argument("--val-size", type=int, default=500, help="built-in data: validation images")
    g.add_argument("--rating-size", type=int, default=256, help="images held out of train for rating")
    g.add_argument("--num-classes", type=int, default=10, help="built-in data: classes")
    g.add_argument("--workers", type=int, default=0, help="data loader workers")
    g.add_argument("--seed", type=int, default=0)


def data_config(args) -> DataConfig:
    return DataConfig(uri=args.data, resolution=args.resolution, batch_size=args.batch_size,
                      num_workers=args.workers, train_size=args.train_size, val_size=args.val_size,
                      rating_size=args.rating_size, num_classes=args.num_classes, seed=args.seed)


def add_teacher_arguments(p) -> None:
    g = p.add_argument_group("teacher")
    g.add_argument("--teacher", default="efficientnet_b0",
                   help="timm model name or architecture .json URI (default efficientnet_b0)")
    g.add_argument("--teacher-checkpoint", default=None, help="URI of the teacher's weights")
    g.add_argument("--pretrained", action="store_true", help="timm pretrained weights (needs the model hub)")


def teacher_config(args) -> TeacherConfig:
    return TeacherConfig(model=args.teacher, checkpoint=args.teacher_checkpoint, pretrained=args.pretrained,
                         num_classes=getattr(args, "num_classes", None))
