"""The teacher: a timm CNN split into the space's blocks at its stage boundaries (SPEC section 2).

The teacher's feature map entering block k is the student's input, the one leaving it is the
target. Any timm model built like EfficientNet (``conv_stem``, ``bn1``, ``blocks`` of stages,
``conv_head``) works: EfficientNet-B0..B7, ``tf_efficientnet_*``, MixNet, MNASNet, and every
architecture built by ``dna build`` (so a searched, scaled and retrained net is the next
generation's teacher in DNA+). The teacher's last ``len(space.blocks)`` stages map to the blocks;
the stages before them belong to the fixed prefix (the stem and first layer).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from dna.errors import DnaError
from dna.teacher_config import TeacherConfig  # noqa: F401 (its home; re-exported here)


def _is_arch_uri(spec: str) -> bool:
    return spec.endswith(".json")


def create_model(spec: str, num_classes: int | None = None, pretrained: bool = False, **kwargs) -> nn.Module:
    """A network from a timm model name or an architecture JSON URI (no weights loaded)."""
    if _is_arch_uri(spec):
        from dna import storage
        from dna.space import family_of_arch

        d = storage.read_json(spec)
        return family_of_arch(d).build(d, num_classes=num_classes, **kwargs)
    import timm

    if not timm.is_model(spec):
        raise DnaError(f"unknown teacher model {spec!r}: expected a timm model name or an architecture .json URI")
    kw = dict(kwargs)
    if num_classes is not None:
        kw["num_classes"] = num_classes
    return timm.create_model(spec, pretrained=pretrained, **kw)


def load_state(model: nn.Module, checkpoint: str) -> None:
    """Load weights from a raw state dict or a ``dna retrain`` checkpoint (key ``model``)."""
    from dna import storage

    obj = storage.load_torch(checkpoint)
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise DnaError(f"checkpoint {checkpoint} holds no state dict")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DnaError(
            f"checkpoint {checkpoint} does not fit the teacher: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def load_teacher_model(cfg: TeacherConfig) -> nn.Module:
    if cfg.checkpoint is None and not cfg.pretrained:
        raise DnaError(
            f"teacher {cfg.model!r} has no weights: give a checkpoint URI, pretrained=True (needs the "
            "model hub), or let the pipeline train the teacher first"
        )
    model = create_model(cfg.model, num_classes=cfg.num_classes, pretrained=cfg.pretrained)
    if cfg.checkpoint:
        load_state(model, cfg.checkpoint)
    return model


class BlockTeacher(nn.Module):
    """A frozen teacher split into ``prefix``, one stage per block, and ``head``."""

    def __init__(self, model: nn.Module, num_blocks: int, name: str = "teacher"):
        super().__init__()
        for attr in ("conv_stem", "bn1", "blocks"):
            if not hasattr(model, attr):
                raise DnaError(
                    f"teacher {name!r} ({type(model).__name__}) has no '{attr}': expected an "
                    "EfficientNet-style timm CNN with stages (conv_stem, bn1, blocks)"
                )
        stages = list(model.blocks)
        if len(stages) < num_blocks + 1:
            raise DnaError(
                f"teacher {name!r} has {len(stages)} stages; the space needs {num_blocks + 1} "
                f"(a fixed first stage plus one per block)"
            )
        first = len(stages) - num_blocks
        self.name = name
        self.model = model
        self.prefix = nn.Sequential(model.conv_stem, model.bn1, *stages[:first])
        self.stages = nn.ModuleList(stages[first:])
        self.channels = [self._out_channels(s) for s in stages[first - 1:]]
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _out_channels(stage: nn.Module) -> int:
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def train(self, mode: bool = True) -> BlockTeacher:
        # Frozen: BatchNorm statistics never move while students learn from it.
        return super().train(False)

    @property
    def num_blocks(self) -> int:
        return len(self.stages)

    def in_channels(self, block: int) -> int:
        return self.channels[block]

    def out_channels(self, block: int) -> int:
        return self.channels[block + 1]

    @torch.no_grad()
    def features(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Feature maps at the boundaries: ``[Y_0 (into block 0), Y_1, ..., Y_upto]``."""
        upto = self.num_blocks if upto is None else upto
        feats = [self.prefix(x)]
        for stage in self.stages[:upto]:
            feats.append(stage(feats[-1]))
        return feats

    @torch.no_grad()
    def block_io(self, x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) of one block: the teacher's maps before and after it."""
        if not 0 <= block < self.num_blocks:
            raise DnaError(f"block index {block} out of range: teacher has blocks 0..{self.num_blocks - 1}")
        feats = self.features(x, upto=block + 1)
        return feats[block], feats[block + 1]

    @torch.no_grad()
    def head(self, y: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.forward_head(m.bn2(m.conv_head(y)))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])
