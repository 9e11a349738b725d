"""ImageFolder data sets: ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*``.

``ROOT`` is a local path (or ``file://`` URI) or a remote URI such as ``s3://bucket/prefix``;
remote roots are listed and read through ``dna.storage.filesystem`` (a pyarrow filesystem).
Images are decoded with PIL from bytes and transformed with ``timm.data.create_transform``.
Class indices come from the sorted class folder names of the train split.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from dna.errors import DnaError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _filesystem(uri: str):
    """``(pyarrow filesystem, path)`` for ``uri``: local paths directly, others via dna.storage."""
    if _is_remote(uri):
        from dna import storage  # lazy: only remote roots need the URI layer

        return storage.filesystem(uri)
    from pyarrow import fs as pafs

    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


@dataclass(frozen=True)
class FolderListing:
    """One split of an ImageFolder tree: class names and ``(path, class index)`` samples.

    ``paths`` are filesystem paths for the pyarrow filesystem of ``root`` (not URIs).
    """

    root: str
    split: str
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    targets: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_classes(root: str, split: str = "train") -> list[str]:
    """Sorted class folder names of ``root/split`` (no file listing: cheap on object stores).

    Raises :class:`DnaError` naming the path when the root or split folder is missing or the split
    has no class folders.
    """
    return _class_folders(root, split)[2]


def _class_folders(root: str, split: str):
    from pyarrow import fs as pafs

    fs, base = _filesystem(root)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise DnaError(f"ImageFolder root {root!r} does not exist or is not a directory")
    split_uri = _join(root, split)
    split_path = _join(base, split)
    if fs.get_file_info(split_path).type != pafs.FileType.Directory:
        raise DnaError(
            f"ImageFolder split folder {split_uri!r} does not exist "
            f"(expected {root!r}/{{train,val}}/<class>/<images>)"
        )
    entries = fs.get_file_info(pafs.FileSelector(split_path, recursive=False))
    found = sorted(
        e.base_name for e in entries
        if e.type == pafs.FileType.Directory and not e.base_name.startswith(".")
    )
    if not found:
        raise DnaError(f"ImageFolder split folder {split_uri!r} has no class folders")
    return fs, split_path, found


def check_folder(root: str, splits: Sequence[str] = ("train",), rating_size: int | None = None) -> dict[str, int]:
    """List each split of ``root`` and decode its first image, so an empty, unreadable or corrupt
    data folder fails before any work (later splits must use the train split's classes); with
    ``rating_size``, the train split must have that many images to hold out for rating.

    Returns split -> number of images. Raises :class:`DnaError` naming the folder or file.
    """
    from pyarrow import ArrowException

    counts: dict[str, int] = {}
    classes = None
    for split in splits:
        try:
            listing = list_split(root, split, classes=classes)
        except (OSError, ArrowException) as e:
            raise DnaError(f"cannot list ImageFolder {_join(root, split)!r}: {e}; expected a readable "
                           f"folder {root!r}/{{train,val}}/<class>/<images>") from None
        classes = classes or listing.classes
        ImageFolderDataset(listing, indices=[0]).load(0)
        counts[split] = len(listing)
        if split == "train":
            train = listing
    if rating_size is not None and "train" in counts:
        rating_holdout(train.targets, len(train.classes), rating_size, 0)
    return counts


def list_split(root: str, split: str, classes: Sequence[str] | None = None) -> FolderListing:
    """List ``root/split/<class>/`` (class folders searched recursively for image files).

    With ``classes`` given (those of the train split), the split's class folders must be among
    them and indices follow that list; otherwise the split's sorted class folders define it.
    Raises :class:`DnaError` naming the path when the tree is missing or empty.
    """
    from pyarrow import fs as pafs

    fs, split_path, found = _class_folders(root, split)
    split_uri = _join(root, split)
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DnaError(
                f"ImageFolder split folder {split_uri!r} has class folders {unknown} "
                f"that are not among the train classes {list(classes)}"
            )
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    targets: list[int] = []
    for c in found:
        files = fs.get_file_info(pafs.FileSelector(_join(split_path, c), recursive=True))
        images = sorted(
            f.path for f in files
            if f.type == pafs.FileType.File
            and not f.base_name.startswith(".")
            and f.base_name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not images:
            raise DnaError(
                f"ImageFolder class folder {_join(split_uri, c)!r} has no image files "
                f"(extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        paths.extend(images)
        targets.extend([index[c]] * len(images))
    return FolderListing(root, split, tuple(classes), tuple(paths), tuple(targets))


def rating_holdout(targets: Sequence[int], num_classes: int, size: int, seed: int) -> list[int]:
    """Indices (into ``targets``) of ``size`` samples spread evenly over the classes, chosen
    deterministically from ``seed``; every class keeps at least one sample outside the holdout."""
    if size <= 0:
        raise DnaError(f"rating_size {size!r} must be positive")
    targets = np.asarray(targets, dtype=np.int64)
    per_class = [np.nonzero(targets == c)[0] for c in range(num_classes)]
    capacity = [max(0, len(ix) - 1) for ix in per_class]
    if size > sum(capacity):
        raise DnaError(
            f"rating_size {size} is more than the {sum(capacity)} train images that can be held "
            f"out (each of the {num_classes} classes keeps at least one for training)"
        )
    quota = [0] * num_classes
    left = size
    while left:  # round-robin: as even as the class sizes allow
        for c in range(num_classes):
            if left and quota[c] < capacity[c]:
                quota[c] += 1
                left -= 1
    rng = np.random.default_rng([int(seed), 0x5A71])
    chosen: list[int] = []
    for ix, q in zip(per_class, quota, strict=True):
        if q:
            chosen.extend(int(i) for i in rng.permutation(ix)[:q])
    return sorted(chosen)


class ImageFolderDataset(Dataset):
    """Samples ``(transform(PIL RGB image), class index)`` from a :class:`FolderListing`
    (optionally restricted to ``indices``). The filesystem is opened lazily in each process."""

    def __init__(
        self,
        listing: FolderListing,
        transform: Callable | None = None,
        indices: Sequence[int] | None = None,
    ):
        self.listing = listing
        self.root = listing.root
        self.classes = list(listing.classes)
        self.transform = transform
        idx = range(len(listing)) if indices is None else indices
        self.samples = [(listing.paths[i], listing.targets[i]) for i in idx]
        self.targets = [t for _, t in self.samples]
        self._fs = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fs"] = None  # pyarrow filesystems are re-opened in worker processes
        return state

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int):
        """The decoded RGB PIL image of sample ``index`` (no transform)."""
        from PIL import Image

        if self._fs is None:
            self._fs = _filesystem(self.root)[0]
        path = self.samples[index][0]
        try:
            with self._fs.open_input_file(path) as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:  # PIL: unreadable, truncated or corrupt
            from PIL import UnidentifiedImageError

            reason = "not an image PIL can decode" if isinstance(e, UnidentifiedImageError) else str(e)
            raise DnaError(f"cannot read image {path!r} under {self.root!r}: {reason}; expected a readable "
                           f"image ({', '.join(IMAGE_EXTENSIONS)})") from e

    def __getitem__(self, index: int):
        img = self.load(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.samples[index][1]


def make_transform(resolution: int, training: bool, auto_augment: str | None = None):
    """timm's train (random-resized crop, flip, colour jitter or ``auto_augment``) or eval
    (resize + centre crop) transform, normalised with the ImageNet mean/std."""
    from timm.data import create_transform

    try:
        return create_transform(
            resolution, is_training=training, auto_augment=auto_augment if training else None
        )
    except (AssertionError, KeyError, ValueError) as e:
        raise DnaError(f"auto_augment {auto_augment!r} is not a valid timm policy: {e}") from e
