"""The architecture JSON: what search writes and build, retrain, scale and transfer read.

It holds timm's EfficientNet ``arch_def`` (the exchange format users know; the fixed first stage
``ds_r1_k3_s1_c16_se0.25`` included) plus what is needed to rebuild the exact network: input
resolution, classes, stem and head widths, compound-scaling multipliers, and, when it came from a
search, the space and the per-block choice. A file holding only an ``arch_def`` list is accepted
with EfficientNet's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dna.errors import DnaError
from dna.space.mbconv import BlockChoice, MBConvSpace

FORMAT = "dna.architecture/v1"


@dataclass
class Architecture:
    arch_def: list[list[str]]
    resolution: int = 224
    num_classes: int = 1000
    stem_channels: int = 32
    head_channels: int = 1280
    channel_multiplier: float = 1.0
    depth_multiplier: float = 1.0
    space: dict | None = None
    choices: list[BlockChoice] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.arch_def, list)
            or not self.arch_def
            or not all(isinstance(s, list) and s and all(isinstance(b, str) for b in s) for s in self.arch_def)
        ):
            raise DnaError(
                f"arch_def must be a non-empty list of non-empty lists of block strings, got {self.arch_def!r:.200}"
            )
        for name in ("resolution", "num_classes", "stem_channels", "head_channels"):
            if int(getattr(self, name)) < 1:
                raise DnaError(f"architecture {name}={getattr(self, name)!r} must be a positive integer")
        if self.channel_multiplier <= 0 or self.depth_multiplier <= 0:
            raise DnaError("channel_multiplier and depth_multiplier must be positive")

    @classmethod
    def from_choices(cls, space: MBConvSpace, choices: list[BlockChoice], **extra) -> Architecture:
        return cls(
            arch_def=space.arch_def(choices),
            resolution=space.resolution,
            num_classes=space.num_classes,
            stem_channels=space.stem_channels,
            head_channels=space.head_channels,
            space=space.to_json(),
            choices=list(choices),
            extra=dict(extra),
        )

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "format": FORMAT,
            "arch_def": self.arch_def,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "stem_channels": self.stem_channels,
            "head_channels": self.head_channels,
            "channel_multiplier": self.channel_multiplier,
            "depth_multiplier": self.depth_multiplier,
        }
        if self.space is not None:
            d["space"] = self.space
        if self.choices is not None:
            d["blocks"] = [c.to_json() for c in self.choices]
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: Any) -> Architecture:
        if isinstance(d, list):
            return cls(arch_def=d)
        if not isinstance(d, dict) or "arch_def" not in d:
            raise DnaError("architecture JSON must be an arch_def list or an object with an 'arch_def' key")
        if d.get("format", FORMAT) != FORMAT:
            raise DnaError(f"architecture JSON of format {d['format']!r} is not a timm arch_def architecture "
                           f"(format {FORMAT!r}); build it with its own family (dna.space.family_of_arch)")
        known = {"format", "arch_def", "resolution", "num_classes", "stem_channels", "head_channels",
                 "channel_multiplier", "depth_multiplier", "space", "blocks"}
        try:
            return cls(
                arch_def=d["arch_def"],
                resolution=int(d.get("resolution", 224)),
                num_classes=int(d.get("num_classes", 1000)),
                stem_channels=int(d.get("stem_channels", 32)),
                head_channels=int(d.get("head_channels", 1280)),
                channel_multiplier=float(d.get("channel_multiplier", 1.0)),
                depth_multiplier=float(d.get("depth_multiplier", 1.0)),
                space=d.get("space"),
                choices=[BlockChoice.from_json(b) for b in d["blocks"]] if d.get("blocks") else None,
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise DnaError(f"malformed architecture JSON: {exc}") from exc

    def save(self, uri: str) -> str:
        from dna import storage

        storage.write_json(self.to_json(), uri)
        return uri

    @classmethod
    def load(cls, uri: str) -> Architecture:
        from dna import storage

        return cls.from_json(storage.read_json(uri))


# EfficientNet-B0's own arch_def (timm), handy as a default teacher/reference.
EFFICIENTNET_B0 = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
