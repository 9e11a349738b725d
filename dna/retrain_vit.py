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

from typing import Any

import torch
import torch.nn as nn

from dna.device import autocast, resolve_device
from dna.errors import DnaError
from dna.progress import OnEpochEnd
from dna.retrain_vit_config import DEIT_BATCH, DEIT_LR, RetrainViTConfig  # noqa: F401 (re-exported)


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
