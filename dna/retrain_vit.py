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
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from dna.data import DataConfig
from dna.device import autocast, check_device, resolve_device
from dna.errors import DnaError
from dna.progress import OnEpochEnd

DEIT_LR = 1e-3
DEIT_BATCH = 1024


@dataclass
class RetrainViTConfig:
    arch: Any = ""                  # ViT architecture JSON URI or dict (dna.model.vit.vit_arch_json)
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
        check_device(self.device)
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


def retrain_vit(cfg: RetrainViTConfig, on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Train the ViT of ``cfg.arch`` from scratch and write checkpoint/model/metrics/curves under
    ``cfg.out``; returns the metrics (``status``: ``trained`` or ``cached``). ``on_epoch_end``:
    see :func:`dna.retrain.fit`."""
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from dna import storage
    from dna.data import make_loader
    from dna.data import num_classes as data_num_classes
    from dna.model.vit import build_vit, load_vit_arch, vit_costs
    from dna.retrain import Fit, _canonical, cached_metrics, fit

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

    cached = cached_metrics(out, arch, n_classes, cfg.epochs)
    if cached is not None:
        return cached

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net = build_vit(arch["space"], arch["blocks"], num_classes=n_classes, resolution=data.resolution,
                    drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate)
    params, flops = (vit_costs(net, data.resolution)[k] for k in ("params", "flops"))
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

    def batch_loss(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        if erase is not None:
            x = erase(x)
        if mixup is not None:
            if x.shape[0] % 2:
                x, y = x[:-1], y[:-1]
            x, target = mixup(x, y)
        else:
            target = y
        with autocast(device, cfg.amp):
            logits = net(x)
        return criterion(logits.float(), target), x.shape[0]

    run = Fit(net=net, optimizer=optimizer, scheduler=scheduler, train_loader=train_loader, val_loader=val_loader,
              updates=updates, epochs=cfg.epochs, lr=lr, seed=cfg.seed, device=device, amp=cfg.amp,
              clip_grad=cfg.clip_grad, out=out, arch=arch, num_classes=n_classes, config=_canonical(cfg.to_dict()))
    return fit(run, batch_loss, {"params": params, "flops": flops, "resolution": data.resolution, "model": "vit",
                                 "kd": False, "opt": "adamw", "batch_size": data.batch_size}, on_epoch_end)
