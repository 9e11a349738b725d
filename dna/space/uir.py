"""A MobileNetV4-style search space: universal inverted bottleneck (UIR) ops (a worked third family).

MobileNetV4 builds every layer from one block, timm's ``UniversalInvertedResidual``
(``uir_r1_a{start dw k}_k{mid dw k}_s{stride}_e{exp}_c{ch}``); which of its two optional
depthwise convs are present makes the variant:

- ``xd`` ExtraDW: a depthwise conv before and after the expansion (``a=k``, ``k=k``);
- ``ib`` IB, the classic inverted bottleneck: only the middle one (``a0``, ``k=k``);
- ``cn`` ConvNext: only the one before the expansion (``a=k``, ``k0``).

An op is ``<variant>_k<kernel>e<expansion>`` (``xd_k3e4``). The FFN variant (``a0``, ``k0``) has
no depthwise conv, so it cannot take a block's stride-2 first layer; since the ops are space-wide
it is left out.

These layers come from the same timm ``EfficientNetBuilder`` as MBConv's ``ir`` layers, so this
family *is* the MBConv family with another op -> block string: it reuses the MBConv space data
(blocks of cells, fixed stem / first layer / head), the layer factory, the supernet, the path costs,
the EfficientNet model and its arch_def JSON (:class:`dna.model.mbconv_family.MBConvFamily`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dna.errors import DnaError
from dna.model.mbconv_family import MBConvFamily
from dna.space.mbconv import MBCONV_TINY, TABLE1, MBConvSpace, Op

# variant -> (start dw kernel present, mid dw kernel present)
VARIANTS = {"xd": (True, True), "ib": (False, True), "cn": (True, False)}


@dataclass(frozen=True)
class UIROp(Op):
    """One UIR candidate: MBConv's kernel size and expansion ratio, plus the variant."""

    variant: str = "ib"

    @property
    def name(self) -> str:
        return f"{self.variant}_{super().name}"

    @classmethod
    def parse(cls, name: str) -> UIROp:
        variant, sep, rest = str(name).partition("_")
        try:
            op = Op.parse(rest) if sep and variant in VARIANTS else None
        except DnaError:
            op = None
        if op is None:
            raise DnaError(f"unknown op {name!r}: expected '<variant>_k<odd kernel>e<expansion>' with "
                           f"variant one of {list(VARIANTS)}, e.g. 'xd_k3e4'")
        return cls(op.kernel, op.expand, variant)

    def block_str(self, stride: int, channels: int, se_ratio: float) -> str:
        """timm's arch_def string for this op as one layer."""
        start, mid = VARIANTS[self.variant]
        se = f"_se{se_ratio:g}" if se_ratio else ""
        return (f"uir_r1_a{self.kernel if start else 0}_k{self.kernel if mid else 0}_s{stride}"
                f"_e{self.expand}_c{channels}{se}")


@dataclass(frozen=True)
class UIRSpace(MBConvSpace):
    """An MBConv-shaped space whose ops are UIR variants (no squeeze-excite by default, as
    MobileNetV4)."""

    se_ratio: float = 0.0
    kind: str = field(default="uir")
    op_type: ClassVar[type] = UIROp


OPS = ("xd_k3e4", "xd_k5e4", "ib_k3e4", "ib_k5e4", "cn_k3e4", "cn_k5e4")
OPS_TINY = ("xd_k3e2", "ib_k3e4", "ib_k5e4", "cn_k3e4")

UIR = UIRSpace(name="uir", ops=OPS, blocks=TABLE1)


# Same blocks (strides, widths), stem and head as ``mbconv-tiny``, so its tiny EfficientNet teacher fits.
UIR_TINY = UIRSpace(name="uir-tiny", ops=OPS_TINY, blocks=MBCONV_TINY.blocks, stem_channels=16,
                    first_channels=8, head_channels=320, resolution=32, num_classes=10)

FAMILY = MBConvFamily("uir", UIRSpace, (UIR, UIR_TINY))
