"""Semantic segmentation transfer: the searched backbone inside DeepLabv3+ (SPEC section 9).

DeepLabv3+ (Chen et al. 2018): ASPP on the deepest feature map (output stride 16 by dilating
the last stage of a CNN; a ViT's token map resampled to stride 16), a decoder that fuses the
stride-4 feature (1x1 conv to 48 channels) with the upsampled ASPP output through two 3x3 convs,
a 1x1 classifier, bilinear upsampling to the input. ``decoder=False`` gives the plain ASPP
segmenter (DeepLabv3), which the paper uses for ADE20K.

Metric: mean IoU from a confusion matrix accumulated over the validation set (pixels labelled
255 are ignored; a class absent from both prediction and ground truth is left out of the mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.errors import DnaError
from dna.progress import OnEpochEnd
from dna.transfer.backbone import FeatureBackbone, feature_backbone, is_cnn, load_backbone
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
from dna.transfer.datasets import IGNORE_INDEX
from dna.transfer_config import SegConfig  # noqa: F401 (re-exported)

ATROUS_RATES_512 = (6, 12, 18)  # DeepLab's rates at a 512 px crop and output stride 16


# --------------------------------------------------------------------------------------------
# Metric


class SegMetric:
    """Confusion-matrix mIoU. ``update(pred, target)`` with class-index tensors of equal shape;
    pixels whose target is ``ignore_index`` (or outside ``0..num_classes-1``) do not count."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = pred.detach().reshape(-1).long(), target.detach().reshape(-1).long()
        if pred.shape != target.shape:
            raise DnaError(f"prediction has {pred.numel()} pixels, target {target.numel()}")
        target = target.to(pred.device)
        keep = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        n = self.num_classes
        idx = target[keep] * n + pred[keep].clamp(0, n - 1)  # counted where the data are (GPU too)
        self.matrix += torch.bincount(idx, minlength=n * n).reshape(n, n).cpu()

    def compute(self) -> dict[str, Any]:
        """``mIoU``, ``pixel_acc``, ``mean_acc`` and ``iou`` per class (None where a class
        appears neither in the targets nor in the predictions)."""
        m = self.matrix.double()
        tp = m.diag()
        gt, pr = m.sum(1), m.sum(0)
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
        valid = ~torch.isnan(iou)
        total = m.sum()
        return {
            "mIoU": float(iou[valid].mean()) if valid.any() else 0.0,
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
            "mean_acc": float(acc[~torch.isnan(acc)].mean()) if (~torch.isnan(acc)).any() else 0.0,
            "iou": [None if np.isnan(v) else float(v) for v in iou.tolist()],
        }


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
             ignore_index: int = IGNORE_INDEX) -> float:
    m = SegMetric(num_classes, ignore_index)
    m.update(pred, target)
    return m.compute()["mIoU"]


