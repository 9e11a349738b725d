"""Small shared builders for tests: a tiny teacher with weights, tiny data."""

from __future__ import annotations

from dna import storage
from dna.data import DataConfig
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.model.efficientnet import build_model
from dna.teacher import TeacherConfig


def tiny_teacher(root: str, seed: int = 0) -> TeacherConfig:
    """A half-width, half-depth EfficientNet-B0 at 32 px with (random, seeded) weights on disk."""
    import torch

    torch.manual_seed(seed)
    arch = Architecture(EFFICIENTNET_B0, resolution=32, num_classes=10, channel_multiplier=0.5,
                        depth_multiplier=0.5)
    arch_uri = storage.join(root, "teacher", "arch.json")
    ckpt_uri = storage.join(root, "teacher", "model.pt")
    arch.save(arch_uri)
    storage.save_torch({"model": build_model(arch).state_dict()}, ckpt_uri)
    return TeacherConfig(model=arch_uri, checkpoint=ckpt_uri)


def tiny_data(**kw) -> DataConfig:
    base = dict(train_size=128, val_size=64, rating_size=32, batch_size=32)
    base.update(kw)
    return DataConfig(**base)
