"""One job trains every block of a ViT supernet: DNA++ (joint, self-supervised) or DNA (frozen
teacher, MSE), SPEC sections 3, 4 and 8.

Each step: one batch, one teacher forward (both views stacked for DNA++), one uniformly sampled
path per block (seeded, the same on every rank), the loss of every block summed
(``PPModel.forward``), one optimizer step, one LR-scheduler step.

- ``mode="dnapp"``: no labels. Two augmented views (``dna.ssl.augment``), the teacher CNN trained
  jointly with the students and the projectors, loss Eq. 10 + Eq. 11 (``dna.ssl.loss``). LARS
  (timm's ``Lars``; biases and norm weights without weight decay and without the trust-ratio
  adaptation, as VICReg), start LR 0.0025 per 256 images (the paper), cosine schedule per step
  with optional linear warm-up.
- ``mode="dna"``: the teacher is frozen (it needs weights); per block MSE between the student's
  output map and the teacher's ``Y_k`` (Eq. 6). AdamW (the paper's DNA-on-ViT optimiser), start
  LR 5e-4 per 256 images, x0.9 every 3 epochs.

Everything goes under ``out``: ``checkpoint.pt`` after every epoch (model = teacher + students +
projectors, optimizer, scheduler, every random stream's state, history, config); a rerun with the
same settings resumes exactly after the last finished epoch (one with other settings is refused)
and returns the stored metrics when ``epochs`` are done. ``teacher.pt`` holds the
teacher's plain timm state dict ``{"model": ...}`` (for DNA++ the jointly trained teacher); for
the built-in ``efficientnet-tiny`` teacher ``teacher.json`` is its architecture, so
``TeacherConfig(model=<out>/teacher.json, checkpoint=<out>/teacher.pt)`` loads it anywhere.

Data parallel: when ``torch.distributed`` is initialised (e.g. by Ray Train or torchrun), the
model is wrapped in DistributedDataParallel (``find_unused_parameters``: only sampled slices are
used), the LR scales with the global batch, view augmentation is seeded per rank, paths are the
same on every rank, and only rank 0 writes. Pass the (sharded) loader as ``loader``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from dna import storage
from dna.data import make_loader
from dna.device import autocast, resolve_device
from dna.errors import DnaError
from dna.layout import joint_teacher, joint_teacher_arch, stage_files
from dna.progress import OnEpochEnd, epoch_end
from dna.space.vit import ViTSpace, vit_space
from dna.ssl.augment import ViewAugment, two_views
from dna.ssl.loss import PPLossConfig
from dna.ssl.model import PPModel
from dna.ssl.teacher import (
    TINY_TEACHER,
    SplitTeacher,
    create_teacher_model,
    tiny_teacher_arch,
)
from dna.ssl_config import DNA_LR_PER_256, PP_LR_PER_256, PPTrainConfig  # noqa: F401 (re-exported)
from dna.teacher import TeacherConfig
from dna.train.state import capture_rng_state, check_resume_config, restore_rng_state

FORMAT = "dna.vit-supernet/v1"
# Config keys a resumed run may change (a longer run continues a shorter one).
RESUME_MAY_CHANGE = ("out", "epochs", "device", "data.num_workers")
def checkpoint_uri(out: str) -> str:
    return stage_files(out).checkpoint


def build_pp_model(space: ViTSpace, teacher_cfg: TeacherConfig, mode: str, resolution: int,
                   proj_hidden: int = 256, proj_dim: int = 256, loss: PPLossConfig | None = None,
                   load_weights: bool = True, teacher_model: torch.nn.Module | None = None) -> PPModel:
    """Teacher (trainable for DNA++, frozen for DNA) + students + projectors, freshly initialised
    (the teacher loaded from its config when ``load_weights``)."""
    model = teacher_model if teacher_model is not None else create_teacher_model(teacher_cfg, resolution, load_weights)
    teacher = SplitTeacher(model, len(space.blocks), name=teacher_cfg.model, trainable=(mode == "dnapp"))
    return PPModel(space, teacher, resolution, mode, proj_hidden, proj_dim, loss)


def _lr_lambda(cfg: PPTrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.mode == "dna":
        return lambda step: cfg.lr_decay ** ((step // steps_per_epoch) // cfg.lr_decay_epochs)

    def cosine(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return cosine


def make_optimizer(cfg: PPTrainConfig, model: PPModel, world_size: int = 1) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    lr = cfg.learning_rate(world_size)
    if cfg.mode == "dnapp":
        return create_optimizer_v2(model, opt="lars", lr=lr, weight_decay=cfg.wd(), momentum=cfg.momentum,
                                   trust_coeff=cfg.trust_coeff)
    return create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=cfg.wd())


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: PPTrainConfig) -> torch.device:
    if cfg.device in (None, "", "auto") and dist.is_available() and dist.is_initialized() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return resolve_device(cfg.device)


def train_step(model: torch.nn.Module, batch: torch.Tensor, choices, opt: torch.optim.Optimizer,
               device: torch.device, mode: str, view_gen: torch.Generator | None = None,
               views: ViewAugment | None = None) -> dict[str, float]:
    """One optimisation step on ``batch`` (images ``[B, 3, H, W]``); returns the loss parts."""
    x = batch.to(device, non_blocking=True)
    if mode == "dnapp":
        v1, v2 = two_views(x, view_gen, views)
        x = torch.cat([v1, v2])
    with autocast(device):
        parts = model(x, choices)
    loss = parts["loss"]
    if not torch.isfinite(loss):
        raise DnaError(f"training loss became {loss.item()}: lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {k: float(v.detach()) for k, v in parts.items()}


def _default_loader(cfg: PPTrainConfig):
    data = cfg.data_config()
    loader = make_loader(data, "train", shuffle=True, drop_last=True)
    if len(loader) == 0:
        raise DnaError(f"the train split yields no full batch of {data.batch_size}: "
                       "raise train_size or lower batch_size")
    return loader


def _restore(state: dict, model: PPModel, opt, sched, path_gen: torch.Generator, view_gen: torch.Generator,
             rank: int) -> tuple[list[dict], int]:
    """Load a stored run into the model, optimizer, schedule and generators: (history, epoch)."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    path_gen.set_state(state["generators"]["paths"])
    view_gen.set_state(state["generators"]["views"][rank] if rank < len(state["generators"]["views"])
                       else view_gen.get_state())
    return list(state["history"]), int(state["epoch"])


