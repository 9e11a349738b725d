"""Object detection transfer: the searched backbone in torchvision's Faster R-CNN (SPEC section 9).

Two ways to plug the backbone in:

- **C4** (the paper's and FBNetV3's): the net up to stride 16 is the feature extractor shared by
  the RPN and the RoI head; RoIAlign (14 x 14 for a CNN) feeds the *remaining* stages of the net
  (the stride-32 stages, ``conv_head``, global pooling) as the box head. For a ViT the first three
  quarters of the blocks are the trunk and the last quarter runs on each RoI's 7 x 7 tokens.
- **FPN** (``fpn=True``): a feature pyramid over the stride-4/8/16/32 maps (plus max-pooled
  stride 64), multi-scale RoIAlign 7 x 7 and torchvision's two-layer MLP box head.

Anchor sizes default to fractions of ``min_size`` (torchvision's 32..512 at 800 px), so the
built-in 64 px images get anchors of 3..41 px. Images are normalised by the data sets already,
so the model's own normalisation is the identity. Metric: COCO mAP (torchmetrics
``MeanAveragePrecision``, pycocotools backend), ``mAP`` (IoU .50:.95), ``mAP50``, ``mAP75``, per
class AP.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from dna.errors import DnaError
from dna.progress import OnEpochEnd
from dna.transfer.backbone import (
    FeatureBackbone,
    feature_backbone,
    freeze_batchnorm,
    is_vit,
    load_backbone,
    split_c4,
)
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
from dna.transfer_config import DetConfig  # noqa: F401 (re-exported)

ANCHOR_FRACTIONS = (0.04, 0.08, 0.16, 0.32, 0.64)  # torchvision's (32, ..., 512) at 800 px
ASPECT_RATIOS = (0.5, 1.0, 2.0)


# --------------------------------------------------------------------------------------------
# Model


class FPNBackbone(nn.Module):
    """A :class:`FeatureBackbone` plus torchvision's FPN (and a max-pooled extra level)."""

    def __init__(self, body: FeatureBackbone, out_channels: int = 256):
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def default_anchor_sizes(min_size: int) -> tuple[int, ...]:
    sizes: list[int] = []
    for f in ANCHOR_FRACTIONS:
        s = max(2, round(min_size * f))
        if sizes and s <= sizes[-1]:
            s = sizes[-1] + 1
        sizes.append(s)
    return tuple(sizes)


def build_detector(
    model: nn.Module,
    num_classes: int,
    fpn: bool = False,
    min_size: int = 800,
    max_size: int = 1333,
    anchor_sizes: tuple[int, ...] | None = None,
    roi_size: int | None = None,
    fpn_channels: int = 256,
    representation_size: int = 1024,
    freeze_bn: bool = False,
    proposals_train: int = 2000,
    proposals_test: int = 1000,
    rois_per_image: int = 512,
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
):
    """A torchvision ``FasterRCNN`` around a classification net whose weights are loaded;
    ``num_classes`` includes the background."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    sizes = tuple(anchor_sizes) if anchor_sizes else default_anchor_sizes(min_size)
    if freeze_bn:
        model = freeze_batchnorm(model)
    if fpn:
        body = feature_backbone(model, (4, 8, 16, 32))
        backbone = FPNBackbone(body, fpn_channels)
        levels = len(body.strides) + 1
        if len(sizes) != levels:
            # one size per level: spread the given sizes over the pyramid
            idx = [round(i * (len(sizes) - 1) / max(1, levels - 1)) for i in range(levels)]
            sizes = tuple(sizes[i] for i in idx)
        anchors = AnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=(ASPECT_RATIOS,) * levels)
        pool_size = roi_size or 7
        roi_pool = MultiScaleRoIAlign([str(i) for i in range(len(body.strides))], pool_size, 2)
        box_head = TwoMLPHead(fpn_channels * pool_size * pool_size, representation_size)
        predictor = FastRCNNPredictor(representation_size, num_classes)
    else:
        pool_size = roi_size or (7 if is_vit(model) else 14)
        backbone, box_head = split_c4(model, pool_size)
        anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ASPECT_RATIOS,))
        roi_pool = MultiScaleRoIAlign(["0"], pool_size, 2)
        predictor = FastRCNNPredictor(box_head.out_channels, num_classes)
    det = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=proposals_train,
        rpn_post_nms_top_n_train=proposals_train,
        rpn_pre_nms_top_n_test=proposals_test,
        rpn_post_nms_top_n_test=proposals_test,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=predictor,
        box_score_thresh=score_thresh,
        box_detections_per_img=detections_per_img,
        box_batch_size_per_image=rois_per_image,
    )
    det.anchor_sizes = sizes
    det.roi_size = pool_size
    return det


def detection_loss(model: nn.Module, images, targets) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of Faster R-CNN's four losses (model in train mode) and the parts."""
    parts = model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}


