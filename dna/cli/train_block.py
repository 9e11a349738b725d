"""dna train-block: train one block's student supernet against the teacher (resumable)."""

from __future__ import annotations

import sys

from dna.cli._common import (
    MAX_STEPS_HELP,
    add_data_arguments,
    add_teacher_arguments,
    data_config,
    teacher_config,
)

OUTPUTS = ("supernets",)  # checked writable before training (dna.cli._preflight)
HELP = "train one block's student supernet against the frozen teacher (checkpoints; resumes)"


def add_arguments(p) -> None:
    p.add_argument("--block", type=int, required=True, help="0-based block index")
    p.add_argument("--supernets", required=True, help="folder URI; the block is written to <folder>/block<K>/")
    p.add_argument("--space", default="mbconv-tiny", help="search space name or .json URI")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of the block")
    p.add_argument("--lr", type=float, default=None, help="default 0.002 for block 0, 0.005 for the rest")
    p.add_argument("--lr-decay", type=float, default=0.9, help="learning-rate factor per epoch")
    p.add_argument("--max-steps", type=int, default=None, help=MAX_STEPS_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    add_teacher_arguments(p)
    add_data_arguments(p)


def run(args) -> dict:
    from dna.layout import block_dir
    from dna.lease import Lease
    from dna.progress import reporter
    from dna.train.block import BlockTrainConfig, train_block

    cfg = BlockTrainConfig(
        block=args.block, out=block_dir(args.supernets, args.block), space=args.space,
        teacher=teacher_config(args), data=data_config(args), epochs=args.epochs, lr=args.lr,
        lr_decay=args.lr_decay, max_steps_per_epoch=args.max_steps, seed=args.seed, device=args.device,
    )
    # two trainings of one block would overwrite each other's checkpoint every epoch
    with Lease(cfg.out, what="block folder", log=lambda m: print(m, file=sys.stderr)), \
            reporter("train-block") as show:
        metrics = train_block(cfg, on_epoch_end=show)
    return {k: v for k, v in metrics.items() if k != "history"} | {"out": cfg.out}
