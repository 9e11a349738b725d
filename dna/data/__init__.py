"""Data for every stage: a typed config and one factory for data sets and loaders.

``DataConfig.uri`` is ``"builtin:shapes"`` (the generated default, see :mod:`dna.data.shapes`) or an
ImageFolder root (local path or ``s3://...``, see :mod:`dna.data.imagefolder`).

Splits: ``train``, ``val`` and ``rating`` (the held-out split used to rate paths, disjoint from
``train``: a separate seed stream for the built-in set, files held out of ``train`` for an
ImageFolder). Tasks: ``cls`` for both kinds; ``seg`` and ``det`` for the built-in set only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dna.data.classes import CLASS_NAMES, MAX_CLASSES
from dna.errors import DnaError, check_keys, field_names

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

# torch, timm and the data sets are imported where data are made, not here: run configs, the
# pipelines' --compile and the `dna` parsers import this module for DataConfig alone.

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("shapes",)
SPLITS = ("train", "val", "rating")
TASKS = ("cls", "seg", "det")
# Bounds of a data config: beyond them a run allocates gigabytes or hangs generating images
# before failing, so they are rejected up front.
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024
MAX_SIZE = 10_000_000           # images in one split
MAX_BATCH = 65_536
MAX_WORKERS = 256
MAX_SEED = 2**32 - 1            # numpy's seed range

__all__ = [
    "BUILTINS",
    "SPLITS",
    "TASKS",
    "DataConfig",
    "class_names",
    "collate_detection",
    "is_builtin",
    "make_dataset",
    "make_loader",
    "num_classes",
]


@dataclass
class DataConfig:
    """Where the data come from and how they are batched. Validated on construction."""

    uri: str = "builtin:shapes"  # or a local/s3 ImageFolder root
    resolution: int = 32
    batch_size: int = 64
    num_workers: int = 0
    train_size: int = 2000  # builtin only
    val_size: int = 500  # builtin only
    rating_size: int = 256  # held out of train (for ImageFolder: spread evenly over classes)
    num_classes: int = 10  # builtin only; an ImageFolder infers it
    seed: int = 0
    auto_augment: str | None = None  # timm policy, e.g. "rand-m9-mstd0.5"
    augment: bool = True  # train-time augmentation on the train split

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> DataConfig:
        """Raise :class:`DnaError` naming the first bad field; returns ``self``."""
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise DnaError(f"uri {self.uri!r} must be 'builtin:shapes' or an ImageFolder root")
        if self.uri.startswith(BUILTIN_PREFIX):
            name = self.uri[len(BUILTIN_PREFIX):]
            if name not in BUILTINS:
                raise DnaError(
                    f"uri {self.uri!r}: unknown built-in data set {name!r} "
                    f"(expected one of {[BUILTIN_PREFIX + b for b in BUILTINS]})"
                )
        for field, low, high in (
            ("resolution", MIN_RESOLUTION, MAX_RESOLUTION),
            ("batch_size", 1, MAX_BATCH),
            ("num_workers", 0, MAX_WORKERS),
            ("train_size", 1, MAX_SIZE),
            ("val_size", 1, MAX_SIZE),
            ("rating_size", 1, MAX_SIZE),
            ("seed", 0, MAX_SEED),
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DnaError(f"{field} {value!r} must be an integer >= {low}")
            if value > high:
                raise DnaError(f"{field} {value!r} must be an integer in {low}..{high}")
        if self.is_builtin and (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or not 1 <= self.num_classes <= MAX_CLASSES
        ):
            raise DnaError(
                f"num_classes {self.num_classes!r} must be an integer in 1..{MAX_CLASSES} "
                f"for {self.uri!r}"
            )
        if not isinstance(self.augment, bool):
            raise DnaError(f"augment {self.augment!r} must be true or false")
        if self.auto_augment == "":
            self.auto_augment = None
        if self.auto_augment is not None:
            if not isinstance(self.auto_augment, str):
                raise DnaError(f"auto_augment {self.auto_augment!r} must be a timm policy string")
            from dna.data.shapes import make_auto_augment

            make_auto_augment(self.auto_augment, self.resolution)  # raises DnaError when invalid
        return self

    @property
    def is_builtin(self) -> bool:
        return is_builtin(self.uri)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Build from a plain dict (e.g. JSON); unknown keys raise :class:`DnaError`."""
        check_keys(d, field_names(cls), "data config keys")
        return cls(**d)


