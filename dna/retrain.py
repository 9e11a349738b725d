"""Stand-alone retraining of a searched (or scaled, or any timm) network (SPEC section 9).

The default recipe is the paper's (EfficientNet's): RMSprop (TF flavour, eps 1e-3) with momentum
0.9, LR 0.256 for batch 4096 scaled linearly with the batch, x0.97 every 2.4 epochs (stepped per
update, so the decay points fall exactly on 2.4-epoch boundaries), weight decay 1e-5, label
smoothing 0.1, dropout and drop-path 0.2; RandAugment (``auto_augment="rand-m9-mstd0.5"``), a
weight EMA and knowledge distillation from a teacher are options. That LR is meant for huge
batches and long schedules; for a few epochs on the small built-in data use e.g. ``opt="adamw"``,
``lr=3e-3`` (what the tests do).

Everything goes under ``out`` (a local or ``s3://`` folder):

- ``checkpoint.pt`` after every epoch (model, optimizer, scheduler, EMA, epoch, history, config,
  random states): rerunning with the same ``out`` and settings continues exactly after the last
  finished epoch, also with a larger ``epochs``;
- ``model.pt``: ``{"model": state_dict, "arch": architecture JSON | {"timm": name}, "num_classes"}``
  (the EMA weights when ``ema``), loadable by :func:`dna.teacher.load_state` so the retrained net
  can be the next DNA+ generation's teacher;
- ``metrics.json`` (top1/top5 in percent, params, FLOPs, history...), ``curve.csv``, ``curve.png``.

A run whose ``metrics.json`` already covers ``epochs`` is not retrained: its metrics are returned.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.data import DataConfig
from dna.device import autocast, resolve_device
from dna.errors import DnaError
from dna.layout import stage_files
from dna.progress import OnEpochEnd, epoch_end
from dna.retrain_config import RetrainConfig, _int_at_least, _number_in  # noqa: F401 (re-exported)
from dna.retrain_recipe import FAST_RECIPE, PAPER_BATCH, PAPER_LR, SCHEDULES  # noqa: F401 (re-exported)
from dna.train.state import capture_rng_state, check_resume_config, restore_rng_state, seed_all

# ----------------------------------------------------------------------------------------------
# model, data and evaluation


def model_resolution(spec: str) -> int:
    """The native input resolution of a timm model name or an architecture JSON URI."""
    if spec.endswith(".json"):
        from dna import storage
        from dna.space import family_of_arch

        d = storage.read_json(spec)
        return int(family_of_arch(d).arch_record(d)["resolution"])
    import timm

    if not timm.is_model(spec):
        raise DnaError(f"unknown model {spec!r}: expected a timm model name or an architecture .json URI")
    try:
        cfg = timm.models.get_pretrained_cfg(spec)
        return int(cfg.input_size[-1]) if cfg is not None else 224
    except Exception:  # a model without a default config
        return 224


def _resolve_model(spec: Any, cfg: RetrainConfig) -> tuple[Any, dict]:
    """(Architecture | timm name | nn.Module, the JSON record stored as model.pt's ``arch``)."""
    from dna.model.arch import Architecture

    if isinstance(spec, nn.Module):
        return spec, {"module": type(spec).__name__}
    if isinstance(spec, Architecture):
        from dna.model.summary import check_arch_def

        check_arch_def(spec.arch_def)
        return spec, spec.to_json()
    if spec is not None:
        raise DnaError(f"model must be an Architecture, an nn.Module or None, got {type(spec).__name__}")
    name = cfg.model
    if name.endswith(".json"):
        from dna.model.summary import resolve_arch

        arch = resolve_arch(name)
        return arch, arch.to_json()
    import timm

    if not timm.is_model(name):
        raise DnaError(f"unknown model {name!r}: expected a timm model name or an architecture .json URI")
    return name, {"timm": name}


def _create_model(what: Any, num_classes: int, cfg: RetrainConfig) -> nn.Module:
    from dna.model.arch import Architecture

    if isinstance(what, nn.Module):
        return what
    kw = dict(drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate)
    if isinstance(what, Architecture):
        from dna.model.summary import build

        return build(what, num_classes=num_classes, **kw)
    import timm

    return timm.create_model(what, pretrained=False, num_classes=num_classes, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str | None = None,
             amp: bool = True) -> tuple[float, float, float]:
    """(top-1 %, top-5 %, mean cross-entropy) of ``model`` over ``loader`` (top-5: top-k, k =
    min(5, classes))."""
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    try:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top.eq(y[:, None])
            correct1 += hit[:, 0].sum().item()
            correct5 += hit.any(dim=1).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise DnaError("evaluation loader is empty")
    return 100.0 * correct1 / total, 100.0 * correct5 / total, loss_sum / total


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)


