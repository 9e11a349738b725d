"""The searched network as a backbone: weights, multi-scale feature maps, and the C4 split.

Two kinds of classification nets are supported, whatever built them:

- MBConv CNNs built like timm's ``EfficientNet`` (``conv_stem``, ``bn1``, ``blocks`` of stages,
  ``conv_head``, ``bn2``): every net ``dna build`` makes, and timm's EfficientNet/MixNet/MNASNet.
  The feature levels are timm's ``feature_info`` (the last stage of each stride); with
  ``output_stride=16`` the stride-32 stages are dilated instead of strided (DeepLab's OS16),
  which leaves the weights untouched.
- Vision transformers with timm's ``VisionTransformer`` interface (``patch_embed``, ``blocks``,
  ``forward_intermediates``), the searched ViT included. Token maps of evenly spaced blocks are
  reshaped to NCHW and resampled to the requested strides (a "simple feature pyramid", as ViTDet).

Weights never come silently from nowhere: :func:`load_backbone` needs a checkpoint URI, or an
explicit ``random_init=True``, which warns loudly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna.errors import DnaError

RANDOM_INIT = "RANDOM INIT"
DEFAULT_STRIDES = (4, 8, 16, 32)


# --------------------------------------------------------------------------------------------
# Kinds of networks


def is_cnn(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks"))


def is_vit(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "forward_intermediates"))


def check_supported(model: nn.Module, name: str) -> None:
    if not (is_cnn(model) or is_vit(model)):
        raise DnaError(
            f"model {name!r} ({type(model).__name__}) cannot be a transfer backbone: expected an "
            "EfficientNet-style CNN (conv_stem, bn1, blocks) or a timm VisionTransformer "
            "(patch_embed, blocks, forward_intermediates)"
        )


# --------------------------------------------------------------------------------------------
# Weights


def _classifier_prefixes(model: nn.Module) -> list[str]:
    """State-dict prefixes of the classifier (dropped when loading a backbone checkpoint)."""
    prefixes = []
    get = getattr(model, "get_classifier", None)
    clf = get() if callable(get) else None
    if isinstance(clf, nn.Module):
        for name, module in model.named_modules():
            if module is clf and name:
                prefixes.append(name + ".")
    for name in ("classifier", "head", "fc", "head_dist"):
        m = getattr(model, name, None)
        if isinstance(m, (nn.Linear, nn.Identity)):
            prefixes.append(name + ".")
    return sorted(set(prefixes))


def extract_state_dict(obj, uri: str) -> dict[str, torch.Tensor]:
    """The model state dict of a checkpoint object: raw, ``{"model": ...}`` (``dna retrain``,
    ``dna build``, ``dna transfer cls``) or ``{"state_dict": ...}``."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DnaError(f"checkpoint {uri} holds no state dict (expected tensors, or a dict with key 'model')")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_backbone_weights(model: nn.Module, uri: str) -> dict:
    """Load a classification checkpoint into ``model`` except its classifier (which the task
    replaces). Any other missing or unexpected key, or a shape mismatch, is a :class:`DnaError`.
    Returns ``{"loaded": n, "skipped": [classifier keys]}``."""
    from dna import storage

    state = extract_state_dict(storage.load_torch(uri), uri)
    prefixes = tuple(_classifier_prefixes(model))
    skipped = sorted(k for k in state if prefixes and k.startswith(prefixes))
    body = {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in body.items()
             if k in own and own[k].shape != v.shape]
    if wrong:
        raise DnaError(f"checkpoint {uri} does not fit the backbone: shape mismatch {wrong[:5]}")
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not (prefixes and k.startswith(prefixes))]
    if missing or unexpected:
        raise DnaError(
            f"checkpoint {uri} does not fit the backbone: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]} (is the architecture the one that was trained?)"
        )
    return {"loaded": len(body), "skipped": skipped}


def create_classifier(spec: str, model_kwargs: dict | None = None) -> nn.Module:
    """The classification net of an architecture JSON URI or a timm model name, no weights."""
    from dna.teacher import create_model

    kwargs = dict(model_kwargs or {})
    num_classes = kwargs.pop("num_classes", None)
    try:
        model = create_model(spec, num_classes=num_classes, **kwargs)   # any family's architecture JSON
    except DnaError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError) as exc:
        raise DnaError(f"cannot build model {spec!r} with model_kwargs {kwargs}: {exc}") from exc
    check_supported(model, spec)
    return model