def is_builtin(uri: str) -> bool:
    return uri.startswith(BUILTIN_PREFIX)


def _check(cfg: DataConfig, split: str, task: str) -> None:
    if not isinstance(cfg, DataConfig):
        raise DnaError(f"expected a DataConfig, got {type(cfg).__name__}")
    cfg.validate()
    if split not in SPLITS:
        raise DnaError(f"split {split!r} is not one of {list(SPLITS)}")
    if task not in TASKS:
        raise DnaError(f"task {task!r} is not one of {list(TASKS)}")
    if task != "cls" and not cfg.is_builtin:
        raise DnaError(
            f"task {task!r} needs masks/boxes: only 'cls' is supported for ImageFolder {cfg.uri!r}"
        )


def make_dataset(cfg: DataConfig, split: str, task: str = "cls") -> Dataset:
    """The data set of ``split`` (``train``/``val``/``rating``) for ``task`` (``cls``/``seg``/``det``).

    Items are ``(image float32 [3, R, R] normalised with the ImageNet mean/std, target)``; target
    is an int class index (``cls``), an int64 ``[R, R]`` mask with 0 = background and
    ``class + 1`` (``seg``), or ``{"boxes": float32 [N, 4] xyxy, "labels": int64 [N] = class + 1}``
    (``det``). Train-time augmentation (``cfg.augment``, ``cfg.auto_augment``) is applied to the
    train split only. Data sets expose ``classes`` (names).
    """
    _check(cfg, split, task)
    training = split == "train"
    if cfg.is_builtin:
        from dna.data.shapes import ShapesDataset

        size = {"train": cfg.train_size, "val": cfg.val_size, "rating": cfg.rating_size}[split]
        return ShapesDataset(
            size,
            split=split,
            task=task,
            resolution=cfg.resolution,
            num_classes=cfg.num_classes,
            seed=cfg.seed,
            augment=training and cfg.augment,
            auto_augment=cfg.auto_augment if training and cfg.augment else None,
        )

    from dna.data.imagefolder import (
        ImageFolderDataset,
        list_split,
        make_transform,
        rating_holdout,
    )

    train = list_split(cfg.uri, "train")
    transform = make_transform(
        cfg.resolution,
        training=training and cfg.augment,
        auto_augment=cfg.auto_augment if training and cfg.augment else None,
    )
    if split == "val":
        return ImageFolderDataset(list_split(cfg.uri, "val", classes=train.classes), transform)
    held = rating_holdout(train.targets, len(train.classes), cfg.rating_size, cfg.seed)
    if split == "rating":
        return ImageFolderDataset(train, transform, indices=held)
    held_set = set(held)
    return ImageFolderDataset(
        train, transform, indices=[i for i in range(len(train)) if i not in held_set]
    )


def collate_detection(batch):
    """Collate ``(image, target dict)`` pairs into ``(images [B, 3, R, R], list of targets)``."""
    import torch

    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


def make_loader(
    cfg: DataConfig,
    split: str,
    task: str = "cls",
    shuffle: bool | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A :class:`DataLoader` over :func:`make_dataset`; shuffles the train split by default, with a
    generator seeded from ``cfg.seed``. For ``det`` the targets stay a list (see
    :func:`collate_detection`)."""
    import torch
    from torch.utils.data import DataLoader

    ds = make_dataset(cfg, split, task)
    generator = torch.Generator()
    generator.manual_seed(cfg.seed)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=(split == "train") if shuffle is None else bool(shuffle),
        num_workers=cfg.num_workers,
        drop_last=drop_last,
        generator=generator,
        collate_fn=collate_detection if task == "det" else None,
        persistent_workers=False,
    )


def class_names(cfg: DataConfig) -> list[str]:
    """Class names in index order (an ImageFolder's sorted train class folders)."""
    cfg.validate()
    if cfg.is_builtin:
        return list(CLASS_NAMES[: cfg.num_classes])
    from dna.data.imagefolder import list_classes

    return list_classes(cfg.uri, "train")


def num_classes(cfg: DataConfig) -> int:
    """Number of classes (for ``seg``/``det`` heads add one for the background)."""
    return len(class_names(cfg))


def __getattr__(name: str):
    """``dna.data.ShapesDataset`` as before the lazy imports (it needs torch and timm)."""
    if name == "ShapesDataset":
        from dna.data.shapes import ShapesDataset

        return ShapesDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
