"""Sample predictions as one PNG grid (PIL only): masks overlaid, boxes drawn, labels captioned."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

IGNORE_COLOUR = (255, 255, 255)
TILE = 160  # small inputs are enlarged (nearest) to about this size, so shapes stay visible


def palette(n: int = 256) -> np.ndarray:
    """Pascal VOC's colour map: ``[n, 3]`` uint8, class 0 black."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


_PALETTE = palette()


def colour(k: int) -> tuple[int, int, int]:
    c = _PALETTE[int(k) % 256]
    if int(k) % 256 == 0:
        return (0, 255, 0)
    return int(c[0]), int(c[1]), int(c[2])


def to_uint8(image: torch.Tensor, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> np.ndarray:
    """A normalised ``[3, H, W]`` tensor back to an ``[H, W, 3]`` uint8 array."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    m = torch.tensor(mean or IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    s = torch.tensor(std or IMAGENET_DEFAULT_STD).view(3, 1, 1)
    x = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _scale(h: int, w: int) -> int:
    return max(1, -(-TILE // max(h, w)))


def enlarge(img: np.ndarray) -> Image.Image:
    h, w = img.shape[:2]
    k = _scale(h, w)
    return Image.fromarray(img).resize((w * k, h * k), Image.NEAREST)


def overlay_mask(img: np.ndarray, mask: np.ndarray, alpha: float = 0.55,
                 ignore_index: int = 255) -> Image.Image:
    """Classes > 0 tinted with their palette colour, ignored pixels white, background as is."""
    out = img.astype(np.float32).copy()
    mask = np.asarray(mask)
    cols = _PALETTE[np.clip(mask, 0, 255)].astype(np.float32)
    fg = (mask > 0) & (mask != ignore_index)
    out[fg] = (1 - alpha) * out[fg] + alpha * cols[fg]
    out[mask == ignore_index] = IGNORE_COLOUR
    return enlarge(out.astype(np.uint8))


def legend_entries(names: Sequence[str], present: Sequence[int] | None = None,
                   ignore_index: int = 255) -> list[tuple[str, tuple[int, int, int] | None]]:
    """``(label, colour)`` per class of a segmentation panel, as :func:`overlay_mask` paints them:
    class 0 (``names[0]``, the background) is left untinted (colour None), ignored pixels white.
    ``present``: the class ids the panel's masks hold (None: every class); only those are listed."""
    ids = range(len(names)) if present is None else sorted({int(k) for k in present})
    out: list[tuple[str, tuple[int, int, int] | None]] = []
    for k in ids:
        if k == ignore_index:
            out.append(("ignored", IGNORE_COLOUR))
        elif k == 0:
            out.append((f"{names[0] if names else 'background'} (untinted)", None))
        else:
            c = _PALETTE[k % 256]
            out.append((names[k] if k < len(names) else f"class {k}", (int(c[0]), int(c[1]), int(c[2]))))
    return out


def draw_legend(entries: Sequence[tuple[str, tuple[int, int, int] | None]], width: int) -> Image.Image:
    """A legend strip ``width`` pixels wide: a colour swatch and the class name per entry, as many
    entries per line as fit."""
    sw, line_h = 10, 14
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    item_w = int(max([measure.textlength(label) for label, _ in entries] + [0])) + sw + 16
    per_line = max(1, (width - 4) // item_w)
    lines = max(1, -(-len(entries) // per_line))
    out = Image.new("RGB", (max(width, item_w + 4), lines * line_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, (label, c) in enumerate(entries):
        x, y = 4 + (i % per_line) * item_w, 2 + (i // per_line) * line_h
        draw.rectangle([x, y + 1, x + sw, y + 1 + sw], fill=c, outline=(0, 0, 0))
        draw.text((x + sw + 4, y), label, fill=(0, 0, 0))
    return out


def with_legend(img: Image.Image, entries: Sequence[tuple[str, tuple[int, int, int] | None]]) -> Image.Image:
    """``img`` with :func:`draw_legend` of ``entries`` under it."""
    legend = draw_legend(entries, img.width)
    out = Image.new("RGB", (max(img.width, legend.width), img.height + legend.height), (255, 255, 255))
    out.paste(img, (0, 0))
    out.paste(legend, (0, img.height))
    return out


def draw_boxes(img: np.ndarray, boxes, labels, scores=None, names: Sequence[str] | None = None,
               score_thresh: float = 0.3, max_boxes: int = 20) -> Image.Image:
    """Boxes (xyxy, image pixels) in their class colour with ``name score`` captions."""
    pil = enlarge(img)
    k = _scale(*img.shape[:2])
    draw = ImageDraw.Draw(pil)
    boxes = torch.as_tensor(boxes).reshape(-1, 4).tolist()
    labels = torch.as_tensor(labels).reshape(-1).tolist()
    scores = None if scores is None else torch.as_tensor(scores).reshape(-1).tolist()
    shown = 0
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if scores is not None and scores[i] < score_thresh:
            continue
        if shown >= max_boxes:
            break
        shown += 1
        c = colour(lab)
        x1, y1, x2, y2 = (v * k for v in b)
        draw.rectangle([x1, y1, x2, y2], outline=c, width=2)
        name = names[lab - 1] if names and 0 < lab <= len(names) else str(lab)
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        draw.text((x1 + 2, max(0, y1 - 11) if y1 >= 11 else y1 + 2), text, fill=c)
    return pil


def caption(img: Image.Image, text: str, ok: bool | None = None) -> Image.Image:
    """The image with a text strip under it (green/red when ``ok`` says right/wrong)."""
    out = Image.new("RGB", (img.width, img.height + 14), (255, 255, 255))
    out.paste(img, (0, 0))
    fill = (0, 0, 0) if ok is None else ((0, 140, 0) if ok else (200, 0, 0))
    ImageDraw.Draw(out).text((2, img.height + 1), text, fill=fill)
    return out


def grid(rows: Sequence[Sequence[Image.Image]], header: Sequence[str] | None = None,
         pad: int = 4) -> Image.Image:
    """Tiles in rows (every row the same number of tiles); an optional header line per column."""
    if not rows:
        return Image.new("RGB", (64, 16), (255, 255, 255))
    cols = max(len(r) for r in rows)
    w = max(t.width for r in rows for t in r)
    h = max(t.height for r in rows for t in r)
    top = 14 if header else 0
    canvas = Image.new("RGB", (cols * (w + pad) + pad, top + len(rows) * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if header:
        for j, text in enumerate(header):
            draw.text((pad + j * (w + pad), 1), text, fill=(0, 0, 0))
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            canvas.paste(t, (pad + j * (w + pad), top + pad + i * (h + pad)))
    return canvas


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
