"""Two augmented views per image for DNA++, on batched tensors (fast, on the training device).

Per sample: a random resized crop (area fraction in ``scale``, aspect ratio log-uniform in
``ratio``, resampled to the input size with bilinear ``grid_sample``), a horizontal flip (p=0.5),
colour jitter (brightness, contrast, saturation, each a factor in ``[1-j, 1+j]``, with probability
``jitter_prob``) and grayscale (``grayscale_prob``). Images arrive normalised with the ImageNet
mean/std (``dna.data``); colour operations run on the de-normalised [0, 1] image and the result is
normalised again. All randomness comes from the given ``torch.Generator`` (CPU), so views are
reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from dna.ssl_config import ViewAugment  # noqa: F401 (re-exported)


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment(x: torch.Tensor, gen: torch.Generator, cfg: ViewAugment | None = None) -> torch.Tensor:
    """One random view of every image of the batch ``x`` ``[B, 3, H, W]`` (normalised)."""
    cfg = cfg or ViewAugment()
    b = x.shape[0]
    # random resized crop + flip as one affine resampling
    area = _u(b, *cfg.scale, gen)
    log_r = _u(b, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), gen)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * torch.rand(b, generator=gen) - 1) * (1 - w)
    cy = (2 * torch.rand(b, generator=gen) - 1) * (1 - h)
    sign = torch.where(torch.rand(b, generator=gen) < cfg.flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # colour, on the de-normalised image
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    img = x * std + mean
    j = cfg.jitter
    apply = (torch.rand(b, generator=gen) < cfg.jitter_prob).float()
    bright = 1 + apply * _u(b, -j, j, gen)
    contrast = 1 + apply * _u(b, -j, j, gen)
    sat = 1 + apply * _u(b, -j, j, gen)
    gray_p = (torch.rand(b, generator=gen) < cfg.grayscale_prob).float()
    to = {"device": x.device, "dtype": x.dtype}
    bright, contrast, sat, gray_p = (t.to(**to).view(b, 1, 1, 1) for t in (bright, contrast, sat, gray_p))
    luma = torch.tensor([0.299, 0.587, 0.114], **to).view(1, 3, 1, 1)
    img = img * bright
    m = (img * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    img = (img - m) * contrast + m
    gray = (img * luma).sum(1, keepdim=True)
    img = gray + (img - gray) * sat
    gray = (img * luma).sum(1, keepdim=True)
    img = img * (1 - gray_p) + gray * gray_p
    img = img.clamp(0, 1)
    return (img - mean) / std


def two_views(x: torch.Tensor, gen: torch.Generator, cfg: ViewAugment | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of the batch."""
    return augment(x, gen, cfg), augment(x, gen, cfg)