# --------------------------------------------------------------------------------------------
# Metric


def _metric():
    from torchmetrics.detection import MeanAveragePrecision

    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                backend="pycocotools")


def summarize_map(result: dict, class_names: list[str] | None = None) -> dict[str, Any]:
    """torchmetrics' result as ``mAP``/``mAP50``/``mAP75``/``mAR100`` and ``per_class_AP``
    (keyed by name; labels are ``1..K``). -1 (nothing to score) becomes 0 for the headline."""

    def val(key: str) -> float:
        v = float(result[key]) if key in result else 0.0
        return max(v, 0.0)

    classes = result.get("classes", torch.zeros(0))
    per = result.get("map_per_class", torch.zeros(0))
    classes = classes.reshape(-1).tolist()
    per = per.reshape(-1).tolist()
    per_class = {}
    for c, ap in zip(classes, per, strict=False):
        name = class_names[c - 1] if class_names and 0 < c <= len(class_names) else str(c)
        per_class[name] = None if ap < 0 else ap
    return {"mAP": val("map"), "mAP50": val("map_50"), "mAP75": val("map_75"), "mAR100": val("mar_100"),
            "per_class_AP": per_class}


def mean_average_precision(preds: list[dict], targets: list[dict],
                           class_names: list[str] | None = None) -> dict[str, Any]:
    """COCO mAP of ``preds`` (``boxes``, ``scores``, ``labels``) against ``targets`` (``boxes``,
    ``labels``), boxes xyxy in pixels."""
    m = _metric()
    m.update([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
             [{k: t[k] for k in ("boxes", "labels")} for t in targets])
    return summarize_map(m.compute(), class_names)


# --------------------------------------------------------------------------------------------
# Config and the task


def det_datasets(cfg: DetConfig):
    """(train set, val set, class names without the background)."""
    fmt = cfg.resolve_format()
    if fmt == "builtin":
        from dna.data import DataConfig, class_names, make_dataset

        dcfg = DataConfig(uri="builtin:shapes", resolution=cfg.input_size, batch_size=cfg.batch_size,
                          train_size=cfg.train_size, val_size=cfg.val_size, num_classes=cfg.num_classes,
                          seed=cfg.seed)
        return make_dataset(dcfg, "train", "det"), make_dataset(dcfg, "val", "det"), class_names(dcfg)
    from dna.transfer.datasets import CocoDetection

    train = CocoDetection(cfg.data, "train", cfg.min_side, cfg.max_side, training=True)
    val = CocoDetection(cfg.data, "val", cfg.min_side, cfg.max_side, training=False)
    if train.cat_ids != val.cat_ids:
        raise DnaError(f"data {cfg.data!r}: train and val annotations list different categories")
    return train, val, list(train.classes)


def _unscale(d: dict, target: dict) -> dict:
    s = target.get("scale")
    if s is None:
        return d
    d = dict(d)
    d["boxes"] = d["boxes"] / s.to(d["boxes"].device)
    return d


@torch.no_grad()
def evaluate_det(model: nn.Module, loader, device: torch.device, class_names: list[str] | None = None,
                 max_batches: int | None = None) -> dict[str, Any]:
    """COCO mAP over a loader of ``(list of images, list of targets)``; boxes are mapped back to
    the original image pixels where the data set resized (``scale`` in the target)."""
    model.eval()
    metric = _metric()
    for i, (images, targets) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        outputs = model([im.to(device) for im in images])
        preds = [_unscale({k: o[k].cpu() for k in ("boxes", "scores", "labels")}, t)
                 for o, t in zip(outputs, targets, strict=True)]
        gts = [_unscale({"boxes": t["boxes"], "labels": t["labels"]}, t) for t in targets]
        metric.update(preds, gts)
    return summarize_map(metric.compute(), class_names)


@torch.no_grad()
def det_samples(model: nn.Module, dataset, n: int, device: torch.device, class_names: list[str]) -> bytes | None:
    from dna.transfer import viz

    if n <= 0 or len(dataset) == 0:
        return None
    model.eval()
    rows = []
    for i in range(min(n, len(dataset))):
        x, t = dataset[i]
        out = model([x.to(device)])[0]
        img = viz.to_uint8(x)
        rows.append([
            viz.draw_boxes(img, t["boxes"], t["labels"], names=class_names),
            viz.draw_boxes(img, out["boxes"].cpu(), out["labels"].cpu(), out["scores"].cpu(), names=class_names),
        ])
    return viz.png_bytes(viz.grid(rows, header=["ground truth", "prediction (score >= 0.3)"]))


def make_det_model(cfg: DetConfig, model: nn.Module, num_classes: int):
    return build_detector(
        model, num_classes, fpn=cfg.fpn, min_size=cfg.min_side, max_size=cfg.max_side,
        anchor_sizes=cfg.anchor_sizes, roi_size=cfg.roi_size, fpn_channels=cfg.fpn_channels,
        representation_size=cfg.representation_size, freeze_bn=cfg.freeze_bn,
        proposals_train=cfg.proposals_train, proposals_test=cfg.proposals_test,
        rois_per_image=cfg.rois_per_image, score_thresh=cfg.score_thresh,
        detections_per_img=cfg.detections_per_img,
    )


def transfer_det(cfg: DetConfig, on_epoch_end: OnEpochEnd | None = None) -> dict[str, Any]:
    """Fine-tune Faster R-CNN (C4, or FPN with ``cfg.fpn``) with the searched backbone; write
    ``metrics.json``, ``model.pt`` and ``samples.png`` under ``cfg.out``; return the metrics.
    ``on_epoch_end``: see :func:`dna.transfer.common.fine_tune`."""
    from torch.utils.data import DataLoader

    from dna.device import resolve_device
    from dna.transfer.datasets import collate_list

    cfg.validate()
    timer = Timer()
    generator = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train_set, val_set, classes = det_datasets(cfg)
    num_classes = len(classes) + 1
    model_cls, source = load_backbone(cfg.model, cfg.checkpoint, cfg.random_init, cfg.model_kwargs)
    model = make_det_model(cfg, model_cls, num_classes).to(device)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                              collate_fn=collate_list, generator=generator)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                            collate_fn=collate_list)
    per_epoch = steps_per_epoch(train_loader, cfg.max_train_batches)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, per_epoch * cfg.epochs, cfg.warmup_steps, kind="cosine")
    def batch_loss(batch):
        images, targets = batch
        images = [im.to(device) for im in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        return detection_loss(model, images, targets)[0], len(images)

    history = fine_tune(model, train_loader, per_epoch, cfg.epochs, opt, sched, batch_loss, "detection",
                        clip_grad=10.0, on_epoch_end=on_epoch_end)
    result = evaluate_det(model, val_loader, device, classes, cfg.max_val_batches)
    metrics = {
        "task": "det",
        "model": cfg.model,
        "backbone": source,
        "head": "faster_rcnn_fpn" if cfg.fpn else "faster_rcnn_c4",
        "data": cfg.data,
        "data_format": cfg.resolve_format(),
        **result,
        "num_classes": num_classes,
        "min_size": cfg.min_side,
        "max_size": cfg.max_side,
        "anchor_sizes": list(model.anchor_sizes),
        "roi_size": model.roi_size,
        "epochs": cfg.epochs,
        "train_loss": history,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "seconds": timer.seconds,
    }
    metrics = round_floats(metrics)
    png = det_samples(model, val_set, cfg.num_samples, device, classes)
    return write_outputs(cfg, model, metrics, png, extra={"classes": classes, "num_classes": num_classes})