# ----------------------------------------------------------------------------------------------
# outputs


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _history_columns(history: list[dict]) -> list[str]:
    cols = ["epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr"]
    if history and "ema_top1" in history[0]:
        cols += ["ema_top1", "ema_top5"]
    return cols + ["time_s"]


def _evaluated(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the rows that hold ``key`` (``eval_epochs`` skips the early ones)."""
    rows = [r for r in history if r.get(key) is not None]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def write_curves(history: list[dict], out: str) -> None:
    """``curve.csv`` and ``curve.png`` (train loss, val loss and val top-1 per epoch)."""
    from dna import storage

    cols = _history_columns(history)
    lines = [",".join(cols)]
    for row in history:
        lines.append(",".join("" if row.get(c) is None else f"{row[c]:.6g}" if isinstance(row[c], float)
                              else str(row[c]) for c in cols))
    storage.write_text("\n".join(lines) + "\n", stage_files(out).curve_csv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(*_evaluated(history, "val_loss"), "s-", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(*_evaluated(history, "val_top1"), "o-", label="top-1")
    if "ema_top1" in cols:
        ax2.plot(*_evaluated(history, "ema_top1"), "s-", label="EMA top-1")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val top-1 (%)")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes(buf.getvalue(), stage_files(out).curve)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# the epoch loop shared with dna.retrain_vit


@dataclass
class Fit:
    """What :func:`fit` drives: a built classifier with its optimizer and schedule, the loaders,
    and where the run lives (``out``; ``arch`` + ``num_classes`` identify it for resuming)."""

    net: nn.Module
    optimizer: Any
    scheduler: Any | None
    train_loader: Any
    val_loader: Any
    updates: int                # optimizer steps per epoch
    epochs: int
    lr: float
    seed: int
    device: torch.device
    amp: bool
    clip_grad: float | None
    out: str
    arch: dict                  # canonical (JSON) record of the model
    num_classes: int
    config: dict                # canonical config, stored in every checkpoint
    ema: Any | None = None      # timm ModelEmaV3
    eval_from: int = 0          # epochs (0-based) before this one skip the val evaluation

    def generators(self) -> dict[str, torch.Generator | None]:
        """The loop's own random generators, stored with the global ones in every checkpoint."""
        return {"loader": getattr(self.train_loader, "generator", None)}


# Config keys a resumed run may change: a longer run continues a shorter one; where it runs and
# how the loader is fed do not change the numbers on CPU.
RESUME_MAY_CHANGE = ("out", "epochs", "device", "amp", "channels_last", "data.num_workers")


def cached_metrics(out: str, arch: dict, num_classes: int, epochs: int) -> dict | None:
    """The stored metrics when ``out`` holds a finished run of at least ``epochs`` epochs (refusing
    a run of another model or data set), else None."""
    from dna import storage

    metrics_uri = stage_files(out).metrics
    if not storage.exists(metrics_uri):
        return None
    stored = storage.read_json(metrics_uri)
    if stored.get("arch") != arch or stored.get("num_classes") != num_classes:
        raise DnaError(f"{out} holds a run of another model or data set; use a fresh out folder")
    return dict(stored, status="cached") if int(stored.get("epochs", 0)) >= epochs else None


def _resume(run: Fit, ckpt_uri: str) -> tuple[int, list[dict], int]:
    """(epoch, history, update step) of the run stored at ``ckpt_uri`` (loaded into ``run``);
    (0, [], 0) without one."""
    from dna import storage

    if not storage.exists(ckpt_uri):
        return 0, [], 0
    ck = storage.load_torch(ckpt_uri, map_location=run.device)
    if ck.get("arch") != run.arch or ck.get("num_classes") != run.num_classes:
        raise DnaError(f"{ckpt_uri} is a run of another model or data set; use a fresh out folder")
    check_resume_config(ck.get("config"), run.config, ckpt_uri, RESUME_MAY_CHANGE)
    try:
        run.net.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
        if run.scheduler is not None and ck.get("scheduler") is not None:
            run.scheduler.load_state_dict(ck["scheduler"])
        if run.ema is not None and ck.get("ema") is not None:
            run.ema.module.load_state_dict(ck["ema"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise DnaError(f"cannot resume from {ckpt_uri}: {exc}; use a fresh out folder") from exc
    if ck.get("rng") is not None:
        restore_rng_state(ck["rng"], run.generators(), ckpt_uri)
    return int(ck["epoch"]), list(ck["history"]), int(ck.get("step", 0))


def _train_epoch(run: Fit, batch_loss: Callable, epoch: int, step: int) -> tuple[float, int, int]:
    """One pass over (at most ``run.updates`` batches of) the train split: (loss sum, samples,
    update step)."""
    net, optimizer, scheduler, ema, device = run.net, run.optimizer, run.scheduler, run.ema, run.device
    net.train()
    loss_sum, seen = 0.0, 0
    for i, (x, y) in enumerate(run.train_loader):
        if i >= run.updates:
            break
        loss, n = batch_loss(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        if not torch.isfinite(loss):
            raise DnaError(f"training loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}: "
                           f"lower the learning rate (lr={run.lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.clip_grad is not None:
            nn.utils.clip_grad_norm_(net.parameters(), run.clip_grad)
        optimizer.step()
        step += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=step)
        if ema is not None:
            ema.update(net, step=step)
        loss_sum += loss.item() * n
        seen += n
    return loss_sum, seen, step


def _end_epoch(run: Fit, epoch: int, step: int, train_loss: float, t0: float, history: list[dict],
               ckpt_uri: str) -> dict[str, Any]:
    """Evaluate, append the epoch's row to ``history``, store the checkpoint and the curves;
    returns the row."""
    from dna import storage

    net, optimizer, scheduler, ema, device = run.net, run.optimizer, run.scheduler, run.ema, run.device
    evaluated = epoch >= run.eval_from or epoch + 1 >= run.epochs
    top1, top5, val_loss = evaluate(net, run.val_loader, device, run.amp) if evaluated else (None, None, None)
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_top1": top1,
        "val_top5": top5,
        "lr": optimizer.param_groups[0]["lr"],
    }
    if ema is not None:
        row["ema_top1"], row["ema_top5"], _ = (evaluate(ema.module, run.val_loader, device, run.amp) if evaluated
                                               else (None, None, None))
    row["time_s"] = round(time.time() - t0, 3)
    history.append(row)
    storage.save_torch({
        "model": _cpu_state(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "ema": _cpu_state(ema.module) if ema is not None else None,
        "epoch": epoch + 1,
        "step": step,
        "history": history,
        "arch": run.arch,
        "num_classes": run.num_classes,
        "config": run.config,
        "rng": capture_rng_state(run.generators()),
    }, ckpt_uri)
    write_curves(history, run.out)
    return row


def fit(run: Fit, batch_loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]],
        describe: dict[str, Any], on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Resume from ``out/checkpoint.pt``, train the remaining epochs and write ``model.pt``,
    ``metrics.json`` and the curves; returns the metrics (``describe`` adds the run's own fields).

    ``batch_loss(x, y)`` (both on the device) returns the training loss of one batch and the
    number of samples it covers. Per-epoch seeds of the global torch, numpy and python RNGs (the
    latter two drive RandAugment, Mixup, random erasing) and of the loader, and every random
    stream stored in the checkpoint and restored on resume, make a resumed run equal an
    uninterrupted one, and a run equal another of the same seed; a checkpoint written with
    other settings (:data:`RESUME_MAY_CHANGE` aside) is refused. The schedule steps per update;
    every epoch ends with an evaluation, a checkpoint and the curves, then ``on_epoch_end``
    (:mod:`dna.progress`) gets the epoch's history row, ``loss`` (the training loss), ``seconds``,
    ``images_per_s`` and ``checkpoint``.
    """
    from dna import storage

    net, scheduler, ema = run.net, run.scheduler, run.ema
    ckpt_uri = stage_files(run.out).checkpoint
    start, history, step = _resume(run, ckpt_uri)
    resumed_from = start

    t_start = time.time()
    for epoch in range(start, run.epochs):
        t0 = time.time()
        seed_all(run.seed * 1_000_003 + epoch)
        if run.train_loader.generator is not None:
            run.train_loader.generator.manual_seed(run.seed * 1_000_003 + epoch)
        loss_sum, seen, step = _train_epoch(run, batch_loss, epoch, step)
        train_s = time.time() - t0
        if scheduler is not None:
            scheduler.step(epoch + 1)
        row = _end_epoch(run, epoch, step, loss_sum / max(seen, 1), t0, history, ckpt_uri)
        epoch_end(on_epoch_end, epoch + 1, run.epochs, t_start, resumed_from,
                  **{k: v for k, v in row.items() if k != "epoch"}, loss=row["train_loss"],
                  seconds=row["time_s"], images_per_s=seen / max(train_s, 1e-9), checkpoint=ckpt_uri)

    if not history:
        raise DnaError(f"{ckpt_uri} holds no finished epoch")
    final = ema.module if ema is not None else net
    key = "ema_top1" if ema is not None else "val_top1"
    last = history[-1]
    best = max((r for r in history if r.get(key) is not None), key=lambda r: r[key])
    model_uri = stage_files(run.out).model
    storage.save_torch({"model": _cpu_state(final), "arch": run.arch, "num_classes": run.num_classes,
                        "ema": ema is not None}, model_uri)
    metrics = {
        "top1": last[key],
        "top5": last["ema_top5" if ema is not None else "val_top5"],
        "val_loss": last["val_loss"],
        "best_top1": best[key],
        "best_epoch": best["epoch"],
        "epochs": int(last["epoch"]),
        **describe,
        "num_classes": run.num_classes,
        "arch": run.arch,
        "ema": ema is not None,
        "lr": run.lr,
        "device": str(run.device),
        "resumed_from": resumed_from,
        "train_time_s": round(time.time() - t_start, 3),
        "history": history,
        "out": run.out,
        "model_uri": model_uri,
    }
    storage.write_json(_canonical(metrics), stage_files(run.out).metrics)
    write_curves(history, run.out)
    return dict(metrics, status="trained")


# ----------------------------------------------------------------------------------------------
# the run


def _check_data(data: DataConfig) -> None:
    from dna import storage

    data.validate()
    if not data.is_builtin:
        storage.check_readable(data.uri)


def _load_teacher(cfg: RetrainConfig, num_classes: int, resolution: int, device: torch.device) -> nn.Module:
    from dna.teacher import load_teacher_model

    tcfg = cfg.teacher
    if tcfg.checkpoint:
        from dna import storage

        storage.check_readable(tcfg.checkpoint)
    if tcfg.num_classes is None:
        tcfg = dataclasses.replace(tcfg, num_classes=num_classes)
    teacher = load_teacher_model(tcfg)
    teacher.requires_grad_(False)
    teacher.eval()
    with torch.no_grad():
        width = teacher(torch.zeros(1, 3, resolution, resolution)).shape[-1]
    if width != num_classes:
        raise DnaError(f"teacher {tcfg.model!r} predicts {width} classes; the data have {num_classes}")
    return teacher.to(device)


def _loaders(data, cfg: RetrainConfig):
    """Train and val loaders and the updates per epoch. Full batches only (a batch of one breaks
    BatchNorm on 1x1 maps), unless the split is smaller than one batch."""
    from dna.data import make_loader

    train_loader = make_loader(data, "train", drop_last=True)
    if len(train_loader) == 0:
        train_loader = make_loader(data, "train", drop_last=False)
    val_loader = make_loader(data, "val", shuffle=False)
    updates = len(train_loader) if cfg.steps_per_epoch is None else min(len(train_loader), cfg.steps_per_epoch)
    if updates == 0:
        raise DnaError("the train split yields no batch: raise train_size or lower batch_size")
    return train_loader, val_loader, updates


def _optimization(cfg: RetrainConfig, net: nn.Module, lr: float, updates: int):
    """timm's optimizer and per-update schedule of the recipe, and the EMA copy when asked."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    opt_kw: dict[str, Any] = {}
    eps = cfg.opt_eps if cfg.opt_eps is not None else (1e-3 if cfg.opt.lower().startswith("rmsprop") else None)
    if eps is not None:
        opt_kw["eps"] = eps
    optimizer = create_optimizer_v2(net, opt=cfg.opt.lower(), lr=lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, **opt_kw)
    scheduler = None
    if cfg.sched != "none":
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate, warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
            min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=updates,
        )
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(net, decay=cfg.ema_decay, use_warmup=True)
    return optimizer, scheduler, ema


def retrain(cfg: RetrainConfig, model: Any = None, on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` (or ``model``: an ``Architecture`` or an ``nn.Module``) from scratch and
    write checkpoint/model/metrics/curves under ``cfg.out``; returns the metrics.

    Resumes from ``out/checkpoint.pt``; returns the stored metrics when ``out`` holds a finished
    run of at least ``cfg.epochs`` epochs (``status`` is then ``"cached"``). ``on_epoch_end``:
    see :func:`fit`.
    """
    from dna.costs import count_flops, count_params
    from dna.data import num_classes as data_num_classes

    if not isinstance(cfg, RetrainConfig):
        raise DnaError(f"expected a RetrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    data = cfg.data_config()
    _check_data(data)
    what, arch_record = _resolve_model(model, cfg)
    arch_record = _canonical(arch_record)
    n_classes = data_num_classes(data)
    out = cfg.out

    # A finished run is not retrained.
    cached = cached_metrics(out, arch_record, n_classes, cfg.epochs)
    if cached is not None:
        return cached

    device = resolve_device(cfg.device)
    teacher = _load_teacher(cfg, n_classes, data.resolution, device) if cfg.teacher is not None else None

    torch.manual_seed(cfg.seed)
    net = _create_model(what, n_classes, cfg)
    if cfg.zero_head:
        from dna.model.efficientnet import zero_classifier

        zero_classifier(net)
    params = count_params(net)
    flops = count_flops(net, (3, data.resolution, data.resolution))
    net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)

    train_loader, val_loader, updates = _loaders(data, cfg)
    lr = cfg.effective_lr()
    optimizer, scheduler, ema = _optimization(cfg, net, lr, updates)

    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def batch_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        if device.type == "cuda" and cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.amp):
            logits = net(x)
        logits = logits.float()
        loss = criterion(logits, y)
        if teacher is not None and cfg.kd_alpha > 0:
            with torch.no_grad(), autocast(device, cfg.amp):
                t_logits = teacher(x)
            loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd_loss(logits, t_logits.float(), cfg.kd_temperature)
        return loss, y.numel()

    run = Fit(net=net, optimizer=optimizer, scheduler=scheduler, ema=ema, train_loader=train_loader,
              val_loader=val_loader, updates=updates, epochs=cfg.epochs, lr=lr, seed=cfg.seed, device=device,
              amp=cfg.amp, clip_grad=cfg.clip_grad, out=out, arch=arch_record, num_classes=n_classes,
              config=_canonical(cfg.to_dict()),
              eval_from=0 if cfg.eval_epochs is None else max(0, cfg.epochs - cfg.eval_epochs))
    return fit(run, batch_loss, {
        "params": params, "flops": flops, "resolution": data.resolution,
        "model": cfg.model if model is None else arch_record.get("module", "architecture"),
        "kd": teacher is not None, "opt": cfg.opt, "batch_size": data.batch_size,
        "train_images": len(train_loader.dataset), "updates_per_epoch": updates,
    }, on_epoch_end)