def load_backbone(
    spec: str,
    checkpoint: str | None,
    random_init: bool = False,
    model_kwargs: dict | None = None,
) -> tuple[nn.Module, str]:
    """The classification net with the checkpoint's weights, and where they came from.

    Without a checkpoint this refuses (:class:`DnaError`) unless ``random_init`` is given
    explicitly; then it warns and the source is :data:`RANDOM_INIT`.
    """
    if checkpoint is None and not random_init:
        raise DnaError(
            f"no backbone weights for {spec!r}: give --checkpoint URI (e.g. <retrain out>/model.pt); "
            "transfer never starts from random weights unless --random-init is given explicitly"
        )
    model = create_classifier(spec, model_kwargs)
    if checkpoint is None:
        warnings.warn(
            f"TRANSFER FROM A RANDOMLY INITIALISED BACKBONE ({spec}): --random-init was given, no "
            "pretrained weights are loaded; results say nothing about the searched architecture",
            UserWarning,
            stacklevel=2,
        )
        return model, RANDOM_INIT
    load_backbone_weights(model, checkpoint)
    return model, checkpoint


# --------------------------------------------------------------------------------------------
# CNN: stages, strides, dilation


def _conv_stride(conv: nn.Conv2d) -> int:
    s = conv.stride
    return int(s[0] if isinstance(s, tuple) else s)


def _block_stride(block: nn.Module) -> int:
    stride = 1
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            stride *= _conv_stride(m)
    return stride


