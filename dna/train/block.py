"""Train one block's student supernet against the frozen teacher (SPEC section 4, Eq. 6).

A block needs nothing but the teacher: its input is the teacher's map entering the block, its
target the teacher's map leaving it, the loss is MSE. In every step every cell sees the same
batch and every layer samples one op uniformly (seeded). Blocks are independent, so each call
trains one block and checkpoints it every epoch under its own folder; a rerun resumes exactly after
the last finished epoch (weights, optimizer, schedule and every random stream, :mod:`dna.train.state`)
and refuses a checkpoint written with other settings. Nothing assumes blocks share a process.

Data parallel: called in every process of an initialised ``torch.distributed`` group (e.g. the
workers of a Ray ``TorchTrainer``), each rank trains on its shard of every global batch
(``batch_size // world`` images), gradients are averaged across ranks after each backward pass
(every rank samples the same ops from the same seeded generator, so the same parameters get
gradients), BatchNorm statistics are averaged at the end of each epoch, and rank 0 alone writes
the checkpoint. One process (no group) is the plain single-device loop.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from dna import storage
from dna.data import make_dataset, make_loader
from dna.device import autocast, memory_format, resolve_device
from dna.errors import DnaError
from dna.layout import block_supernet
from dna.progress import OnEpochEnd, epoch_end
from dna.space import get_family, get_space
from dna.supernet import BlockSupernet
from dna.teacher import BlockTeacher, TeacherConfig, load_teacher_model
from dna.train.config import BlockTrainConfig, check_count  # noqa: F401 (re-exported)
from dna.train.state import capture_rng_state, check_resume_config, restore_rng_state

RESUME_MAY_CHANGE = ("data.num_workers",)


DATA_PARALLEL = True    # train_block trains data-parallel inside an initialised torch.distributed group


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _train_loader(cfg: BlockTrainConfig, rank: int, world: int):
    """The train loader; with world > 1 this rank's shard of each global batch (same order)."""
    if world == 1:
        return make_loader(cfg.data, "train", shuffle=True), None
    if cfg.data.batch_size % world:
        raise DnaError(f"batch_size={cfg.data.batch_size} must divide by the {world} data-parallel workers")
    ds = make_dataset(cfg.data, "train")
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.data.seed,
                                 drop_last=True)
    loader = DataLoader(ds, batch_size=cfg.data.batch_size // world, sampler=sampler,
                        num_workers=cfg.data.num_workers, persistent_workers=False)
    return loader, sampler


def _all_reduce_mean(tensors: list[torch.Tensor], world: int) -> None:
    works = [dist.all_reduce(t, async_op=True) for t in tensors]
    for w in works:
        w.wait()
    for t in tensors:
        t.div_(world)


def checkpoint_uri(out: str) -> str:
    return block_supernet(out)


def history_uri(out: str) -> str:
    """The block's loss per epoch as a small JSON next to its checkpoint, so reports read the
    curve without loading the supernet's weights."""
    return storage.join(out, "history.json")


def stored_checkpoint(cfg: BlockTrainConfig) -> dict | None:
    """The block's stored checkpoint (None without one), refused when written with other
    settings: what a rerun resumes from, or returns as finished."""
    uri = checkpoint_uri(cfg.out)
    if not storage.exists(uri):
        return None
    state = storage.load_torch(uri)
    check_resume_config(state.get("config"), cfg.training_settings(), uri, RESUME_MAY_CHANGE)
    return state


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
    """The space family's student supernet of one block (``Family.make_supernet``)."""
    return get_family(space).make_supernet(space, block, teacher)


