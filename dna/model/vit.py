"""Stand-alone ViT of a DNA++ architecture, its costs, and the ViT architecture JSON.

The model (:class:`SearchedViT`) *is* a timm ``VisionTransformer`` (subclass): timm's patch
embedding, class token, position embedding, ``forward_features``/``forward_head``/
``reset_classifier`` are unchanged; only ``blocks`` differs. ``blocks`` is a sequence of stages,
one per searched block; a stage (:class:`ViTStage`) is an input projection (``nn.Linear(in_width,
width)``, or ``nn.Identity`` when the widths agree) followed by ``depth`` timm ``Block``s of
``width = heads * head_dim``, ``heads`` heads and the block's MLP ratio. The final LayerNorm and the
classifier take the last block's width.

Costs (a contract shared with the scores table; ``fixed + sum(rows) == model`` exactly), as dicts
cost name -> value of the costs ``dna.cost_registry`` counts for ViT spaces:

- params: parameters of the modules;
- FLOPs: multiply-accumulates, as ``dna.costs``: every ``nn.Linear`` counts ``in x out`` per token
  it is applied to (``T = (resolution / patch)^2 + 1`` tokens, class token included; the
  classifier sees one token), the patch embedding conv counts as a conv, and each attention layer
  adds its two matmuls ``q @ k^T`` and ``attn @ v``: ``2 * T^2 * heads * head_dim``. LayerNorm,
  softmax, GELU and additions are not counted;
- fixed part (``vit_fixed_costs``): patch embedding, class token and position embedding;
- a block's row (``vit_path_costs``): its input projection (depends on the width handed over), its
  layers, and for the *last* block also the final LayerNorm and the classifier (they take that
  block's width, so they cannot be fixed).

Peak activation memory (``act_mem``) is not counted for ViT: rating writes no ``act_mem`` column and
searching a ViT table under ``--max-act-mem`` is an error naming the missing column.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import torch
import torch.nn as nn
from timm.layers import LayerNorm, PatchEmbed
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block, VisionTransformer, init_weights_vit_timm

from dna.costs import count_flops, count_params
from dna.errors import DnaError
from dna.space.vit import PathChoice, ViTSpace, vit_space

FORMAT = "dna.vit-architecture/v1"


def make_proj(in_width: int, width: int) -> nn.Module:
    """The projection in front of a block: a Linear when the width changes, else Identity."""
    return nn.Identity() if in_width == width else nn.Linear(in_width, width)


def make_layer(heads: int, mlp_ratio: float, head_dim: int, qkv_bias: bool = True,
               drop_path: float = 0.0) -> Block:
    """One transformer layer of a block: timm's ``Block`` (pre-norm attention + MLP)."""
    return Block(dim=heads * head_dim, num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                 drop_path=drop_path, norm_layer=LayerNorm, act_layer=nn.GELU)


class ViTStage(nn.Module):
    """One searched block of the stand-alone model: projection + ``depth`` timm Blocks."""

    def __init__(self, in_width: int, heads: int, mlp_ratio: float, depth: int, head_dim: int,
                 qkv_bias: bool = True, drop_path: Sequence[float] | None = None):
        super().__init__()
        width = heads * head_dim
        self.proj = make_proj(in_width, width)
        dpr = list(drop_path) if drop_path is not None else [0.0] * depth
        self.blocks = nn.Sequential(*[make_layer(heads, mlp_ratio, head_dim, qkv_bias, dpr[i])
                                      for i in range(depth)])
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.proj(x))


def final_modules(width: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """The final LayerNorm and classifier on the last block's width."""
    return LayerNorm(width), (nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity())


class SearchedViT(VisionTransformer):
    """A timm VisionTransformer whose blocks are the searched stages (see the module docstring)."""

    def __init__(self, space: ViTSpace, choices: Sequence, num_classes: int | None = None,
                 resolution: int | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        space = vit_space(space)
        path = space.choices(choices)
        res = resolution or space.resolution
        space.tokens(res)  # checks the patch grid
        nc = space.num_classes if num_classes is None else num_classes
        super().__init__(img_size=res, patch_size=space.patch_size, num_classes=nc,
                         embed_dim=space.embed_dim, depth=0, num_heads=1, qkv_bias=space.qkv_bias,
                         class_token=True, global_pool="token", drop_rate=drop_rate)
        total = sum(c.depth for c in path)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, total)] if total else []
        stages, in_w, i = [], space.embed_dim, 0
        for c in path:
            stages.append(ViTStage(in_w, c.heads, c.mlp_ratio, c.depth, space.head_dim, space.qkv_bias,
                                   dpr[i:i + c.depth]))
            in_w, i = stages[-1].width, i + c.depth
        self.blocks = nn.Sequential(*stages)
        self.norm, self.head = final_modules(in_w, nc)
        self.num_features = self.head_hidden_size = self.embed_dim = in_w
        self.blocks.apply(init_weights_vit_timm)
        self.head.apply(init_weights_vit_timm)
        self.space = space
        self.choices = path
        self.resolution = res