# --------------------------------------------------------------------------------------------
# Model


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ on a :class:`FeatureBackbone` giving ``[low-level (stride 4), deep]`` maps.

    ``forward(x) -> logits [B, num_classes, H, W]``.
    """

    def __init__(self, backbone: FeatureBackbone, num_classes: int, atrous_rates=ATROUS_RATES_512,
                 aspp_channels: int = 256, decoder_channels: int = 256, low_level_channels: int = 48,
                 decoder: bool = True):
        from torchvision.models.segmentation.deeplabv3 import ASPP

        super().__init__()
        if len(backbone.channels) != 2:
            raise DnaError(f"DeepLabv3+ needs two feature levels, the backbone gives {backbone.strides}")
        self.backbone = backbone
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.aspp = ASPP(backbone.channels[-1], list(atrous_rates), aspp_channels)
        self.decoder = decoder
        if decoder:
            self.low = _conv_bn_relu(backbone.channels[0], low_level_channels, 1)
            self.fuse = nn.Sequential(
                _conv_bn_relu(aspp_channels + low_level_channels, decoder_channels, 3),
                _conv_bn_relu(decoder_channels, decoder_channels, 3),
            )
            out = decoder_channels
        else:
            self.low = self.fuse = None
            out = aspp_channels
        self.classifier = nn.Conv2d(out, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, deep = self.backbone(x)
        y = self.aspp(deep)
        if self.decoder:
            y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
            y = self.fuse(torch.cat([y, self.low(low)], dim=1))
        y = self.classifier(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def scaled_atrous_rates(resolution: int, output_stride: int) -> tuple[int, ...]:
    """DeepLab's (6, 12, 18) at 512 px / OS16, scaled to this input and output stride (each at
    least 1 and distinct), so the ASPP keeps seeing the same fraction of the image."""
    f = resolution / 512 * 16 / output_stride
    rates: list[int] = []
    for r in ATROUS_RATES_512:
        v = max(1, round(r * f))
        if rates and v <= rates[-1]:
            v = rates[-1] + 1
        rates.append(v)
    return tuple(rates)


def build_segmenter(model: nn.Module, num_classes: int, output_stride: int = 16,
                    atrous_rates=None, resolution: int = 512, aspp_channels: int = 256,
                    decoder_channels: int = 256, decoder: bool = True) -> DeepLabV3Plus:
    """DeepLabv3+ around a classification net (CNN or ViT) whose weights are already loaded."""
    strides = (4, 32) if is_cnn(model) else (4, output_stride)
    backbone = feature_backbone(model, strides, output_stride=output_stride)
    rates = tuple(atrous_rates) if atrous_rates else scaled_atrous_rates(resolution, backbone.strides[-1])
    return DeepLabV3Plus(backbone, num_classes, rates, aspp_channels, decoder_channels,
                         low_level_channels=min(48, decoder_channels), decoder=decoder)


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


# --------------------------------------------------------------------------------------------
# Config and the task


def seg_datasets(cfg: SegConfig):
    """(train set, val set, class names incl. background) for the configured data."""
    fmt = cfg.resolve_format()
    if fmt == "builtin":
        from dna.data import DataConfig, class_names, make_dataset

        dcfg = DataConfig(uri="builtin:shapes", resolution=cfg.input_size, batch_size=cfg.batch_size,
                          train_size=cfg.train_size, val_size=cfg.val_size, num_classes=cfg.num_classes,
                          seed=cfg.seed)
        classes = ["background", *class_names(dcfg)]
        return make_dataset(dcfg, "train", "seg"), make_dataset(dcfg, "val", "seg"), classes
    from dna.transfer.datasets import make_seg_dataset

    scale = (cfg.scale_min, cfg.scale_max)
    train = make_seg_dataset(cfg.data, fmt, "train", cfg.input_size, True, scale)
    val = make_seg_dataset(cfg.data, fmt, "val", cfg.input_size, False, scale)
    return train, val, list(train.classes)


@torch.no_grad()
def evaluate_seg(model: nn.Module, loader, num_classes: int, device: torch.device,
                 max_batches: int | None = None) -> dict[str, Any]:
    from dna.device import autocast

    model.eval()
    metric = SegMetric(num_classes)
    total, n = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x)
        total += float(seg_loss(logits, y)) * x.shape[0]
        n += x.shape[0]
        metric.update(logits.argmax(1), y)
    out = metric.compute()
    out["val_loss"] = total / max(1, n)
    return out


@torch.no_grad()
def seg_samples(model: nn.Module, dataset, n: int, device: torch.device,
                class_names: list[str] | None = None) -> bytes | None:
    """Image / ground truth / prediction rows, with a legend of the classes shown (``class_names``)."""
    from dna.transfer import viz

    if n <= 0 or len(dataset) == 0:
        return None
    model.eval()
    rows, present = [], set()
    for i in range(min(n, len(dataset))):
        x, y = dataset[i]
        pred = model(x[None].to(device)).argmax(1)[0].cpu()
        img = viz.to_uint8(x)
        present |= set(y.unique().tolist()) | set(pred.unique().tolist())
        rows.append([viz.enlarge(img), viz.overlay_mask(img, y.numpy()), viz.overlay_mask(img, pred.numpy())])
    panel = viz.grid(rows, header=["image", "ground truth", "prediction"])
    if class_names:
        panel = viz.with_legend(panel, viz.legend_entries(class_names, sorted(present), IGNORE_INDEX))
    return viz.png_bytes(panel)


def transfer_seg(cfg: SegConfig, on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Fine-tune DeepLabv3+ with the searched backbone; write ``metrics.json``, ``model.pt`` and
    ``samples.png`` under ``cfg.out``; return the metrics (``mIoU`` first). ``on_epoch_end``: see
    :func:`dna.transfer.common.fine_tune`."""
    from torch.utils.data import DataLoader

    from dna.device import autocast, resolve_device

    cfg.validate()
    timer = Timer()
    generator = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train_set, val_set, classes = seg_datasets(cfg)
    num_classes = len(classes)
    if len(train_set) < 2:
        raise DnaError(f"data {cfg.data!r}: the train split has {len(train_set)} image(s), need at least 2")
    model_cls, source = load_backbone(cfg.model, cfg.checkpoint, cfg.random_init, cfg.model_kwargs)
    model = build_segmenter(model_cls, num_classes, cfg.output_stride, cfg.atrous_rates, cfg.input_size,
                            cfg.aspp_channels, cfg.decoder_channels, cfg.decoder).to(device)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) >= cfg.batch_size,
                              num_workers=cfg.num_workers, generator=generator)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    per_epoch = steps_per_epoch(train_loader, cfg.max_train_batches)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, per_epoch * cfg.epochs, cfg.warmup_steps, kind="poly")
    def batch_loss(batch):
        x, y = batch
        if x.shape[0] < 2:          # BatchNorm in the head needs two samples
            return None
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x)
        return seg_loss(logits, y), x.shape[0]

    history = fine_tune(model, train_loader, per_epoch, cfg.epochs, opt, sched, batch_loss, "segmentation",
                        on_epoch_end=on_epoch_end)
    result = evaluate_seg(model, val_loader, num_classes, device, cfg.max_val_batches)
    metrics = {
        "task": "seg",
        "model": cfg.model,
        "backbone": source,
        "head": "deeplabv3plus" if cfg.decoder else "deeplabv3",
        "data": cfg.data,
        "data_format": cfg.resolve_format(),
        "mIoU": result["mIoU"],
        "pixel_acc": result["pixel_acc"],
        "mean_acc": result["mean_acc"],
        "val_loss": result["val_loss"],
        "per_class_iou": dict(zip(classes, result["iou"], strict=True)),
        "num_classes": num_classes,
        "resolution": cfg.input_size,
        "output_stride": model.backbone.strides[-1],
        "atrous_rates": list(model.atrous_rates),
        "epochs": cfg.epochs,
        "train_loss": history,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "seconds": timer.seconds,
    }
    metrics = round_floats(metrics)
    png = seg_samples(model, val_set, cfg.num_samples, device, classes)
    return write_outputs(cfg, model, metrics, png, extra={"classes": classes, "num_classes": num_classes})
