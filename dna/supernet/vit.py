"""ViT student supernet of one block (DNA++, SPEC sections 3 and 8): weight-sliced layers.

Slimmable layers as in AutoFormer/DS-ViT: each layer position holds the weights of the largest
choice (max heads, max MLP ratio); a sampled (heads, ratio) uses the leading slices:

- embedding width ``w = heads * head_dim``: the first ``w`` input/output features of every Linear
  and LayerNorm;
- attention: the first ``heads`` heads of q, k and v (rows ``[0, heads*head_dim)`` of each of the
  three ``max_heads*head_dim`` row groups of the fused ``qkv`` weight, the layout timm's
  ``Attention`` reshapes as ``(3, heads, head_dim)``), and the first ``heads*head_dim`` input
  columns of ``proj``;
- MLP: the first ``int(w * ratio)`` hidden units (timm's ``Block`` rounding).

So a sliced layer computes exactly what a timm ``Block(w, heads, ratio)`` with the sliced weights
copied in computes (``SlimViTLayer.export``). Depth ``d`` uses the first ``d`` layers, so a depth-3
path is a prefix of the depth-4 path with the same width and ratio.

From the teacher's maps to tokens and back (``ViTBlockSupernet``):

- input: the teacher's map entering the block, ``Y_{k-1}`` ``[B, C_in, H, W]``. The block's
  tokenizer is a patchify conv (kernel = stride = ``s``, the teacher stage's spatial stride, zero
  padding on the right/bottom when ``H`` is not a multiple of ``s``), i.e. a linear projection of
  each ``s x s`` patch (for ``s = 1``: flatten the positions and project each one) to the sampled
  width, plus a learned position embedding; so the student's tokens sit on the teacher's *output*
  grid, one token per position of ``Y_k``. The tokenizer's output rows are sliced to the sampled
  width like every other layer (this is the supernet's stand-in for the stand-alone input
  projection from the previous block's width);
- output: LayerNorm and a Linear (input sliced to the sampled width) to the teacher's output
  channels ``C_out``: tokens ``[B, H_out*W_out, C_out]``; ``to_map`` reshapes them to the teacher's
  map ``[B, C_out, H_out, W_out]`` (supervised DNA compares it with ``Y_k`` by MSE; DNA++ averages
  the tokens and feeds its projector).

These tokenizer/readout ends are supernet scaffolding (as the MBConv supernet's teacher-width
ends): the stand-alone model (``dna.model.vit``) has its own patch embedding and projections,
and costs are always counted on the stand-alone modules.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from dna.errors import DnaError
from dna.space.vit import PathChoice, ViTSpace


class SlimLinear(nn.Linear):
    """A Linear that runs on the first ``x.shape[-1]`` inputs and the first ``out`` outputs."""

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        out = self.out_features if out_features is None else out_features
        bias = self.bias[:out] if self.bias is not None else None
        return F.linear(x, self.weight[:out, : x.shape[-1]], bias)


class SlimLayerNorm(nn.LayerNorm):
    """LayerNorm over the first ``x.shape[-1]`` channels (timm's eps 1e-6)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        return F.layer_norm(x, (w,), self.weight[:w], self.bias[:w], self.eps)


class SlimAttention(nn.Module):
    """Multi-head self-attention with the weights of ``max_heads`` heads; uses the first ``heads``."""

    def __init__(self, dim: int, max_heads: int, head_dim: int, qkv_bias: bool = True):
        super().__init__()
        self.max_heads = max_heads
        self.head_dim = head_dim
        attn_dim = max_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * attn_dim, bias=qkv_bias)
        self.proj = nn.Linear(attn_dim, dim)

    def qkv_slice(self, heads: int, in_features: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``qkv`` weight and bias of the first ``heads`` heads on the first ``in_features``."""
        a, full = heads * self.head_dim, self.max_heads * self.head_dim
        weight = self.qkv.weight.view(3, full, -1)[:, :a, :in_features].reshape(3 * a, in_features)
        bias = self.qkv.bias.view(3, full)[:, :a].reshape(3 * a) if self.qkv.bias is not None else None
        return weight, bias

    def forward(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, n, c = x.shape
        a = heads * self.head_dim
        weight, bias = self.qkv_slice(heads, c)
        qkv = F.linear(x, weight, bias).reshape(b, n, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, a)
        return F.linear(out, self.proj.weight[:c, :a], self.proj.bias[:c])


class SlimMlp(nn.Module):
    """fc1 -> GELU -> fc2 with ``int(max_dim * max_ratio)`` hidden units; uses ``int(w * ratio)``."""

    def __init__(self, dim: int, max_ratio: float):
        super().__init__()
        hidden = int(dim * max_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, ratio: float) -> torch.Tensor:
        c = x.shape[-1]
        h = int(c * ratio)
        if h > self.fc1.out_features:
            raise DnaError(f"MLP ratio {ratio:g} at width {c} needs {h} hidden units; the layer has "
                           f"{self.fc1.out_features}")
        x = self.act(F.linear(x, self.fc1.weight[:h, :c], self.fc1.bias[:h]))
        return F.linear(x, self.fc2.weight[:c, :h], self.fc2.bias[:c])


class SlimViTLayer(nn.Module):
    """A pre-norm transformer layer (timm ``Block`` layout) with sliceable width/heads/MLP ratio."""

    def __init__(self, max_heads: int, head_dim: int, max_ratio: float, qkv_bias: bool = True):
        super().__init__()
        dim = max_heads * head_dim
        self.head_dim = head_dim
        self.max_heads = max_heads
        self.max_ratio = max_ratio
        self.qkv_bias = qkv_bias
        self.norm1 = SlimLayerNorm(dim)
        self.attn = SlimAttention(dim, max_heads, head_dim, qkv_bias)
        self.norm2 = SlimLayerNorm(dim)
        self.mlp = SlimMlp(dim, max_ratio)

    def forward(self, x: torch.Tensor, heads: int, ratio: float) -> torch.Tensor:
        if x.shape[-1] != heads * self.head_dim:
            raise DnaError(f"tokens of width {x.shape[-1]} given to a {heads}-head layer "
                           f"(width {heads * self.head_dim})")
        x = x + self.attn(self.norm1(x), heads)
        return x + self.mlp(self.norm2(x), ratio)

    @torch.no_grad()
    def export(self, heads: int, ratio: float) -> Block:
        """A stand-alone timm ``Block`` holding this layer's slices for (heads, ratio)."""
        from dna.model.vit import make_layer

        w = heads * self.head_dim
        h = int(w * ratio)
        block = make_layer(heads, ratio, self.head_dim, self.qkv_bias)
        for src, dst in ((self.norm1, block.norm1), (self.norm2, block.norm2)):
            dst.weight.copy_(src.weight[:w])
            dst.bias.copy_(src.bias[:w])
        weight, bias = self.attn.qkv_slice(heads, w)
        block.attn.qkv.weight.copy_(weight)
        if bias is not None:
            block.attn.qkv.bias.copy_(bias)
        block.attn.proj.weight.copy_(self.attn.proj.weight[:w, :w])
        block.attn.proj.bias.copy_(self.attn.proj.bias[:w])
        block.mlp.fc1.weight.copy_(self.mlp.fc1.weight[:h, :w])
        block.mlp.fc1.bias.copy_(self.mlp.fc1.bias[:h])
        block.mlp.fc2.weight.copy_(self.mlp.fc2.weight[:w, :h])
        block.mlp.fc2.bias.copy_(self.mlp.fc2.bias[:w])
        return block


def patch_stride(in_size: int, out_size: int) -> int:
    """The stride ``s`` with ``ceil(in_size / s) == out_size`` (a teacher stage's reduction)."""
    if out_size < 1 or in_size < out_size:
        raise DnaError(f"teacher stage maps {in_size}px to {out_size}px: expected a reduction by an integer stride")
    s = -(-in_size // out_size)
    if -(-in_size // s) != out_size:
        raise DnaError(f"teacher stage maps {in_size}px to {out_size}px: no integer stride does that")
    return s


class ViTBlockSupernet(nn.Module):
    """One block's slimmable ViT supernet between the teacher's maps (module docstring)."""

    def __init__(self, space: ViTSpace, block: int, teacher_in: int, teacher_out: int,
                 in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        space.check_block(block)
        spec = space.blocks[block]
        self.space = space
        self.block = block
        self.head_dim = space.head_dim
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.in_hw = (int(in_hw[0]), int(in_hw[1]))
        self.stride = (patch_stride(self.in_hw[0], self.out_hw[0]), patch_stride(self.in_hw[1], self.out_hw[1]))
        width = space.max_width(block)
        self.embed = nn.Conv2d(teacher_in, width, kernel_size=self.stride, stride=self.stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.out_hw[0] * self.out_hw[1], width))
        trunc_normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(
            SlimViTLayer(max(spec.heads), space.head_dim, max(spec.mlp_ratios), space.qkv_bias)
            for _ in range(max(spec.depths))
        )
        self.norm = SlimLayerNorm(width)
        self.head = SlimLinear(width, teacher_out)
        self.teacher_out = teacher_out
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ----- pieces (rating shares prefixes with them) ------------------------------------------
    def embed_tokens(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """Teacher map ``[B, C_in, H, W]`` -> tokens ``[B, H_out*W_out, heads*head_dim]``."""
        w = heads * self.head_dim
        sh, sw = self.stride
        pad_h = (-x.shape[-2]) % sh
        pad_w = (-x.shape[-1]) % sw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        t = F.conv2d(x, self.embed.weight[:w], self.embed.bias[:w], stride=self.stride)
        if tuple(t.shape[-2:]) != self.out_hw:
            raise DnaError(f"block {self.block}: teacher map {tuple(x.shape[-2:])} gives a "
                           f"{tuple(t.shape[-2:])} grid, the supernet was built for {self.out_hw}")
        return t.flatten(2).transpose(1, 2) + self.pos_embed[:, :, :w]

    def layer(self, i: int, t: torch.Tensor, choice: PathChoice) -> torch.Tensor:
        return self.layers[i](t, choice.heads, choice.mlp_ratio)

    def readout(self, t: torch.Tensor) -> torch.Tensor:
        """Tokens of any sampled width -> tokens with the teacher's output channels."""
        return self.head(self.norm(t))

    def to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, C_out]`` -> ``[B, C_out, H_out, W_out]`` (the teacher's map layout)."""
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, *self.out_hw)

    def forward(self, x: torch.Tensor, choice: PathChoice) -> torch.Tensor:
        """Tokens ``[B, H_out*W_out, C_out]`` of path ``choice`` for teacher map ``x``."""
        t = self.embed_tokens(x, choice.heads)
        for i in range(choice.depth):
            t = self.layer(i, t, choice)
        return self.readout(t)

    def sample(self, generator: torch.Generator) -> PathChoice:
        """A uniformly sampled path of this block (heads, ratio and depth independently)."""
        b = self.space.blocks[self.block]
        i, j, d = (int(torch.randint(n, (1,), generator=generator)) for n in
                   (len(b.heads), len(b.mlp_ratios), len(b.depths)))
        return PathChoice(int(b.heads[i]), float(b.mlp_ratios[j]), int(b.depths[d]))


__all__ = ["SlimAttention", "SlimLayerNorm", "SlimLinear", "SlimMlp", "SlimViTLayer",
           "ViTBlockSupernet", "patch_stride"]
