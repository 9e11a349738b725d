"""Train one block's student supernet against the frozen teacher (SPEC section 4, Eq. 6).

A block needs nothing but the teacher: its input is the teacher's map entering the block, its
target the teacher's map leaving it, the loss is MSE. In every step every cell sees the same
batch and every layer samples one op uniformly (seeded). Blocks are independent, so each call
trains one block and checkpoints it every epoch under its own folder; a rerun resumes from the
last finished epoch, and nothing assumes blocks share a process.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from dna import storage
from dna.data import DataConfig, make_loader
from dna.device import autocast, memory_format, resolve_device
from dna.errors import DnaError
from dna.space import get_space
from dna.supernet import BlockSupernet
from dna.teacher import BlockTeacher, TeacherConfig, load_teacher_model


@dataclass
class BlockTrainConfig:
    block: int
    out: str                                # folder URI for this block's checkpoints
    space: str = "mbconv-tiny"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 20
    lr: float | None = None                 # default: 0.002 for block 0, 0.005 for the rest
    lr_decay: float = 0.9                   # per epoch
    max_steps_per_epoch: int | None = None
    seed: int = 0
    device: str | None = None

    def validate(self) -> None:
        space = get_space(self.space)
        space.check_block(self.block)
        if self.epochs < 1:
            raise DnaError(f"epochs={self.epochs}: expected at least 1")
        if self.lr is not None and not self.lr > 0:
            raise DnaError(f"lr={self.lr}: expected a positive learning rate")
        if not 0 < self.lr_decay <= 1:
            raise DnaError(f"lr_decay={self.lr_decay}: expected 0 < lr_decay <= 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.002 if self.block == 0 else 0.005)


def checkpoint_uri(out: str) -> str:
    return storage.join(out, "supernet.pt")


def build_block_teacher(space, teacher_cfg: TeacherConfig, model=None) -> BlockTeacher:
    if model is None:
        model = load_teacher_model(teacher_cfg)
    return BlockTeacher(model, len(space.blocks), name=teacher_cfg.model)


def check_strides(space, teacher: BlockTeacher, resolution: int) -> None:
    """The teacher's stage strides must match the space's block strides."""
    x = torch.zeros(1, 3, resolution, resolution)
    sizes = [f.shape[-1] for f in teacher.features(x)]
    for k, blk in enumerate(space.blocks):
        expect = -(-sizes[k] // blk.stride)
        if sizes[k + 1] != expect:
            raise DnaError(
                f"teacher {teacher.name!r} stage for block {k} maps {sizes[k]}px to {sizes[k + 1]}px, "
                f"but the space's block {k} has stride {blk.stride}"
            )


def make_supernet(space, block: int, teacher: BlockTeacher) -> BlockSupernet:
    return BlockSupernet(space, block, teacher.in_channels(block), teacher.out_channels(block))


def train_block(cfg: BlockTrainConfig, teacher: BlockTeacher | None = None, progress=None) -> dict:
    """Train (or resume, or return the finished) supernet of ``cfg.block``; returns its metrics."""
    cfg.validate()
    space = get_space(cfg.space)
    device = resolve_device(cfg.device)
    ckpt_uri = checkpoint_uri(cfg.out)
    state = storage.load_torch(ckpt_uri) if storage.exists(ckpt_uri) else None
    if state is not None and state["epoch"] >= cfg.epochs:
        return state["metrics"]

    teacher = teacher or build_block_teacher(space, cfg.teacher)
    check_strides(space, teacher, cfg.data.resolution)
    torch.manual_seed(cfg.seed + 1000 * cfg.block)
    net = make_supernet(space, cfg.block, teacher)
    mf = memory_format(device)
    net.to(device, memory_format=mf)
    teacher.to(device, memory_format=mf)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + cfg.block)
    history: list[dict] = []
    start = 0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        history = state["history"]
        start = state["epoch"]

    loader = make_loader(cfg.data, "train", shuffle=True)
    for epoch in range(start, cfg.epochs):
        net.train()
        t0 = time.time()
        total, count, images = 0.0, 0, 0
        for step, batch in enumerate(loader):
            if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
                break
            x = batch[0].to(device, memory_format=mf)
            with autocast(device):
                inp, target = teacher.block_io(x, cfg.block)
                loss = 0.0
                for c, ops in enumerate(net.sample(gen)):
                    loss = loss + F.mse_loss(net(inp, c, ops).float(), target.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() / len(net.cells)
            count += 1
            images += x.shape[0]
            if progress is not None:
                progress(epoch=epoch, step=step, loss=loss.item())
        sched.step()
        seconds = time.time() - t0
        history.append({"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": seconds,
                        "images_per_s": images / max(seconds, 1e-9)})
        metrics = {"block": cfg.block, "epochs": epoch + 1, "loss": history[-1]["loss"], "history": history}
        storage.save_torch({
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "generator": gen.get_state(),
            "epoch": epoch + 1,
            "history": history,
            "metrics": metrics,
            "config": {"space": cfg.space, "block": cfg.block, "teacher": asdict(cfg.teacher),
                       "teacher_in": teacher.in_channels(cfg.block),
                       "teacher_out": teacher.out_channels(cfg.block)},
        }, ckpt_uri)
    return metrics


def load_supernet(out: str, space, teacher: BlockTeacher, block: int) -> BlockSupernet:
    """The trained supernet of one block from its checkpoint folder."""
    uri = checkpoint_uri(out)
    if not storage.exists(uri):
        raise DnaError(f"no trained supernet for block {block} at {uri}: run `dna train-block` first")
    state = storage.load_torch(uri)
    net = make_supernet(space, block, teacher)
    net.load_state_dict(state["model"])
    return net.eval()
