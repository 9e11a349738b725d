"""Transfer of a trained searched net to other tasks (SPEC section 9).

- :func:`transfer_seg` (:class:`SegConfig`): DeepLabv3+ on the backbone's stride-4 and stride-16
  maps; Pascal VOC, ADE20K or the built-in shapes; mIoU.
- :func:`transfer_det` (:class:`DetConfig`): torchvision Faster R-CNN with the backbone as the C4
  feature extractor (the remaining stages are the RoI head), or an FPN; COCO or the built-in
  shapes; COCO mAP.
- :func:`transfer_cls` (:class:`ClsConfig`): fine-tuning with a new classifier; ImageFolder or
  the built-in shapes; top-1.

Backbones: searched MBConv nets (timm ``EfficientNet``) and ViTs (timm ``VisionTransformer``, the
searched one included), see :mod:`dna.transfer.backbone`. Weights come from a checkpoint; random
weights only with an explicit ``random_init=True`` (warned, and ``"backbone": "RANDOM INIT"`` in the
metrics). Every run writes ``metrics.json``, ``model.pt`` and ``samples.png`` under ``out``.
"""

from dna.transfer.backbone import RANDOM_INIT, feature_backbone, load_backbone, split_c4
from dna.transfer.cls import ClsConfig, transfer_cls
from dna.transfer.common import TransferConfig
from dna.transfer.det import DetConfig, build_detector, mean_average_precision, transfer_det
from dna.transfer.seg import (
    DeepLabV3Plus,
    SegConfig,
    SegMetric,
    build_segmenter,
    mean_iou,
    transfer_seg,
)

__all__ = [
    "RANDOM_INIT",
    "ClsConfig",
    "DeepLabV3Plus",
    "DetConfig",
    "SegConfig",
    "SegMetric",
    "TransferConfig",
    "build_detector",
    "build_segmenter",
    "feature_backbone",
    "load_backbone",
    "mean_average_precision",
    "mean_iou",
    "split_c4",
    "transfer_cls",
    "transfer_det",
    "transfer_seg",
]
