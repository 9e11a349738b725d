"""The built-in generated data set "shapes": coloured geometric shapes on a textured background.

Nothing is downloaded: every sample is rendered on demand (vectorised numpy) from a seed derived
from ``(seed, split, index)``, so the same index always gives the same sample and different splits
use disjoint seed streams. One rendering yields three tasks:

- ``cls``: the label is the class of the primary (largest, drawn last, fully visible) shape;
- ``seg``: an ``HxW`` int64 mask, 0 = background, ``class + 1`` on shape pixels
  (``num_classes + 1`` segmentation classes);
- ``det``: ``{"boxes": float32 [N, 4] xyxy in pixels, "labels": int64 [N] = class + 1}``
  (0 is reserved for the background, as torchvision detection models expect).

Every class appears at most once per image, so the pixels of mask value ``k`` are exactly the
visible pixels of the object labelled ``k``, and its box is their tight bounding box
(``x1 = last column + 1``, pixel edges).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from dna.data.classes import CLASS_NAMES, MAX_CLASSES
from dna.errors import DnaError

TASKS = ("cls", "seg", "det")
SPLITS = {"train": 0, "val": 1, "rating": 2, "test": 3}

# Radii (half-extent, fraction of the resolution) of the primary and the secondary shapes. The
# ranges keep the primary shape's area well above any secondary's for every pair of classes.
PRIMARY_RADIUS = (0.24, 0.36)
SECONDARY_RADIUS = (0.09, 0.14)
ROTATION_JITTER = math.radians(15.0)
MIN_VISIBLE_PIXELS = 3
# Rendered samples a data set keeps (per process), so the epochs after the first reuse them: a
# 16 px image takes longer to render than a small net takes to train on it. Beyond this many
# bytes a data set renders on demand again (the same samples either way).
RENDER_CACHE_BYTES = 512 * 2**20

_S2 = 1.0 / math.sqrt(2.0)


def _circle(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _triangle(u, v):  # apex up (image y grows downwards)
    return (v <= 0.75) & (np.abs(u) <= (v + 0.95) * 0.58)


def _plus(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.3)


def _hbar(u, v):
    return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.32)


def _vbar(u, v):
    return (np.abs(u) <= 0.32) & (np.abs(v) <= 1.0)


def _diamond(u, v):
    return np.abs(u) + np.abs(v) <= 1.0


def _xcross(u, v):
    p, q = np.abs((u + v) * _S2), np.abs((u - v) * _S2)
    return ((p <= 0.28) & (q <= 1.05)) | ((q <= 0.28) & (p <= 1.05))


def _ell(u, v):
    vertical = (u >= -0.8) & (u <= -0.25) & (v >= -0.9) & (v <= 0.9)
    foot = (u >= -0.8) & (u <= 0.8) & (v >= 0.35) & (v <= 0.9)
    return vertical | foot


_SHAPES: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _circle,
    _square,
    _triangle,
    _plus,
    _ring,
    _hbar,
    _vbar,
    _diamond,
    _xcross,
    _ell,
)

_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)`` as float32 ``[R, R]`` arrays (cached per resolution)."""
    g = _GRIDS.get(resolution)
    if g is None:
        c = np.arange(resolution, dtype=np.float32) + 0.5
        g = (np.broadcast_to(c[None, :], (resolution, resolution)),
             np.broadcast_to(c[:, None], (resolution, resolution)))
        _GRIDS[resolution] = g
    return g


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    cand = rng.random((8, 3), dtype=np.float32)
    dist = np.linalg.norm(cand - against[None, :], axis=1)
    ok = np.nonzero(dist >= 0.5)[0]
    return cand[ok[0]] if ok.size else cand[int(np.argmax(dist))]