def _data_parallel(model: PPModel, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _global_means(sums: dict[str, float], count: int, device: torch.device) -> tuple[dict[str, float], int]:
    """The loss sums and step count over every rank (to log the global means)."""
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64,
                     device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return dict(zip(keys, t[:-1].tolist(), strict=True)), int(t[-1].item())


def _train_epoch(cfg: PPTrainConfig, net: torch.nn.Module, model: PPModel, loader, steps: int, opt, sched,
                 device: torch.device, path_gen: torch.Generator, view_gen: torch.Generator, epoch: int,
                 progress: Callable[..., None] | None) -> tuple[dict[str, float], int, int]:
    """One epoch's steps on this rank: (loss part sums, steps, images)."""
    sums: dict[str, float] = {}
    count = images = 0
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        choices = model.sample(path_gen)
        parts = train_step(net, x, choices, opt, device, cfg.mode, view_gen, cfg.views)
        sched.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        images += x.shape[0]
        if progress is not None:
            progress(epoch=epoch, step=step, loss=parts["loss"], paths=[c.ops for c in choices])
    return sums, count, images


def _views_state(view_gen: torch.Generator, world: int) -> list:
    """Every rank's view generator state (each rank draws its own augmentations)."""
    if world == 1:
        return [view_gen.get_state()]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, view_gen.get_state())
    return gathered


def _store(cfg: PPTrainConfig, model: PPModel, opt, sched, path_gen: torch.Generator, views_state: list,
           rng: dict, history: list[dict], metrics: dict, tcfg: TeacherConfig, ckpt_uri: str) -> None:
    """The checkpoint after an epoch, and the teacher's weights (and architecture) next to it."""
    epoch = metrics["epochs"]
    storage.save_torch({
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generators": {"paths": path_gen.get_state(), "views": views_state},
        "rng": rng,
        "epoch": epoch,
        "history": history,
        "metrics": metrics,
        "config": cfg.to_dict(),
        "grids": model.grids,
    }, ckpt_uri)
    storage.save_torch({"model": {k: v.detach().cpu() for k, v in model.teacher.model.state_dict().items()},
                        "teacher": tcfg.model, "epoch": epoch},
                       joint_teacher(cfg.out))
    if tcfg.model == TINY_TEACHER and not storage.exists(joint_teacher_arch(cfg.out)):
        tiny_teacher_arch(cfg.data.resolution, tcfg.num_classes or 10).save(
            joint_teacher_arch(cfg.out))


