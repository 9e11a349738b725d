"""The transfer tasks' configs alone, importable without torch: a run config's pre-flight and the
pipelines' ``--compile`` check every task's config before a backbone is built. The task modules
(:mod:`dna.transfer.seg`, ``det``, ``cls``, and ``common`` for :class:`TransferConfig`) train with
them and re-export them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dna import timm_names
from dna.data.classes import MAX_CLASSES
from dna.device_check import check_device_spec
from dna.errors import DnaError, check_keys, field_names

OPTIMIZERS = ("sgd", "adamw")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass
class TransferConfig:
    """Fields every transfer task takes. Subclasses set ``TASK`` and the task defaults.

    ``model`` is an architecture JSON URI (a searched MBConv net) or a timm model name (e.g. a ViT,
    with ``model_kwargs`` such as ``{"img_size": 32, "patch_size": 4}``). ``checkpoint`` is the
    URI of the trained classification weights (``<retrain out>/model.pt`` or a raw state dict);
    without it nothing runs unless ``random_init`` is set explicitly. ``data`` is
    ``builtin:shapes`` or a data set root (local or ``s3://``); ``data_format`` ``auto`` detects
    the layout. ``resolution`` and ``lr`` default per task (None). ``train_size``, ``val_size``
    and ``num_classes`` apply to the built-in data only. ``max_train_batches`` /
    ``max_val_batches`` cap each epoch (smoke runs on big data sets).
    """

    TASK: ClassVar[str] = ""
    DEFAULT_RESOLUTION: ClassVar[int] = 64
    DEFAULT_LR: ClassVar[dict[str, float]] = {"sgd": 0.01, "adamw": 1e-3}
    FORMATS: ClassVar[tuple[str, ...]] = ("auto", "builtin")

    model: str = ""
    out: str = ""
    checkpoint: str | None = None
    random_init: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "builtin:shapes"
    data_format: str = "auto"
    epochs: int = 10
    resolution: int | None = None
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    warmup_steps: int | None = None
    train_size: int = 1000
    val_size: int = 200
    num_classes: int = 10
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    num_samples: int = 8
    max_train_batches: int | None = None
    max_val_batches: int | None = None

    # -- derived -------------------------------------------------------------------------------

    @property
    def input_size(self) -> int:
        return int(self.resolution or self.DEFAULT_RESOLUTION)

    @property
    def learning_rate(self) -> float:
        return float(self.lr if self.lr is not None else self.DEFAULT_LR[self.optimizer])

    @property
    def is_builtin(self) -> bool:
        return self.data.startswith("builtin:")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, sources: bool = True) -> TransferConfig:
        """Raise :class:`DnaError` naming the first bad value; cheap checks first, then (with
        ``sources``) whether the model, checkpoint and data can be found. Returns ``self``."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise DnaError(f"model {self.model!r} must be an architecture .json URI or a timm model name")
        if not isinstance(self.out, str) or not self.out.strip():
            raise DnaError(f"out {self.out!r} must be a URI (local path or s3://bucket/prefix) for the outputs")
        if self.checkpoint is not None and (not isinstance(self.checkpoint, str) or not self.checkpoint.strip()):
            raise DnaError(f"checkpoint {self.checkpoint!r} must be a URI or None")
        if not isinstance(self.random_init, bool):
            raise DnaError(f"random_init {self.random_init!r} must be true or false")
        if self.checkpoint is None and not self.random_init:
            raise DnaError(
                f"no backbone weights for {self.model!r}: give a checkpoint URI (--checkpoint, e.g. "
                "<retrain out>/model.pt); transfer never starts from random weights unless "
                "random_init (--random-init) is given explicitly"
            )
        if self.checkpoint is not None and self.random_init:
            raise DnaError(f"random_init=True contradicts checkpoint={self.checkpoint!r}: give one of them")
        if not isinstance(self.model_kwargs, dict):
            raise DnaError(f"model_kwargs {self.model_kwargs!r} must be a JSON object (dict)")
        if not isinstance(self.data, str) or not self.data.strip():
            raise DnaError(f"data {self.data!r} must be 'builtin:shapes' or a data set root URI")
        if self.data.startswith("builtin:") and self.data != "builtin:shapes":
            raise DnaError(f"data {self.data!r}: the only built-in data set is 'builtin:shapes'")
        if self.data_format not in self.FORMATS:
            raise DnaError(f"data_format {self.data_format!r} must be one of {list(self.FORMATS)}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("train_size", 1), ("val_size", 1),
                          ("num_workers", 0), ("seed", 0), ("num_samples", 0)):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                raise DnaError(f"{name} {v!r} must be an integer >= {low}")
        for name in ("resolution", "warmup_steps", "max_train_batches", "max_val_batches"):
            v = getattr(self, name)
            low = 16 if name == "resolution" else (0 if name == "warmup_steps" else 1)
            if v is not None and (not _is_int(v) or v < low):
                raise DnaError(f"{name} {v!r} must be an integer >= {low} (or unset)")
        if self.optimizer not in OPTIMIZERS:
            raise DnaError(f"optimizer {self.optimizer!r} must be one of {list(OPTIMIZERS)}")
        if self.lr is not None and (not _is_num(self.lr) or self.lr <= 0):
            raise DnaError(f"lr {self.lr!r} must be a positive number")
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            raise DnaError(f"weight_decay {self.weight_decay!r} must be a number >= 0")
        if self.is_builtin:
            if not _is_int(self.num_classes) or not 1 <= self.num_classes <= MAX_CLASSES:
                raise DnaError(f"num_classes {self.num_classes!r} must be an integer in 1..{MAX_CLASSES} "
                               "for builtin:shapes")
        check_device_spec(self.device)
        self.validate_task()
        if sources:
            self._validate_sources()
        return self

    def validate_task(self) -> None:
        """Task-specific field checks (subclasses)."""

    def _validate_sources(self) -> None:
        from dna import storage

        storage.is_s3(self.out)  # malformed or unsupported URI -> DnaError
        if self.model.endswith(".json"):
            storage.check_readable(self.model)
        elif not timm_names.is_model(self.model):
            raise DnaError(f"model {self.model!r} is neither an architecture .json URI nor a timm model name")
        if self.checkpoint is not None:
            storage.check_readable(self.checkpoint)
        if not self.is_builtin:
            if not storage.is_dir(self.data):
                raise DnaError(f"data {self.data!r} is not a directory (local or s3://) nor 'builtin:shapes'")
            self.resolve_format()

    def resolve_format(self) -> str:
        """The data layout (``builtin`` or a task's format), detected when ``auto``."""
        return "builtin" if self.is_builtin else self.data_format

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferConfig:
        check_keys(d, field_names(cls), f"{cls.TASK} transfer config keys")
        return cls(**d)


@dataclass
class SegConfig(TransferConfig):
    """Segmentation transfer. ``data_format``: ``auto``/``builtin``/``voc``/``ade20k``.
    ``atrous_rates`` None scales DeepLab's (6, 12, 18) to the resolution."""

    TASK: ClassVar[str] = "seg"
    DEFAULT_RESOLUTION: ClassVar[int] = 64
    DEFAULT_LR: ClassVar[dict[str, float]] = {"sgd": 0.01, "adamw": 1e-3}
    FORMATS: ClassVar[tuple[str, ...]] = ("auto", "builtin", "voc", "ade20k")

    output_stride: int = 16
    atrous_rates: tuple[int, ...] | None = None
    aspp_channels: int = 256
    decoder_channels: int = 256
    decoder: bool = True
    scale_min: float = 0.5
    scale_max: float = 2.0

    def validate_task(self) -> None:
        if self.output_stride not in (8, 16, 32):
            raise DnaError(f"output_stride {self.output_stride!r} must be 8, 16 or 32")
        if self.atrous_rates is not None:
            if not isinstance(self.atrous_rates, (list, tuple)) or not self.atrous_rates or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in self.atrous_rates
            ):
                raise DnaError(f"atrous_rates {self.atrous_rates!r} must be a list of integers >= 1")
            self.atrous_rates = tuple(self.atrous_rates)
        for name in ("aspp_channels", "decoder_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise DnaError(f"{name} {v!r} must be a positive integer")
        if not isinstance(self.decoder, bool):
            raise DnaError(f"decoder {self.decoder!r} must be true or false")
        if not (0 < self.scale_min <= self.scale_max):
            raise DnaError(f"scale range ({self.scale_min!r}, {self.scale_max!r}) must satisfy 0 < min <= max")
        if self.batch_size < 2:
            raise DnaError(f"batch_size {self.batch_size} must be >= 2 (ASPP's image pooling uses BatchNorm)")
        if self.is_builtin and self.data_format not in ("auto", "builtin"):
            raise DnaError(f"data_format {self.data_format!r} does not fit data {self.data!r}")

    def resolve_format(self) -> str:
        if self.is_builtin:
            return "builtin"
        if self.data_format == "builtin":
            raise DnaError(f"data_format 'builtin' needs data 'builtin:shapes', not {self.data!r}")
        if self.data_format != "auto":
            return self.data_format
        from dna.transfer.datasets import detect_seg_format

        return detect_seg_format(self.data)


@dataclass
class DetConfig(TransferConfig):
    """Detection transfer. ``data_format``: ``auto``/``builtin``/``coco``. ``min_size`` and
    ``max_size`` (Faster R-CNN's resize) default to ``resolution`` (built-in images are square)
    and ``resolution * 1333 / 800``. ``freeze_bn`` freezes the backbone's BatchNorm (use it with
    small per-device batches)."""

    TASK: ClassVar[str] = "det"
    DEFAULT_RESOLUTION: ClassVar[int] = 64
    DEFAULT_LR: ClassVar[dict[str, float]] = {"sgd": 0.02, "adamw": 1e-3}
    FORMATS: ClassVar[tuple[str, ...]] = ("auto", "builtin", "coco")

    fpn: bool = False
    min_size: int | None = None
    max_size: int | None = None
    anchor_sizes: tuple[int, ...] | None = None
    roi_size: int | None = None
    fpn_channels: int = 256
    representation_size: int = 1024
    freeze_bn: bool = False
    proposals_train: int = 2000
    proposals_test: int = 1000
    rois_per_image: int = 512
    score_thresh: float = 0.05
    detections_per_img: int = 100

    @property
    def min_side(self) -> int:
        return int(self.min_size or self.input_size)

    @property
    def max_side(self) -> int:
        if self.max_size:
            return int(self.max_size)
        return self.min_side if self.is_builtin else max(self.min_side, round(self.min_side * 1333 / 800))

    def validate_task(self) -> None:
        for name in ("fpn", "freeze_bn"):
            if not isinstance(getattr(self, name), bool):
                raise DnaError(f"{name} {getattr(self, name)!r} must be true or false")
        for name, low in (("min_size", 16), ("max_size", 16), ("roi_size", 1)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise DnaError(f"{name} {v!r} must be an integer >= {low} (or unset)")
        if self.max_size is not None and self.max_size < self.min_side:
            raise DnaError(f"max_size {self.max_size} must be >= min_size {self.min_side}")
        for name in ("fpn_channels", "representation_size", "proposals_train", "proposals_test",
                     "rois_per_image", "detections_per_img"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise DnaError(f"{name} {v!r} must be a positive integer")
        if self.anchor_sizes is not None:
            if not isinstance(self.anchor_sizes, (list, tuple)) or not self.anchor_sizes or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in self.anchor_sizes
            ):
                raise DnaError(f"anchor_sizes {self.anchor_sizes!r} must be a list of positive numbers")
            self.anchor_sizes = tuple(self.anchor_sizes)
        if not isinstance(self.score_thresh, (int, float)) or not 0 <= self.score_thresh < 1:
            raise DnaError(f"score_thresh {self.score_thresh!r} must be in [0, 1)")
        if self.is_builtin and self.data_format not in ("auto", "builtin"):
            raise DnaError(f"data_format {self.data_format!r} does not fit data {self.data!r}")

    def resolve_format(self) -> str:
        if self.is_builtin:
            return "builtin"
        if self.data_format == "builtin":
            raise DnaError(f"data_format 'builtin' needs data 'builtin:shapes', not {self.data!r}")
        from dna.transfer.datasets import is_coco

        if self.data_format in ("auto", "coco") and is_coco(self.data):
            return "coco"
        raise DnaError(
            f"data {self.data!r} is not a COCO tree (expected annotations/instances_train.json, "
            "annotations/instances_val.json and the images)"
        )


@dataclass
class ClsConfig(TransferConfig):
    """Classification fine-tuning. ``data_format``: ``auto``/``builtin``/``imagefolder``."""

    TASK: ClassVar[str] = "cls"
    DEFAULT_RESOLUTION: ClassVar[int] = 32
    DEFAULT_LR: ClassVar[dict[str, float]] = {"sgd": 0.01, "adamw": 5e-4}
    FORMATS: ClassVar[tuple[str, ...]] = ("auto", "builtin", "imagefolder")

    batch_size: int = 64
    label_smoothing: float = 0.0
    drop_rate: float = 0.0
    augment: bool = True

    def validate_task(self) -> None:
        if not isinstance(self.label_smoothing, (int, float)) or not 0 <= self.label_smoothing < 1:
            raise DnaError(f"label_smoothing {self.label_smoothing!r} must be in [0, 1)")
        if not isinstance(self.drop_rate, (int, float)) or not 0 <= self.drop_rate < 1:
            raise DnaError(f"drop_rate {self.drop_rate!r} must be in [0, 1)")
        if not isinstance(self.augment, bool):
            raise DnaError(f"augment {self.augment!r} must be true or false")
        if self.is_builtin and self.data_format not in ("auto", "builtin"):
            raise DnaError(f"data_format {self.data_format!r} does not fit data {self.data!r}")

    def resolve_format(self) -> str:
        if self.is_builtin:
            return "builtin"
        if self.data_format == "builtin":
            raise DnaError(f"data_format 'builtin' needs data 'builtin:shapes', not {self.data!r}")
        from dna.data import class_names

        class_names(self.data_config())  # raises DnaError naming the root when it is no ImageFolder
        return "imagefolder"

    def data_config(self):
        from dna.data import DataConfig

        return DataConfig(uri=self.data, resolution=self.input_size, batch_size=self.batch_size,
                          num_workers=self.num_workers, train_size=self.train_size, val_size=self.val_size,
                          num_classes=self.num_classes, seed=self.seed, augment=self.augment,
                          rating_size=1)