def render(
    resolution: int, num_classes: int, seed: int, split: str, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render one sample.

    Returns ``(image, mask, boxes, labels)``: ``image`` float32 ``[R, R, 3]`` in ``[0, 1]``;
    ``mask`` int64 ``[R, R]`` (0 background, ``class + 1``); ``boxes`` float32 ``[N, 4]`` xyxy in
    pixels; ``labels`` int64 ``[N]`` (``class + 1``), the primary object first.
    """
    r = resolution
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    x, y = _grid(r)

    # Background: colour gradient + sinusoidal texture (noise is added at the end, to everything).
    c0 = rng.random(3, dtype=np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.3, 0.3, 3).astype(np.float32), 0.0, 1.0)
    th, ph, f = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi), rng.uniform(1.5, 5.0)
    t = ((x - r / 2) * math.cos(th) + (y - r / 2) * math.sin(th)) / r + 0.5
    tex_dir = rng.uniform(0, math.pi)
    tex = rng.uniform(0.0, 0.08) * np.sin(
        (2 * math.pi * f / r) * (x * math.cos(tex_dir) + y * math.sin(tex_dir)) + ph
    )
    img = c0[None, None, :] + (c1 - c0)[None, None, :] * t[..., None] + tex[..., None]
    bg_mean = (c0 + c1) / 2

    # Shapes: 1-3 distinct classes; the first is the primary one (largest, drawn last, on top).
    n_shapes = min(int(rng.integers(1, 4)), num_classes)
    classes = rng.choice(num_classes, size=n_shapes, replace=False)
    mask = np.zeros((r, r), dtype=np.int64)
    for k in range(n_shapes - 1, -1, -1):  # secondaries first, primary last
        lo, hi = PRIMARY_RADIUS if k == 0 else SECONDARY_RADIUS
        s = rng.uniform(lo, hi) * r
        margin = 0.95 * s
        cx, cy = rng.uniform(margin, r - margin, 2)
        a = rng.uniform(-ROTATION_JITTER, ROTATION_JITTER)
        ca, sa = math.cos(a) / s, math.sin(a) / s
        dx, dy = x - cx, y - cy
        u = dx * ca + dy * sa
        v = dy * ca - dx * sa
        cls = int(classes[k])
        if rng.random() < 0.5:  # mirror (only changes the chiral "ell"; drawn for every class)
            u = -u
        m = _SHAPES[cls](u, v)
        img[m] = _contrasting_colour(rng, bg_mean)
        mask[m] = cls + 1

    img += rng.normal(0.0, rng.uniform(0.02, 0.07), img.shape).astype(np.float32)
    np.clip(img, 0.0, 1.0, out=img)

    boxes, labels = [], []
    for cls in classes:
        ys, xs = np.nonzero(mask == cls + 1)
        if xs.size < MIN_VISIBLE_PIXELS:
            mask[ys, xs] = 0
            continue
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        labels.append(cls + 1)
    return (
        img.astype(np.float32, copy=False),
        mask,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


class ShapesDataset(Dataset):
    """Procedurally rendered shapes; ``task`` picks the target (``cls``, ``seg`` or ``det``).

    Items: ``(image, target)`` with ``image`` a float32 ``[3, R, R]`` tensor normalised with timm's
    ImageNet mean/std and ``target`` an int (``cls``), an int64 ``[R, R]`` mask (``seg``) or a dict
    ``{"boxes", "labels"}`` (``det``). ``augment`` applies a random horizontal flip (to the mask and
    boxes too); ``auto_augment`` (a timm policy string, ``cls`` only) applies that policy too.
    """

    def __init__(
        self,
        size: int,
        split: str = "train",
        task: str = "cls",
        resolution: int = 32,
        num_classes: int = MAX_CLASSES,
        seed: int = 0,
        augment: bool = False,
        auto_augment: str | None = None,
    ):
        if task not in TASKS:
            raise DnaError(f"task {task!r} is not one of {list(TASKS)}")
        if split not in SPLITS:
            raise DnaError(f"split {split!r} is not one of {list(SPLITS)}")
        if not isinstance(size, int) or size <= 0:
            raise DnaError(f"size {size!r} must be a positive integer")
        if not isinstance(resolution, int) or resolution < 16:
            raise DnaError(f"resolution {resolution!r} must be an integer >= 16")
        if not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
            raise DnaError(f"num_classes {num_classes!r} must be an integer in 1..{MAX_CLASSES}")
        if not isinstance(seed, int) or seed < 0:
            raise DnaError(f"seed {seed!r} must be a non-negative integer")
        if auto_augment and task != "cls":
            raise DnaError(f"auto_augment {auto_augment!r} is only supported for task 'cls'")
        self.size, self.split, self.task = size, split, task
        self.resolution, self.num_classes, self.seed = resolution, num_classes, seed
        self.augment = augment
        self.classes = list(CLASS_NAMES[:num_classes])
        self.num_seg_classes = num_classes + 1
        self._mean = np.asarray(IMAGENET_DEFAULT_MEAN, dtype=np.float32)
        self._std = np.asarray(IMAGENET_DEFAULT_STD, dtype=np.float32)
        self._aa = make_auto_augment(auto_augment, resolution) if auto_augment else None
        self._rendered: dict[int, tuple] = {}
        self._rendered_bytes = 0

    def __len__(self) -> int:
        return self.size

    def render(self, index: int):
        """The raw sample: ``(image HxWx3 float in [0,1], mask, boxes, labels)``, no augmentation."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        return render(self.resolution, self.num_classes, self.seed, self.split, index)

    def _sample(self, index: int):
        """:meth:`render`, kept in memory up to :data:`RENDER_CACHE_BYTES` (read-only arrays)."""
        hit = self._rendered.get(index)
        if hit is not None:
            return hit
        sample = self.render(index)
        size = sum(a.nbytes for a in sample)
        if self._rendered_bytes + size <= RENDER_CACHE_BYTES:
            for a in sample:
                a.flags.writeable = False
            self._rendered[index] = sample
            self._rendered_bytes += size
        return sample

    def __getitem__(self, index: int):
        img, mask, boxes, labels = self._sample(index)
        if self.augment and torch.rand(()).item() < 0.5:
            img = img[:, ::-1]
            mask = mask[:, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = self.resolution - boxes[:, [2, 0]]
        if self._aa is not None:
            from PIL import Image

            pil = Image.fromarray((img * 255.0 + 0.5).astype(np.uint8))
            img = np.asarray(self._aa(pil), dtype=np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(((img - self._mean) / self._std).transpose(2, 0, 1)))
        if self.task == "cls":
            return x, int(labels[0]) - 1
        if self.task == "seg":
            return x, torch.from_numpy(np.array(mask))
        return x, {"boxes": torch.from_numpy(np.array(boxes)), "labels": torch.from_numpy(np.array(labels))}


def make_auto_augment(policy: str, resolution: int):
    """The timm auto-augment transform (PIL in, PIL out) for ``policy``, as timm's train transform
    builds it (no random-resized crop: that could cut the primary shape away)."""
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    params = dict(
        translate_const=int(resolution * 0.45),
        img_mean=tuple(min(255, round(255 * m)) for m in IMAGENET_DEFAULT_MEAN),
    )
    try:
        if policy.startswith("rand"):
            return rand_augment_transform(policy, params)
        if policy.startswith("augmix"):
            return augment_and_mix_transform(policy, dict(params, translate_pct=0.3))
        return auto_augment_transform(policy, params)
    except (AssertionError, KeyError, ValueError) as e:
        raise DnaError(f"auto_augment {policy!r} is not a valid timm policy: {e}") from e
