"""Stand-alone retraining of a searched ViT (SPEC section 9, the DeiT recipe).

Defaults are the paper's/DeiT's: AdamW, LR 1e-3 for batch 1024 (scaled linearly with the batch),
cosine schedule stepped per update with 5 warm-up epochs, weight decay 0.05, 300 epochs, label
smoothing 0.1, Mixup 0.8 / CutMix 1.0 (``timm.data.Mixup``, soft-target cross-entropy), RandAugment
``rand-m9-mstd0.5-inc1`` (``None`` turns it off), random erasing 0.25 (``timm``'s
``RandomErasing``, per sample on the batch), stochastic depth 0.1. For a few epochs on the small
built-in data use e.g. ``lr=1e-3``, ``warmup_epochs=0``, no RandAugment.

Same layout and formats as :mod:`dna.retrain` under ``out``: ``checkpoint.pt`` after every epoch
(model, optimizer, scheduler, epoch, step, history, arch, num_classes, config; a rerun continues
after the last finished epoch), ``model.pt`` ``{"model": state_dict, "arch": ViT architecture JSON,
"num_classes"}``, ``metrics.json`` (top1/top5 in percent, params, FLOPs, history ...),
``curve.csv`` and ``curve.png``. A run whose ``metrics.json`` covers ``epochs`` is returned as is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from dna.data import DataConfig
from dna.errors import DnaError

DEIT_LR = 1e-3
DEIT_BATCH = 1024
CHECKPOINT, MODEL, METRICS = "checkpoint.pt", "model.pt", "metrics.json"


@dataclass
class RetrainViTConfig:
    arch: Any = ""                  # ViT architecture JSON URI or dict (dna.build.vit.vit_arch_json)
    out: str = ""                   # output folder URI
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 300
    batch_size: int | None = None   # None: data.batch_size
    lr: float | None = None         # None: 1e-3 * batch / 1024
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup: float = 0.8              # Mixup alpha (0: off)
    cutmix: float = 1.0             # CutMix alpha (0: off)
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25            # random erasing probability
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    clip_grad: float | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True                # bf16 autocast on CUDA

    def validate(self) -> RetrainViTConfig:
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError("out must name an output folder URI (local path or s3://...)")
        if not isinstance(self.data, DataConfig):
            raise DnaError(f"data must be a DataConfig, got {type(self.data).__name__}")
        for name, low in (("epochs", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise DnaError(f"{name} {v!r} must be an integer >= {low}")
        for name in ("batch_size", "steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise DnaError(f"{name} {v!r} must be an integer >= 1")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise DnaError(f"lr {self.lr!r} must be a number > 0")
        for name in ("weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "mixup", "cutmix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise DnaError(f"{name} {v!r} must be a number >= 0")
        for name in ("label_smoothing", "mixup_prob", "mixup_switch_prob", "reprob", "drop_rate", "drop_path_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise DnaError(f"{name} {v!r} must be a number in [0, 1]")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise DnaError(f"clip_grad {self.clip_grad!r} must be > 0")
        dev = str(self.device)
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise DnaError(f"device {self.device!r} must be auto, cpu, cuda or cuda:N")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise DnaError(f"device {self.device!r} asked for but CUDA is not available")
        return self

    def data_config(self) -> DataConfig:
        return dataclasses.replace(self.data, batch_size=self.batch_size or self.data.batch_size,
                                   auto_augment=self.auto_augment or self.data.auto_augment)

    def effective_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return DEIT_LR * (self.batch_size or self.data.batch_size) / DEIT_BATCH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def retrain_vit(cfg: RetrainViTConfig) -> dict[str, Any]:
    """Train the ViT of ``cfg.arch`` from scratch and write checkpoint/model/metrics/curves under
    ``cfg.out``; returns the metrics (``status``: ``trained`` or ``cached``)."""
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from dna import storage
    from dna.build.vit import build_vit, load_vit_arch, vit_costs
    from dna.data import make_loader
    from dna.data import num_classes as data_num_classes
    from dna.retrain import evaluate, write_curves

    if not isinstance(cfg, RetrainViTConfig):
        raise DnaError(f"expected a RetrainViTConfig, got {type(cfg).__name__}")
    cfg.validate()
    data = cfg.data_config()
    data.validate()
    if not data.is_builtin:
        storage.check_readable(data.uri)
    n_classes = data_num_classes(data)
    arch = _canonical(load_vit_arch(cfg.arch))
    arch = _canonical(dict(arch, resolution=data.resolution, num_classes=n_classes))
    out = cfg.out

    metrics_uri, ckpt_uri = storage.join(out, METRICS), storage.join(out, CHECKPOINT)
    if storage.exists(metrics_uri):
        stored = storage.read_json(metrics_uri)
        if stored.get("arch") != arch or stored.get("num_classes") != n_classes:
            raise DnaError(f"{out} holds a run of another model or data set; use a fresh out folder")
        if int(stored.get("epochs", 0)) >= cfg.epochs:
            return dict(stored, status="cached")

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    torch.manual_seed(cfg.seed)
    net = build_vit(arch["space"], arch["blocks"], num_classes=n_classes, resolution=data.resolution,
                    drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate)
    params, flops = vit_costs(net, data.resolution)
    net.to(device)

    train_loader = make_loader(data, "train", drop_last=True)
    if len(train_loader) == 0:
        raise DnaError("the train split yields no full batch: raise train_size or lower batch_size")
    val_loader = make_loader(data, "val", shuffle=False)
    updates = len(train_loader) if cfg.steps_per_epoch is None else min(len(train_loader), cfg.steps_per_epoch)

    lr = cfg.effective_lr()
    optimizer = create_optimizer_v2(net, opt="adamw", lr=lr, weight_decay=cfg.weight_decay)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=cfg.epochs,
                                       warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
                                       min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=updates)
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                  switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.label_smoothing,
                  num_classes=n_classes) if mixing else None
    criterion = SoftTargetCrossEntropy() if mixing else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    erase = RandomErasing(cfg.reprob, mode="pixel", device=str(device)) if cfg.reprob > 0 else None

    start, history, step = 0, [], 0
    if storage.exists(ckpt_uri):
        ck = storage.load_torch(ckpt_uri, map_location=device)
        if ck.get("arch") != arch or ck.get("num_classes") != n_classes:
            raise DnaError(f"{ckpt_uri} is a run of another model or data set; use a fresh out folder")
        try:
            net.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise DnaError(f"cannot resume from {ckpt_uri}: {exc}; use a fresh out folder") from exc
        start, history, step = int(ck["epoch"]), list(ck["history"]), int(ck.get("step", 0))
    resumed_from = start

    t_start = time.time()
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        if train_loader.generator is not None:
            train_loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch)
        net.train()
        loss_sum, seen = 0.0, 0
        for i, (x, y) in enumerate(train_loader):
            if i >= updates:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if erase is not None:
                x = erase(x)
            if mixup is not None:
                if x.shape[0] % 2:
                    x, y = x[:-1], y[:-1]
                x, target = mixup(x, y)
            else:
                target = y
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                enabled=cfg.amp and device.type == "cuda"):
                logits = net(x)
            loss = criterion(logits.float(), target)
            if not torch.isfinite(loss):
                raise DnaError(f"training loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}: "
                               f"lower the learning rate (lr={lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad is not None:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(num_updates=step)
            loss_sum += loss.item() * x.shape[0]
            seen += x.shape[0]
        scheduler.step(epoch + 1)
        top1, top5, val_loss = evaluate(net, val_loader, device, cfg.amp)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "val_loss": val_loss,
                        "val_top1": top1, "val_top5": top5, "lr": optimizer.param_groups[0]["lr"],
                        "time_s": round(time.time() - t0, 3)})
        storage.save_torch({
            "model": _cpu_state(net),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "step": step,
            "history": history,
            "arch": arch,
            "num_classes": n_classes,
            "config": _canonical(cfg.to_dict()),
        }, ckpt_uri)
        write_curves(history, out)

    if not history:
        raise DnaError(f"{ckpt_uri} holds no finished epoch")
    last = history[-1]
    best = max(history, key=lambda r: r["val_top1"])
    storage.save_torch({"model": _cpu_state(net), "arch": arch, "num_classes": n_classes, "ema": False},
                       storage.join(out, MODEL))
    metrics = {
        "top1": last["val_top1"],
        "top5": last["val_top5"],
        "val_loss": last["val_loss"],
        "best_top1": best["val_top1"],
        "best_epoch": best["epoch"],
        "epochs": int(last["epoch"]),
        "params": params,
        "flops": flops,
        "resolution": data.resolution,
        "num_classes": n_classes,
        "arch": arch,
        "model": "vit",
        "ema": False,
        "kd": False,
        "lr": lr,
        "opt": "adamw",
        "batch_size": data.batch_size,
        "device": str(device),
        "resumed_from": resumed_from,
        "train_time_s": round(time.time() - t_start, 3),
        "history": history,
        "out": out,
        "model_uri": storage.join(out, MODEL),
    }
    storage.write_json(_canonical(metrics), metrics_uri)
    write_curves(history, out)
    return dict(metrics, status="trained")
