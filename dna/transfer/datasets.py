"""Segmentation and detection data sets on disk or S3 (through :mod:`dna.storage`).

- Pascal VOC 2012 (segmentation): ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
  (palette PNGs whose indices are the classes, 255 = boundary/ignore),
  ``ImageSets/Segmentation/{train,val}.txt``. The root may also be the folder holding
  ``VOC2012/`` or ``VOCdevkit/VOC2012/``. 21 classes (background included).
- ADE20K (SceneParsing / ADEChallengeData2016): ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png``; 150 classes, value 0 ("other") is ignored, value
  ``k`` is class ``k - 1``.
- COCO (detection): ``annotations/instances_{train,val}.json`` (``..._{train,val}2017.json`` too)
  and the images under ``{split}/``, ``{split}2017/``, ``images/{split}/``, ``images/`` or the
  root. Category ids are mapped to contiguous labels ``1..K`` (0 is the background); crowd and
  empty boxes are skipped.

Images come out as float32 ``[3, H, W]`` tensors normalised with the ImageNet mean/std (as the
built-in data), masks as int64 ``[H, W]`` with 255 = ignore.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dna import storage
from dna.errors import DnaError

IGNORE_INDEX = 255

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
ADE20K_NUM_CLASSES = 150
ADE_SPLITS = {"train": "training", "val": "validation"}


# --------------------------------------------------------------------------------------------
# Image I/O


def read_image(uri: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(storage.read_bytes(uri)))
        img.load()
    except DnaError:
        raise
    except Exception as exc:  # PIL raises many kinds
        raise DnaError(f"cannot decode image {uri}: {exc}") from exc
    return img


def normalise(img: Image.Image) -> torch.Tensor:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    a = (a - np.asarray(IMAGENET_DEFAULT_MEAN, np.float32)) / np.asarray(IMAGENET_DEFAULT_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _voc_rgb_to_index(rgb: np.ndarray) -> np.ndarray:
    """An RGB-coloured VOC mask back to class indices (unknown colours -> ignore)."""
    from dna.transfer.viz import palette

    pal = palette(256).astype(np.int64)
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lut = {int((c[0] << 16) | (c[1] << 8) | c[2]): i for i, c in enumerate(pal[:21])}
    lut[(224 << 16) | (224 << 8) | 192] = IGNORE_INDEX  # VOC's boundary colour
    out = np.full(code.shape, IGNORE_INDEX, dtype=np.int64)
    for k, v in lut.items():
        out[code == k] = v
    return out


def read_mask(uri: str, rgb_is_voc: bool = False) -> np.ndarray:
    img = read_image(uri)
    if img.mode in ("P", "L", "I", "I;16"):
        return np.asarray(img, dtype=np.int64)
    if rgb_is_voc:
        return _voc_rgb_to_index(np.asarray(img.convert("RGB")))
    return np.asarray(img.convert("L"), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Joint transforms (image + mask)


class SegTransform:
    """Train: random rescale (``scale_range`` times the size fitting ``size``), random crop
    ``size x size`` (padding with zeros / ignore), random horizontal flip. Eval: rescale so the
    longer side is ``size``, pad to ``size x size`` with ignore (padding never counts)."""

    def __init__(self, size: int, training: bool, scale_range: tuple[float, float] = (0.5, 2.0)):
        self.size, self.training, self.scale_range = int(size), bool(training), scale_range

    def __call__(self, img: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img = img.convert("RGB")
        w, h = img.size
        if mask.shape != (h, w):
            raise DnaError(f"mask shape {mask.shape} does not match image size {(h, w)}")
        base = self.size / max(h, w)
        scale = base * (random.uniform(*self.scale_range) if self.training else 1.0)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        m = Image.fromarray(mask.astype(np.uint8) if mask.max(initial=0) < 256 else mask.astype(np.int32))
        m = np.asarray(m.resize((nw, nh), Image.NEAREST), dtype=np.int64)
        x = normalise(img)
        y = torch.from_numpy(np.ascontiguousarray(m))
        s = self.size
        ph, pw = max(0, s - nh), max(0, s - nw)
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=0.0)
            y = torch.nn.functional.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX)
        H, W = y.shape
        top = random.randint(0, H - s) if self.training else 0
        left = random.randint(0, W - s) if self.training else 0
        x, y = x[:, top:top + s, left:left + s], y[top:top + s, left:left + s]
        if self.training and random.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()


# --------------------------------------------------------------------------------------------
# Segmentation data sets


def voc_root(root: str) -> str | None:
    """The VOC2012 folder under ``root`` (itself, ``VOC2012/`` or ``VOCdevkit/VOC2012/``)."""
    for cand in (root, storage.join(root, "VOC2012"), storage.join(root, "VOCdevkit", "VOC2012")):
        if storage.exists(storage.join(cand, "ImageSets", "Segmentation")) and storage.exists(
            storage.join(cand, "JPEGImages")
        ):
            return cand
    return None


def is_ade20k(root: str) -> bool:
    return storage.exists(storage.join(root, "images", "training")) or storage.exists(
        storage.join(root, "images", "validation"))


def detect_seg_format(root: str) -> str:
    if voc_root(root) is not None:
        return "voc"
    if is_ade20k(root):
        return "ade20k"
    raise DnaError(
        f"data {root!r}: no known segmentation layout (Pascal VOC: JPEGImages/, SegmentationClass/, "
        "ImageSets/Segmentation/{train,val}.txt; ADE20K: images/{training,validation}/, "
        "annotations/{training,validation}/)"
    )


class SegFolderDataset(Dataset):
    """Image/mask pairs with a label map; ``classes`` names the output classes."""

    def __init__(self, pairs: Sequence[tuple[str, str]], classes: Sequence[str],
                 transform: Callable, label_map: Callable[[np.ndarray], np.ndarray],
                 rgb_is_voc: bool = False):
        self.pairs = list(pairs)
        self.classes = list(classes)
        self.num_seg_classes = len(self.classes)
        self.transform = transform
        self.label_map = label_map
        self.rgb_is_voc = rgb_is_voc

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        img_uri, mask_uri = self.pairs[i]
        img = read_image(img_uri)
        mask = self.label_map(read_mask(mask_uri, self.rgb_is_voc))
        return self.transform(img, mask)


def _voc_labels(m: np.ndarray) -> np.ndarray:
    m = m.copy()
    m[(m >= len(VOC_CLASSES)) & (m != IGNORE_INDEX)] = IGNORE_INDEX
    return m


def _ade_labels(m: np.ndarray) -> np.ndarray:
    out = m - 1
    out[(m == 0) | (m > ADE20K_NUM_CLASSES)] = IGNORE_INDEX
    return out


def list_voc(root: str, split: str) -> list[tuple[str, str]]:
    base = voc_root(root)
    if base is None:
        raise DnaError(f"data {root!r} is not a Pascal VOC tree (JPEGImages/, ImageSets/Segmentation/)")
    ids_uri = storage.join(base, "ImageSets", "Segmentation", f"{split}.txt")
    if not storage.exists(ids_uri):
        raise DnaError(f"Pascal VOC split file {ids_uri} is missing (expected {split}.txt)")
    ids = [line.split()[0] for line in storage.read_text(ids_uri).splitlines() if line.strip()]
    if not ids:
        raise DnaError(f"Pascal VOC split file {ids_uri} lists no images")
    return [(storage.join(base, "JPEGImages", f"{i}.jpg"), storage.join(base, "SegmentationClass", f"{i}.png"))
            for i in ids]


def list_ade20k(root: str, split: str) -> list[tuple[str, str]]:
    sub = ADE_SPLITS[split]
    img_dir = storage.join(root, "images", sub)
    ann_dir = storage.join(root, "annotations", sub)
    if not storage.exists(img_dir) or not storage.exists(ann_dir):
        raise DnaError(f"ADE20K split {split!r} needs {img_dir} and {ann_dir}")
    masks = {u.rsplit("/", 1)[-1].rsplit(".", 1)[0]: u for u in storage.listdir(ann_dir) if u.endswith(".png")}
    pairs = []
    for u in storage.listdir(img_dir):
        stem, _, ext = u.rsplit("/", 1)[-1].rpartition(".")
        if ext.lower() in ("jpg", "jpeg", "png") and stem in masks:
            pairs.append((u, masks[stem]))
    if not pairs:
        raise DnaError(f"ADE20K split {split!r}: no image in {img_dir} has a mask in {ann_dir}")
    return pairs


def make_seg_dataset(root: str, fmt: str, split: str, size: int, training: bool,
                     scale_range: tuple[float, float] = (0.5, 2.0)) -> SegFolderDataset:
    transform = SegTransform(size, training, scale_range)
    if fmt == "voc":
        return SegFolderDataset(list_voc(root, split), VOC_CLASSES, transform, _voc_labels, rgb_is_voc=True)
    if fmt == "ade20k":
        classes = [f"ade_{k}" for k in range(1, ADE20K_NUM_CLASSES + 1)]
        return SegFolderDataset(list_ade20k(root, split), classes, transform, _ade_labels)
    raise DnaError(f"segmentation data format {fmt!r} must be 'voc' or 'ade20k'")


# --------------------------------------------------------------------------------------------
# COCO detection


def coco_annotation_uri(root: str, split: str) -> str:
    for name in (f"instances_{split}.json", f"instances_{split}2017.json"):
        uri = storage.join(root, "annotations", name)
        if storage.exists(uri):
            return uri
    raise DnaError(
        f"data {root!r}: no COCO annotations for split {split!r} "
        f"(expected annotations/instances_{split}.json or instances_{split}2017.json)"
    )


def is_coco(root: str) -> bool:
    try:
        coco_annotation_uri(root, "train")
    except DnaError:
        return False
    return True


def fit_scale(h: int, w: int, min_size: int, max_size: int) -> float:
    """torchvision's Faster R-CNN resize rule: shorter side to ``min_size`` unless the longer
    side would pass ``max_size``."""
    return min(min_size / min(h, w), max_size / max(h, w))


class CocoDetection(Dataset):
    """COCO boxes as ``(image, {"boxes" xyxy, "labels" 1..K, "image_id", "scale"})``.

    Images are resized here with Faster R-CNN's rule (so the model's own resize is a no-op and
    decoding stays cheap); ``scale`` maps boxes back to the original pixels for the metric.
    Training flips horizontally at random.
    """

    def __init__(self, root: str, split: str, min_size: int, max_size: int, training: bool = False):
        self.root, self.split = root, split
        self.ann_uri = coco_annotation_uri(root, split)
        data = storage.read_json(self.ann_uri)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("categories"), list):
            raise DnaError(f"{self.ann_uri} is not COCO instances JSON (needs 'images' and 'categories')")
        try:
            cats = sorted(data["categories"], key=lambda c: int(c["id"]))
            self.cat_ids = [int(c["id"]) for c in cats]
            self.classes = [str(c.get("name", c["id"])) for c in cats]
            label_of = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
            self.images = [{"id": int(im["id"]), "file_name": str(im["file_name"]),
                            "height": im.get("height"), "width": im.get("width")} for im in data["images"]]
            anns: dict[int, list] = {im["id"]: [] for im in self.images}
            for a in data.get("annotations", []):
                if a.get("iscrowd", 0):
                    continue
                x, y, w, h = (float(v) for v in a["bbox"])
                if w <= 0 or h <= 0 or int(a["image_id"]) not in anns:
                    continue
                anns[int(a["image_id"])].append((x, y, x + w, y + h, label_of[int(a["category_id"])]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DnaError(f"malformed COCO JSON {self.ann_uri}: {exc!r}") from exc
        if not self.images:
            raise DnaError(f"{self.ann_uri} lists no images")
        self.anns = anns
        if training:  # images without boxes teach nothing to the box heads
            self.images = [im for im in self.images if anns[im["id"]]] or self.images
        self.min_size, self.max_size, self.training = int(min_size), int(max_size), bool(training)
        self.image_dir = self._find_image_dir()

    def _find_image_dir(self) -> str:
        first = self.images[0]["file_name"]
        r, s = self.root, self.split
        for d in (storage.join(r, s), storage.join(r, f"{s}2017"), storage.join(r, "images", s),
                  storage.join(r, "images"), r):
            if storage.exists(storage.join(d, first)):
                return d
        raise DnaError(
            f"COCO image {first!r} of {self.ann_uri} not found under {r}/{{{s}, {s}2017, images/{s}, images, .}}"
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        im = self.images[i]
        img = read_image(storage.join(self.image_dir, im["file_name"])).convert("RGB")
        w, h = img.size
        scale = fit_scale(h, w, self.min_size, self.max_size)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BILINEAR)
        rows = self.anns[im["id"]]
        boxes = torch.tensor([r[:4] for r in rows], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([r[4] for r in rows], dtype=torch.int64)
        sx, sy = nw / w, nh / h
        boxes = boxes * torch.tensor([sx, sy, sx, sy])
        x = normalise(img)
        if self.training and random.random() < 0.5:
            x = x.flip(-1)
            boxes = torch.stack([nw - boxes[:, 2], boxes[:, 1], nw - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {"boxes": boxes, "labels": labels, "image_id": torch.tensor(im["id"]),
                  "scale": torch.tensor([sx, sy, sx, sy], dtype=torch.float32)}
        return x, target


def collate_list(batch):
    """Images as a list (sizes may differ), targets as a list."""
    return [b[0] for b in batch], [b[1] for b in batch]