def train_pp(cfg: PPTrainConfig, loader=None, teacher_model: torch.nn.Module | None = None,
             progress: Callable[..., None] | None = None, on_epoch_end: OnEpochEnd | None = None) -> dict:
    """Train (or resume, or return the finished) ViT supernet of every block; returns metrics.

    ``progress(epoch=, step=, loss=, paths=)`` follows every step; ``on_epoch_end``
    (:mod:`dna.progress`) gets every finished epoch, on every rank, once its checkpoint is stored:
    the epoch's history row (``loss`` and its parts, ``lr``, ``seconds``, ``images_per_s``) and
    ``checkpoint``."""
    cfg.validate()
    space = cfg.vit_space()
    tcfg = cfg.teacher_config()
    device = _device(cfg)
    rank, world = _world()
    ckpt_uri = checkpoint_uri(cfg.out)
    state = storage.load_torch(ckpt_uri) if storage.exists(ckpt_uri) else None
    if state is not None:
        if state.get("format") != FORMAT or state["config"]["space"] != space.to_json() \
                or state["config"]["mode"] != cfg.mode:
            raise DnaError(f"{ckpt_uri} holds a run of another space or mode; use a fresh out folder")
        check_resume_config(state["config"], cfg.to_dict(), ckpt_uri, RESUME_MAY_CHANGE)
        if state["epoch"] >= cfg.epochs:
            return state["metrics"]

    torch.manual_seed(cfg.seed)
    model = build_pp_model(space, tcfg, cfg.mode, cfg.data.resolution, cfg.proj_hidden, cfg.proj_dim, cfg.loss,
                           load_weights=state is None, teacher_model=teacher_model)
    model.to(device)
    if loader is None:
        loader = _default_loader(cfg)
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    opt = make_optimizer(cfg, model, world)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    path_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 17)
    view_gen = torch.Generator().manual_seed(cfg.seed * 104729 + 31 + rank)
    history: list[dict] = []
    start = 0
    if state is not None:
        history, start = _restore(state, model, opt, sched, path_gen, view_gen, rank)
    net: torch.nn.Module = _data_parallel(model, device) if world > 1 else model
    generators = {"paths": path_gen, "loader": getattr(loader, "generator", None)}
    if state is not None and "rng" in state:    # last: building the model drew random numbers too
        restore_rng_state(state["rng"], generators, ckpt_uri)

    metrics: dict = {}
    started = time.time()
    for epoch in range(start, cfg.epochs):
        gen = getattr(loader, "generator", None)
        if gen is not None:
            gen.manual_seed(cfg.seed * 1_000_003 + epoch)
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        net.train()
        t0 = time.time()
        sums, count, images = _train_epoch(cfg, net, model, loader, steps, opt, sched, device, path_gen,
                                           view_gen, epoch, progress)
        seconds = time.time() - t0
        if world > 1:  # log the global means
            sums, count = _global_means(sums, count, device)
        if count == 0:  # never store an epoch without steps as finished
            raise DnaError(f"epoch {epoch + 1} ran no training step: the train loader yields no batch")
        row = {"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()},
               "lr": opt.param_groups[0]["lr"], "seconds": round(seconds, 3),
               "images_per_s": images * world / max(seconds, 1e-9)}
        history.append(row)
        metrics = {"mode": cfg.mode, "space": space.name, "teacher": tcfg.model, "epochs": epoch + 1,
                   "loss": row.get("loss"), "history": history, "out": cfg.out}
        views_state = _views_state(view_gen, world)
        rng = capture_rng_state(generators)
        if _is_main():
            _store(cfg, model, opt, sched, path_gen, views_state, rng, history, metrics, tcfg, ckpt_uri)
        if on_epoch_end is not None:
            if world > 1:
                dist.barrier()              # the main rank has stored the checkpoint
            epoch_end(on_epoch_end, epoch + 1, cfg.epochs, started, start,
                      **{k: v for k, v in row.items() if k != "epoch"}, checkpoint=ckpt_uri)
    return metrics


def load_pp(out: str, device: str | torch.device | None = None) -> tuple[PPModel, dict]:
    """The trained model (eval mode) and the checkpoint's config from a ``train_pp`` folder."""
    uri = checkpoint_uri(out)
    if not storage.exists(uri):
        raise DnaError(f"no trained ViT supernet at {uri}: run `dna train-pp --out {out}` first")
    state = storage.load_torch(uri)
    if state.get("format") != FORMAT:
        raise DnaError(f"{uri} is not a ViT supernet checkpoint (format {state.get('format')!r})")
    c = state["config"]
    space = vit_space(c["space"])
    tcfg = TeacherConfig(**c["teacher"])
    loss = PPLossConfig(**c["loss"])
    model = build_pp_model(space, tcfg, c["mode"], int(c["data"]["resolution"]), int(c["proj_hidden"]),
                           int(c["proj_dim"]), loss, load_weights=False)
    model.load_state_dict(state["model"])
    model.to(resolve_device(device) if not isinstance(device, torch.device) else device)
    model.eval()
    return model, c