def _set_dilation(block: nn.Module, dilation: int, remove_stride: bool) -> None:
    from timm.layers import Conv2dSame

    for m in block.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if remove_stride and _conv_stride(m) > 1:
            m.stride = (1, 1)
        k = m.kernel_size[0]
        if k == 1:
            continue
        m.dilation = (dilation, dilation)
        if not isinstance(m, Conv2dSame):
            m.padding = ((dilation * (k - 1)) // 2, (dilation * (k - 1)) // 2)


def cnn_stage_strides(model: nn.Module) -> list[int]:
    """The cumulative stride after each stage of an EfficientNet-style net."""
    stride = _conv_stride(model.conv_stem)
    out = []
    for stage in model.blocks:
        for block in stage:
            stride *= _block_stride(block)
        out.append(stride)
    return out


def dilate_cnn(model: nn.Module, output_stride: int) -> None:
    """Replace strides beyond ``output_stride`` by dilation (timm's builder does the same for its
    ``output_stride`` argument): the block that would downsample keeps its dilation, the ones after
    it use the multiplied one. Weights are unchanged, so a checkpoint still fits."""
    stride = _conv_stride(model.conv_stem)
    dilation = 1
    for stage in model.blocks:
        for block in stage:
            s = _block_stride(block)
            if s > 1 and stride * s > output_stride:
                _set_dilation(block, dilation, remove_stride=True)
                dilation *= s
            else:
                if dilation > 1:
                    _set_dilation(block, dilation, remove_stride=False)
                stride *= s


def _cnn_out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise DnaError(f"stage {type(module).__name__} has no convolution")
    return convs[-1].out_channels


# --------------------------------------------------------------------------------------------
# Feature backbones


class FeatureBackbone(nn.Module):
    """``forward(x) -> list of NCHW maps``, one per entry of ``strides``, with ``channels``."""

    strides: list[int]
    channels: list[int]
    kind: str


class CNNFeatures(FeatureBackbone):
    """Multi-scale maps of an EfficientNet-style net at the ends of its stride levels.

    ``strides`` picks levels among the net's reductions (4, 8, 16, 32); with ``output_stride=16``
    the stride-32 level is computed with dilation and reported as 16. Only the stem and the stages
    up to the deepest requested level are kept (the classifier head is not part of the backbone).
    """

    kind = "cnn"

    def __init__(self, model: nn.Module, strides: Sequence[int] = DEFAULT_STRIDES, output_stride: int = 32):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise DnaError(f"output_stride {output_stride!r} must be 8, 16 or 32")
        stage_strides = cnn_stage_strides(model)
        ends = {}  # reduction -> last stage index with that reduction
        for i, s in enumerate(stage_strides):
            ends[s] = i
        levels = []
        for s in strides:
            if s not in ends:
                raise DnaError(f"feature stride {s} not available: the network's stages reach {sorted(ends)}")
            levels.append(ends[s])
        if output_stride < max(stage_strides):
            dilate_cnn(model, output_stride)
        self.levels = levels
        self.strides = [min(s, output_stride) for s in strides]
        self.channels = [_cnn_out_channels(model.blocks[i]) for i in levels]
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = nn.Sequential(*list(model.blocks)[: max(levels) + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        out = {}
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.levels:
                out[i] = x
        return [out[i] for i in self.levels]


def _enable_dynamic_size(model: nn.Module) -> bool:
    """Let a timm ViT take any input size (pos-embed resampling, padding to the patch size)."""
    if getattr(model, "dynamic_img_size", False):
        return True
    pe = model.patch_embed
    if not all(hasattr(pe, a) for a in ("strict_img_size", "dynamic_img_pad", "output_fmt", "flatten")) \
            or not hasattr(model, "dynamic_img_size"):
        return False
    from timm.layers import Format

    pe.flatten = False
    pe.output_fmt = Format.NHWC
    pe.strict_img_size = False
    pe.dynamic_img_pad = True
    model.dynamic_img_size = True
    return True


def vit_patch_size(model: nn.Module) -> int:
    ps = getattr(model.patch_embed, "patch_size", 16)
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def vit_img_size(model: nn.Module) -> tuple[int, int] | None:
    size = getattr(model.patch_embed, "img_size", None)
    if size is None:
        return None
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


class ViTTrunk(nn.Module):
    """Token maps (NCHW, at the patch stride) of chosen blocks of a ViT, for any input size.

    A timm ViT is switched to dynamic image sizes (the position embedding is resampled); a ViT that
    cannot be is fed the input resized to its own size, and the maps are resized back.
    """

    def __init__(self, model: nn.Module, indices: Sequence[int]):
        super().__init__()
        if hasattr(model, "reset_classifier"):
            model.reset_classifier(0)
        self.model = model
        self.indices = [int(i) for i in indices]
        self.patch = vit_patch_size(model)
        self.dynamic = _enable_dynamic_size(model)
        self.img_size = vit_img_size(model)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        if not self.dynamic and self.img_size is not None and (h, w) != self.img_size:
            y = F.interpolate(x, size=self.img_size, mode="bilinear", align_corners=False)
            maps = self.model.forward_intermediates(
                y, indices=self.indices, intermediates_only=True, stop_early=True)
            size = (math.ceil(h / self.patch), math.ceil(w / self.patch))
            return [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
        ph, pw = (-h) % self.patch, (-w) % self.patch
        if ph or pw:  # pad to whole patches (bottom/right), as timm's dynamic_img_pad does
            x = F.pad(x, (0, pw, 0, ph))
        return list(self.model.forward_intermediates(
            x, indices=self.indices, intermediates_only=True, stop_early=True))


def _resample(x: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return x
    if factor > 1:
        return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    k = round(1 / factor)
    return F.max_pool2d(x, kernel_size=k, stride=k, ceil_mode=True)


class ViTFeatures(FeatureBackbone):
    """Multi-scale maps of a ViT: the maps of evenly spaced blocks (the last one last), each
    resampled from the patch stride to its level's stride (bilinear up, max-pool down)."""

    kind = "vit"

    def __init__(self, model: nn.Module, strides: Sequence[int] = DEFAULT_STRIDES):
        super().__init__()
        depth = len(model.blocks)
        n = len(strides)
        indices = sorted({max(0, round(depth * (i + 1) / n) - 1) for i in range(n)})
        while len(indices) < n:  # fewer blocks than levels: repeat the last one
            indices.append(indices[-1])
        self.trunk = ViTTrunk(model, sorted(set(indices)))
        self.take = [sorted(set(indices)).index(i) for i in indices]
        self.strides = [int(s) for s in strides]
        self.channels = _probe_channels(self.trunk, model)
        self.channels = [self.channels[t] for t in self.take]
        self.patch = self.trunk.patch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.trunk(x)
        h, w = x.shape[-2:]
        out = []
        for t, s in zip(self.take, self.strides, strict=True):
            m = _resample(maps[t], self.patch / s)
            size = (math.ceil(h / s), math.ceil(w / s))
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            out.append(m)
        return out


@torch.no_grad()
def _probe_channels(trunk: ViTTrunk, model: nn.Module) -> list[int]:
    """Channels of each taken map, by one forward pass at the model's own size (widths may vary
    per block in a searched ViT)."""
    size = trunk.img_size or (trunk.patch * 4, trunk.patch * 4)
    was = trunk.training
    trunk.eval()
    try:
        maps = trunk(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    finally:
        trunk.train(was)
    return [int(m.shape[1]) for m in maps]


def feature_backbone(model: nn.Module, strides: Sequence[int] = DEFAULT_STRIDES,
                     output_stride: int = 32) -> FeatureBackbone:
    """The multi-scale backbone of a CNN or ViT classification net."""
    if is_cnn(model):
        return CNNFeatures(model, strides, output_stride=output_stride)
    if is_vit(model):
        return ViTFeatures(model, strides)
    check_supported(model, type(model).__name__)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# The C4 split (Faster R-CNN with a C4 backbone, as in the paper and FBNetV3)


class CNNTrunkC4(nn.Module):
    """Stem and stages up to stride 16; ``forward`` gives ``{"0": map}`` for torchvision."""

    def __init__(self, model: nn.Module, end: int):
        super().__init__()
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = nn.Sequential(*list(model.blocks)[: end + 1])
        self.out_channels = _cnn_out_channels(model.blocks[end])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.blocks(self.bn1(self.conv_stem(x)))}


class CNNHeadC4(nn.Module):
    """The remaining stages (stride 32 on the RoI), the 1x1 head conv, global pooling."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.blocks = nn.Sequential(*list(model.blocks)[start:])
        self.conv_head = getattr(model, "conv_head", nn.Identity())
        self.bn2 = getattr(model, "bn2", nn.Identity())
        self.out_channels = (
            model.conv_head.out_channels if isinstance(self.conv_head, nn.Conv2d)
            else _cnn_out_channels(self.blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ViTTrunkC4(nn.Module):
    """The first blocks of a ViT as a single map at the patch stride."""

    def __init__(self, model: nn.Module, split: int):
        super().__init__()
        self.trunk = ViTTrunk(model, [split - 1])
        self.out_channels = _probe_channels(self.trunk, model)[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.trunk(x)[0]}


class ViTHeadC4(nn.Module):
    """The last blocks of a ViT run on each RoI's tokens (plus a learned RoI position embedding),
    then the final norm and mean pooling."""

    def __init__(self, blocks: Sequence[nn.Module], norm: nn.Module, channels: int, roi_size: int):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm
        self.pos = nn.Parameter(torch.zeros(1, roi_size * roi_size, channels))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)
        t = t + self.pos if t.shape[1] == self.pos.shape[1] else t
        t = self.norm(self.blocks(t))
        return t.mean(dim=1)


def split_c4(model: nn.Module, roi_size: int = 7) -> tuple[nn.Module, nn.Module]:
    """(trunk, RoI head) of a classification net.

    CNN: the trunk ends with the last stage of stride 16 (or the deepest stride below it); the
    head is every later stage plus ``conv_head``/``bn2`` and pooling. ViT: the trunk is the first
    three quarters of the blocks, the head the last quarter. Both carry ``out_channels``.
    """
    if is_cnn(model):
        strides = cnn_stage_strides(model)
        below = [i for i, s in enumerate(strides) if s <= 16]
        if not below or below[-1] == len(strides) - 1:
            raise DnaError(
                f"cannot split {type(model).__name__} at stride 16 for a C4 head: stage strides {strides}"
            )
        end = below[-1]
        return CNNTrunkC4(model, end), CNNHeadC4(model, end + 1)
    if is_vit(model):
        depth = len(model.blocks)
        if depth < 2:
            raise DnaError(f"a ViT with {depth} block cannot be split into a C4 trunk and head")
        split = max(1, min(depth - 1, round(depth * 3 / 4)))
        blocks = list(model.blocks)[split:]
        norm = getattr(model, "norm", nn.Identity())
        trunk = ViTTrunkC4(model, split)
        head = ViTHeadC4(blocks, norm, trunk.out_channels, roi_size)
        head.out_channels = _probe_head_width(blocks, norm, trunk.out_channels)
        return trunk, head
    check_supported(model, type(model).__name__)
    raise AssertionError("unreachable")


@torch.no_grad()
def _probe_head_width(blocks: Sequence[nn.Module], norm: nn.Module, channels: int) -> int:
    """Width of the head's output (a searched ViT may change width between blocks)."""
    p = next(iter(norm.parameters()), None) if isinstance(norm, nn.Module) else None
    out = torch.zeros(1, 4, channels, device=p.device if p is not None else "cpu")
    for blk in blocks:
        out = blk(out)
    return int(norm(out).shape[-1])


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` frozen (timm's ``freeze_batch_norm_2d``: statistics and
    affine parameters fixed, activations of fused norm-act layers kept), the detection convention
    for small batches. Returns the (possibly new) module."""
    from timm.layers import freeze_batch_norm_2d

    return freeze_batch_norm_2d(module)