def build_vit(space, choices: Sequence, num_classes: int | None = None, resolution: int | None = None,
              drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> SearchedViT:
    """The stand-alone network of one architecture (one choice per block: ops strings such as
    ``'h8-r3.5-d4'``, BlockChoices, PathChoices, or dicts with ``ops``)."""
    return SearchedViT(space, choices, num_classes, resolution, drop_rate, drop_path_rate)


# ----------------------------------------------------------------------------------------------
# costs


def _attention_macs(m: Attention, inp, _out) -> int:
    """q@k^T and attn@v of one timm Attention call (the linear layers count on their own)."""
    tokens = inp[0].shape[-2]
    return 2 * tokens * tokens * m.num_heads * m.head_dim


def vit_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Linear/conv MACs (``dna.costs.count_flops``) plus the attention matmuls, in one pass."""
    return count_flops(module, input_shape, extra=((Attention, _attention_macs),))


def _costs(params: int, flops: int) -> dict[str, int]:
    return {"params": int(params), "flops": int(flops)}


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b[k] for k in a}


def vit_costs(model: nn.Module, resolution: int | None = None) -> dict[str, int]:
    """``{"params", "flops"}`` of a whole built model at ``resolution`` (default: the model's)."""
    res = resolution or getattr(model, "resolution", None)
    if res is None:
        raise DnaError("vit_costs: give the resolution of the model")
    return _costs(count_params(model), vit_flops(model, (3, res, res)))


@cache
def _proj_costs(in_width: int, width: int, tokens: int) -> tuple[int, int]:
    proj = make_proj(in_width, width)
    return count_params(proj), count_flops(proj, (tokens, in_width))


@cache
def _layer_costs(heads: int, ratio: float, head_dim: int, qkv_bias: bool, tokens: int) -> tuple[int, int]:
    layer = make_layer(heads, ratio, head_dim, qkv_bias)
    return count_params(layer), vit_flops(layer, (tokens, heads * head_dim))


def stage_costs(in_width: int, heads: int, ratio: float, depth: int, head_dim: int, qkv_bias: bool,
                tokens: int) -> tuple[int, int]:
    """(params, FLOPs) of a ``ViTStage``: its projection plus ``depth`` identical layers (each
    counted once on a built module and cached)."""
    p0, f0 = _proj_costs(in_width, heads * head_dim, tokens)
    p1, f1 = _layer_costs(heads, ratio, head_dim, qkv_bias, tokens)
    return p0 + depth * p1, f0 + depth * f1


@cache
def _final_costs(width: int, num_classes: int) -> tuple[int, int]:
    norm, head = final_modules(width, num_classes)
    return count_params(norm) + count_params(head), count_flops(head, (width,))


def vit_path_costs(space, block: int, choice: PathChoice | str, in_width: int,
                   resolution: int | None = None, num_classes: int | None = None) -> dict[str, int]:
    """``{"params", "flops"}`` of one block's path in the stand-alone model, given the width handed
    over; the last block includes the final norm and classifier."""
    space = vit_space(space)
    c = space.check_path(block, choice)
    if in_width not in space.in_widths(block):
        raise DnaError(f"block {block} takes widths {list(space.in_widths(block))}, got {in_width}")
    tokens = space.tokens(resolution)
    params, flops = stage_costs(int(in_width), c.heads, float(c.mlp_ratio), c.depth, space.head_dim,
                                 space.qkv_bias, tokens)
    if block == len(space.blocks) - 1:
        nc = space.num_classes if num_classes is None else num_classes
        p, f = _final_costs(c.heads * space.head_dim, nc)
        params, flops = params + p, flops + f
    return _costs(params, flops)


def vit_fixed_costs(space, resolution: int | None = None) -> dict[str, int]:
    """``{"params", "flops"}`` of the fixed part: patch embedding, class token, position embedding."""
    space = vit_space(space)
    res = resolution or space.resolution
    tokens = space.tokens(res)
    embed = PatchEmbed(img_size=res, patch_size=space.patch_size, in_chans=3, embed_dim=space.embed_dim)
    params = count_params(embed) + space.embed_dim + tokens * space.embed_dim
    return _costs(params, count_flops(embed.proj, (3, res, res)))


def predicted_costs(space, choices: Sequence, resolution: int | None = None,
                    num_classes: int | None = None) -> dict[str, int]:
    """fixed + sum of the per-block path costs along the width chain of ``choices``."""
    space = vit_space(space)
    path = space.choices(choices)
    total = vit_fixed_costs(space, resolution)
    in_w = space.embed_dim
    for k, c in enumerate(path):
        total = _add(total, vit_path_costs(space, k, c, in_w, resolution, num_classes))
        in_w = c.heads * space.head_dim
    return total


# ----------------------------------------------------------------------------------------------
# architecture JSON


def vit_arch_json(space, choices: Sequence, resolution: int | None = None,
                  num_classes: int | None = None, **extra: Any) -> dict:
    """The ViT architecture JSON: format, space, per-block choices, arch_def, resolution, classes."""
    space = vit_space(space)
    path = space.choices(choices)
    d = {
        "format": FORMAT,
        "space": space.to_json(),
        "blocks": [{"block": k, "cell": 0, "ops": c.ops} for k, c in enumerate(path)],
        "arch_def": [c.ops.split("-") for c in path],
        "resolution": int(resolution or space.resolution),
        "num_classes": int(space.num_classes if num_classes is None else num_classes),
    }
    d.update(extra)
    return d


def is_vit_arch(d: Any) -> bool:
    """True for a ViT architecture JSON (what ``dna build``/``dna retrain`` should route here)."""
    return isinstance(d, dict) and (d.get("format") == FORMAT
                                    or (isinstance(d.get("space"), dict) and d["space"].get("kind") == "vit"))


def load_vit_arch(spec: str | dict) -> dict:
    """Read and validate a ViT architecture JSON (a dict or a URI). Accepts a search result's
    JSON too when it carries ``space`` (``blocks`` or ``arch_def`` give the choices)."""
    if isinstance(spec, str):
        from dna import storage

        d = storage.read_json(spec)
    else:
        d = dict(spec)
    if not isinstance(d, dict) or "space" not in d:
        raise DnaError("a ViT architecture JSON needs 'space' (the ViT space JSON) and 'blocks' or 'arch_def'")
    space = vit_space(d["space"])
    picks = d.get("blocks") or d.get("arch_def")
    if not picks:
        raise DnaError("a ViT architecture JSON needs 'blocks' (with 'ops') or 'arch_def'")
    extra = {k: v for k, v in d.items()
             if k not in ("format", "space", "blocks", "arch_def", "resolution", "num_classes")}
    return vit_arch_json(space, picks, d.get("resolution"), d.get("num_classes"), **extra)


def build_from_arch(spec: str | dict, num_classes: int | None = None, drop_rate: float = 0.0,
                    drop_path_rate: float = 0.0) -> SearchedViT:
    d = load_vit_arch(spec)
    return build_vit(d["space"], d["blocks"], num_classes=num_classes if num_classes is not None else d["num_classes"],
                     resolution=d["resolution"], drop_rate=drop_rate, drop_path_rate=drop_path_rate)


def summarize_vit(spec: str | dict, num_classes: int | None = None, resolution: int | None = None) -> dict:
    """What ``dna build`` prints for a ViT architecture: params, FLOPs, predicted costs, layout."""
    d = load_vit_arch(spec)
    res = resolution or d["resolution"]
    nc = d["num_classes"] if num_classes is None else num_classes
    model = build_vit(d["space"], d["blocks"], num_classes=nc, resolution=res)
    costs = vit_costs(model, res)
    space = vit_space(d["space"])
    layout, in_w = [], space.embed_dim
    for k, c in enumerate(space.choices(d["blocks"])):
        w = c.heads * space.head_dim
        layout.append({"block": k, "ops": c.ops, "in_width": in_w, "width": w, "heads": c.heads,
                       "mlp_ratio": c.mlp_ratio, "depth": c.depth})
        in_w = w
    return {"kind": "vit", "space": space.name, **costs, "resolution": res,
            "num_classes": nc, "tokens": space.tokens(res), "blocks": layout}


def vit_arch_from_result(result, meta, **extra: Any) -> dict:
    """The ViT architecture JSON of a ``dna.search`` result over a ViT scores table (``meta``:
    its ``ScoresMeta``): the space and resolution of the table, the result's choices, and its
    predicted loss/params/FLOPs."""
    space = vit_space(meta.space)
    return vit_arch_json(space, result.choices, resolution=meta.resolution, loss=result.loss,
                         params=result.params, flops=result.flops, **extra)


def format_vit_summary(r: dict) -> str:
    """Readable text of :func:`summarize_vit`'s result (for ``dna build``)."""
    lines = [f"ViT of space {r['space']}: {r['params'] / 1e6:.3f}M params, {r['flops'] / 1e6:.1f}M FLOPs "
             f"(MACs) at {r['resolution']} px, {r['tokens']} tokens, {r['num_classes']} classes"]
    for b in r["blocks"]:
        proj = f"proj {b['in_width']}->{b['width']}, " if b["in_width"] != b["width"] else ""
        lines.append(f"  block {b['block']}: {b['ops']}  ({proj}{b['depth']} x [{b['heads']} heads, width "
                     f"{b['width']}, mlp {int(b['width'] * b['mlp_ratio'])}])")
    return "\n".join(lines)
