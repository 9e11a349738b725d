"""Small shared builders for tests: a tiny teacher with weights, tiny data, one torch thread."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest on one thread (and far faster when the CPU is shared);
    a module that imports this fixture gets it for each of its tests."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class FakeArtifact:
    """What KFP hands a component: a local path and a metadata dict (plus log_metric)."""

    def __init__(self, path: str):
        self.path = path
        self.uri = path
        self.metadata: dict = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value
