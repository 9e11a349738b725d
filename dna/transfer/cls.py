"""Classification transfer: fine-tune a trained searched net on a new data set (SPEC section 9,
CIFAR-10/100 in the paper). The classifier is replaced for the new number of classes; every other
weight starts from the checkpoint. Data: ``builtin:shapes`` or an ImageFolder root (local or
``s3://``; ``train/`` and ``val/`` class folders) through :mod:`dna.data`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.errors import DnaError
from dna.progress import OnEpochEnd
from dna.transfer.backbone import _enable_dynamic_size, is_vit, load_backbone, vit_img_size
from dna.transfer.common import (
    Timer,
    fine_tune,
    make_optimizer,
    make_schedule,
    round_floats,
    seed_everything,
    steps_per_epoch,
    write_outputs,
)
from dna.transfer_config import ClsConfig  # noqa: F401 (re-exported)


@torch.no_grad()
def evaluate_cls(model: nn.Module, loader, num_classes: int, device: torch.device,
                 max_batches: int | None = None) -> dict[str, Any]:
    """Top-1 (and top-5 where there are more than 5 classes), mean loss, per-class accuracy."""
    from dna.device import autocast

    model.eval()
    correct1 = correct5 = n = 0
    loss = 0.0
    hits = torch.zeros(num_classes)
    seen = torch.zeros(num_classes)
    for i, (x, y) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x)
        logits = logits.float()
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        pred = logits.argmax(1)
        correct1 += int((pred == y).sum())
        if num_classes > 5:
            correct5 += int((logits.topk(5, 1).indices == y[:, None]).any(1).sum())
        n += x.shape[0]
        seen += torch.bincount(y.cpu(), minlength=num_classes).float()
        hits += torch.bincount(y[pred == y].cpu(), minlength=num_classes).float()
    out = {"top1": correct1 / max(1, n), "val_loss": loss / max(1, n),
           "per_class_acc": [float(h / s) if s > 0 else None for h, s in zip(hits, seen, strict=True)]}
    if num_classes > 5:
        out["top5"] = correct5 / max(1, n)
    return out


@torch.no_grad()
def cls_samples(model: nn.Module, dataset, n: int, device: torch.device, classes: list[str]) -> bytes | None:
    from dna.transfer import viz

    if n <= 0 or len(dataset) == 0:
        return None
    model.eval()
    tiles = []
    for i in range(min(n, len(dataset))):
        x, y = dataset[i]
        p = int(model(x[None].to(device)).argmax(1)[0])
        tiles.append(viz.caption(viz.enlarge(viz.to_uint8(x)), f"{classes[p]} / {classes[y]}", ok=p == y))
    per_row = 4
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    return viz.png_bytes(viz.grid(rows, header=["prediction / truth"]))


def transfer_cls(cfg: ClsConfig, on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Fine-tune the trained net on ``cfg.data``; write ``metrics.json``, ``model.pt`` (a plain
    classification checkpoint ``{"model": state_dict, ...}``, loadable by :func:`dna.teacher.load_state`)
    and ``samples.png``; return the metrics (``top1`` first). ``on_epoch_end``: see
    :func:`dna.transfer.common.fine_tune`."""
    from dna.data import class_names, make_loader
    from dna.device import autocast, resolve_device

    cfg.validate()
    timer = Timer()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    dcfg = cfg.data_config()
    classes = class_names(dcfg)
    num_classes = len(classes)
    kwargs = dict(cfg.model_kwargs)
    if cfg.drop_rate:
        kwargs.setdefault("drop_rate", cfg.drop_rate)
    model, source = load_backbone(cfg.model, cfg.checkpoint, cfg.random_init, kwargs)
    model.reset_classifier(num_classes)
    if is_vit(model) and vit_img_size(model) not in (None, (cfg.input_size, cfg.input_size)):
        _enable_dynamic_size(model)
    model = model.to(device)
    train_loader = make_loader(dcfg, "train", "cls", drop_last=True)
    val_loader = make_loader(dcfg, "val", "cls", shuffle=False)
    if len(train_loader) == 0:
        raise DnaError(f"data {cfg.data!r}: fewer training images than batch_size {cfg.batch_size}")
    per_epoch = steps_per_epoch(train_loader, cfg.max_train_batches)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, per_epoch * cfg.epochs, cfg.warmup_steps, kind="cosine")
    def batch_loss(batch):
        x, y = batch[0].to(device), batch[1].to(device)
        with autocast(device):
            logits = model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing), x.shape[0]

    history = fine_tune(model, train_loader, per_epoch, cfg.epochs, opt, sched, batch_loss, "classification",
                        on_epoch_end=on_epoch_end)
    result = evaluate_cls(model, val_loader, num_classes, device, cfg.max_val_batches)
    metrics = {
        "task": "cls",
        "model": cfg.model,
        "backbone": source,
        "data": cfg.data,
        "data_format": cfg.resolve_format(),
        "top1": result["top1"],
        **({"top5": result["top5"]} if "top5" in result else {}),
        "val_loss": result["val_loss"],
        "per_class_acc": dict(zip(classes, result["per_class_acc"], strict=True)),
        "num_classes": num_classes,
        "resolution": cfg.input_size,
        "epochs": cfg.epochs,
        "train_loss": history,
        "train_images": len(train_loader.dataset),
        "val_images": len(val_loader.dataset),
        "seconds": timer.seconds,
    }
    metrics = round_floats(metrics)
    png = cls_samples(model, val_loader.dataset, cfg.num_samples, device, classes)
    return write_outputs(cfg, model, metrics, png,
                         extra={"classes": classes, "num_classes": num_classes})