def train_block(cfg: BlockTrainConfig, teacher: BlockTeacher | None = None,
                on_epoch_end: OnEpochEnd | None = None) -> dict:
    """Train (or resume, or return the finished) supernet of ``cfg.block``; returns its metrics.

    ``on_epoch_end`` (:mod:`dna.progress`) gets every finished epoch, on every rank, once its
    checkpoint is stored: ``block``, ``loss``, ``seconds``, ``images_per_s``, ``checkpoint``."""
    cfg.validate()
    rank, world = dist_rank_world()
    space = get_space(cfg.space)
    device = resolve_device(cfg.device)
    ckpt_uri = checkpoint_uri(cfg.out)
    state = stored_checkpoint(cfg)
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

    loader, sampler = _train_loader(cfg, rank, world)
    generators = {"ops": gen, "loader": loader.generator}
    if state is not None and "rng" in state:     # last: setting up above draws random numbers too
        restore_rng_state(state["rng"], generators, ckpt_uri)
    started = time.time()
    for epoch in range(start, cfg.epochs):
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.time()
        total, count, images = 0.0, 0, 0
        for step, batch in enumerate(loader):
            if cfg.max_steps_per_epoch is not None and step >= cfg.max_steps_per_epoch:
                break
            x = batch[0].to(device, memory_format=mf)
            with autocast(device):
                inp, target = teacher.block_io(x, cfg.block)
                loss = 0.0
                for c, ops in enumerate(net.sample(gen)):
                    loss = loss + F.mse_loss(net(inp, c, ops).float(), target.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                _all_reduce_mean([p.grad for p in net.parameters() if p.grad is not None], world)
            opt.step()
            total += loss.item() / len(net.cells)
            count += 1
            images += x.shape[0]
        if world > 1:
            _all_reduce_mean([b for b in net.buffers() if b.is_floating_point()], world)
            sums = torch.tensor([total, count, images], dtype=torch.float64, device=device)
            _all_reduce_mean([sums], world)
            total, count, images = sums[0].item(), round(sums[1].item()), round(sums[2].item() * world)
        if count == 0:                      # never store (nor report finished) an epoch without steps
            raise DnaError(f"block {cfg.block} epoch {epoch + 1} ran no training step: the train split yields "
                           f"no batch of {cfg.data.batch_size} (train_size={cfg.data.train_size})")
        sched.step()
        seconds = time.time() - t0
        history.append({"epoch": epoch + 1, "loss": total / max(count, 1), "seconds": seconds,
                        "images_per_s": images / max(seconds, 1e-9)})
        metrics = {"block": cfg.block, "epochs": epoch + 1, "loss": history[-1]["loss"], "history": history}
        if rank == 0:                       # rank 0 writes the checkpoint, the others wait for it
            _save(cfg, net, opt, sched, generators, teacher, history, metrics, ckpt_uri)
        if world > 1:
            dist.barrier()
        epoch_end(on_epoch_end, epoch + 1, cfg.epochs, started, start, block=cfg.block, loss=metrics["loss"],
                  seconds=seconds, images_per_s=history[-1]["images_per_s"], checkpoint=ckpt_uri)
    return metrics


def _save(cfg: BlockTrainConfig, net: BlockSupernet, opt, sched, generators: dict, teacher: BlockTeacher,
          history: list[dict], metrics: dict, ckpt_uri: str) -> None:
    """The block's checkpoint after an epoch: everything a rerun needs to resume exactly after it
    (``rng``: every random stream, the loader's shuffle included; ``config``: what it must match)."""
    storage.save_torch({
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": generators["ops"].get_state(),
        "rng": capture_rng_state(generators),
        "epoch": metrics["epochs"],
        "history": history,
        "metrics": metrics,
        "config": {**cfg.training_settings(), "teacher_in": teacher.in_channels(cfg.block),
                   "teacher_out": teacher.out_channels(cfg.block)},
    }, ckpt_uri)
    storage.write_json({"block": cfg.block, "epochs": metrics["epochs"], "history": history}, history_uri(cfg.out))


def load_supernet(out: str, space, teacher: BlockTeacher, block: int) -> BlockSupernet:
    """The trained supernet of one block from its checkpoint folder."""
    uri = checkpoint_uri(out)
    if not storage.exists(uri):
        raise DnaError(f"no trained supernet for block {block} at {uri}: run `dna train-block` first")
    state = storage.load_torch(uri)
    net = make_supernet(space, block, teacher)
    net.load_state_dict(state["model"])
    return net.eval()
