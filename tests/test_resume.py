"""Exact resume: a run stopped after epoch k and rerun equals an uninterrupted one bit for bit
(weights, optimizer, schedule, random states, per-epoch losses); non-positive step and epoch
counts are refused before any work; a checkpoint written with other settings is refused."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import dna.train.block as block_mod
from dna import storage
from dna.cli import main
from dna.data import DataConfig
from dna.errors import DnaError
from dna.retrain import RetrainConfig, retrain
from dna.train.block import BlockTrainConfig, checkpoint_uri, train_block
from dna.train.state import capture_rng_state, check_resume_config, restore_rng_state
from tests.helpers import one_thread, tiny_data, tiny_teacher  # noqa: F401 (one_thread: autouse)

TIMING_KEYS = {"seconds", "images_per_s", "time_s"}




@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return tiny_teacher(str(tmp_path_factory.mktemp("teacher")))


class Killed(Exception):
    """Stands for the process dying right after an epoch's checkpoint was stored."""


def kill_after(k: int):
    def on_epoch_end(m: dict) -> None:
        if m["epoch"] == k:
            raise Killed
    return on_epoch_end


def assert_same(a, b, path: str = "") -> None:
    """Equal structures with bit-identical tensors (timings aside)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        keys = set(a) - TIMING_KEYS
        assert keys == set(b) - TIMING_KEYS, path
        for k in keys:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def losses(history: list[dict], key: str) -> list[float]:
    return [h[key] for h in history]


# ----- the shared helper -------------------------------------------------------------------------


def _draws(gen: torch.Generator) -> tuple:
    return (torch.rand(3), np.random.rand(3).tolist(), np.random.randn(), random.random(), torch.rand(3, generator=gen))


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(5)
    np.random.randn()                                   # numpy holds a cached gaussian now
    uri = str(tmp_path / "rng.pt")
    storage.save_torch(capture_rng_state({"ops": gen, "none": None}), uri)
    first = _draws(gen)
    torch.manual_seed(123), np.random.seed(123), random.seed(123), gen.manual_seed(123)
    restore_rng_state(storage.load_torch(uri), {"ops": gen})    # weights_only loading reads it
    assert_same(_draws(gen), first)
    with pytest.raises(DnaError, match=r"\['loader'\]"):
        restore_rng_state(storage.load_torch(uri), {"ops": gen, "loader": torch.Generator()})


def test_config_check_names_every_differing_key():
    stored = {"lr": 0.1, "seed": 0, "epochs": 2, "data": {"batch_size": 32, "num_workers": 0}}
    check_resume_config(stored, dict(stored, epochs=5, data={"batch_size": 32, "num_workers": 4}), "ck",
                        ignore=("epochs", "data.num_workers"))
    check_resume_config(None, stored, "ck")
    with pytest.raises(DnaError, match=r"ck .*data\.batch_size \(stored 32, now 16\), lr \(stored 0\.1, now 0\.2\)"):
        check_resume_config(stored, dict(stored, lr=0.2, data={"batch_size": 16, "num_workers": 0}), "ck")


# ----- block supernets ---------------------------------------------------------------------------


def block_cfg(out, teacher, block: int = 1, **kw) -> BlockTrainConfig:
    base = dict(epochs=3, max_steps_per_epoch=2, data=tiny_data(train_size=96))
    base.update(kw)
    return BlockTrainConfig(block=block, out=str(out), teacher=teacher, **base)


@pytest.mark.parametrize("k", [1, 2])
def test_block_resumed_equals_uninterrupted(tmp_path, teacher, k):
    straight = train_block(block_cfg(tmp_path / "straight", teacher))
    with pytest.raises(Killed):
        train_block(block_cfg(tmp_path / "resumed", teacher), on_epoch_end=kill_after(k))
    assert storage.load_torch(checkpoint_uri(str(tmp_path / "resumed")))["epoch"] == k
    resumed = train_block(block_cfg(tmp_path / "resumed", teacher))
    assert losses(resumed["history"], "loss") == losses(straight["history"], "loss")
    a = storage.load_torch(checkpoint_uri(str(tmp_path / "straight")))
    b = storage.load_torch(checkpoint_uri(str(tmp_path / "resumed")))
    for part in ("model", "optimizer", "scheduler", "generator", "rng", "epoch", "history"):
        assert_same(a[part], b[part], part)


@pytest.mark.parametrize("field,value", [("max_steps_per_epoch", -5), ("max_steps_per_epoch", 0),
                                         ("max_steps_per_epoch", 1.5), ("epochs", 0), ("epochs", -1)])
def test_block_rejects_non_positive_counts(tmp_path, teacher, field, value):
    with pytest.raises(DnaError, match=f"{field}={value!r}"):
        train_block(block_cfg(tmp_path / "b", teacher, **{field: value}))
    assert not storage.exists(checkpoint_uri(str(tmp_path / "b")))


def test_train_block_cli_max_steps_negative_exits_2_and_marks_nothing(tmp_path, teacher, capsys):
    argv = ["train-block", "--block", "1", "--supernets", str(tmp_path), "--epochs", "1", "--max-steps", "-5",
            "--teacher", teacher.model, "--teacher-checkpoint", teacher.checkpoint, "--train-size", "32"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "-5" in err and "max" in err and "steps" in err   # the command's own check or the config's
    assert not list(tmp_path.rglob("*.pt"))


def test_block_epoch_without_steps_is_not_stored(tmp_path, teacher, monkeypatch):
    monkeypatch.setattr(block_mod, "_train_loader", lambda cfg, rank, world: (DataLoader([], batch_size=1), None))
    with pytest.raises(DnaError, match="block 1 epoch 1 ran no training step"):
        train_block(block_cfg(tmp_path / "b", teacher))
    assert not storage.exists(checkpoint_uri(str(tmp_path / "b")))


@pytest.mark.parametrize("change,key", [({"seed": 1}, "seed"), ({"lr": 0.01}, "lr"),
                                        ({"max_steps_per_epoch": 1}, "max_steps_per_epoch"),
                                        ({"data": tiny_data(train_size=96, batch_size=16)}, "data.batch_size")])
def test_block_refuses_checkpoint_of_other_settings(tmp_path, teacher, change, key):
    out = tmp_path / "b"
    train_block(block_cfg(out, teacher, epochs=1))
    before = storage.read_bytes(checkpoint_uri(str(out)))
    with pytest.raises(DnaError, match=rf"other training settings: {key} \(stored"):
        train_block(block_cfg(out, teacher, **change))
    assert storage.read_bytes(checkpoint_uri(str(out))) == before   # untouched


# ----- retraining --------------------------------------------------------------------------------


def retrain_cfg(out, **kw) -> RetrainConfig:
    """A seconds-long run whose augmentation draws from python's RNG (RandAugment), with an EMA."""
    data = DataConfig(train_size=48, val_size=16, batch_size=16, auto_augment="rand-m9-mstd0.5")
    base = dict(epochs=3, ema=True, ema_decay=0.9, drop_rate=0.1, drop_path_rate=0.1)
    base.update(kw)
    return RetrainConfig.fast(out=str(out), data=data, **base)


def _tiny_arch():
    from dna.model.arch import Architecture
    from dna.space import get_space
    from dna.space.mbconv import BlockChoice

    s = get_space("mbconv-tiny")
    return Architecture.from_choices(s, [BlockChoice(k, 0, (s.ops[0],) * s.blocks[k].cells[0].layers)
                                         for k in range(len(s.blocks))])


def test_retrain_resumed_equals_uninterrupted(tmp_path):
    arch = _tiny_arch()
    straight = retrain(retrain_cfg(tmp_path / "straight"), arch)
    with pytest.raises(Killed):
        retrain(retrain_cfg(tmp_path / "resumed"), arch, on_epoch_end=kill_after(1))
    resumed = retrain(retrain_cfg(tmp_path / "resumed"), arch)
    assert resumed["resumed_from"] == 1
    for key in ("train_loss", "val_loss", "val_top1", "ema_top1"):
        assert losses(resumed["history"], key) == losses(straight["history"], key), key
    a = storage.load_torch(str(tmp_path / "straight" / "checkpoint.pt"))
    b = storage.load_torch(str(tmp_path / "resumed" / "checkpoint.pt"))
    for part in ("model", "optimizer", "scheduler", "ema", "rng", "step", "history"):
        assert_same(a[part], b[part], part)


def test_retrain_refuses_checkpoint_of_other_settings(tmp_path):
    arch = _tiny_arch()
    out = tmp_path / "r"
    retrain(retrain_cfg(out, epochs=1, ema=False, steps_per_epoch=1), arch)
    with pytest.raises(DnaError, match=r"lr \(stored 0\.02, now 0\.01\), seed \(stored 0, now 1\)"):
        retrain(retrain_cfg(out, epochs=2, ema=False, steps_per_epoch=1, lr=0.01, seed=1), arch)
    # a longer run of the same settings continues
    assert retrain(retrain_cfg(out, epochs=2, ema=False, steps_per_epoch=1), arch)["resumed_from"] == 1


# ----- ViT retraining and DNA++ supernets --------------------------------------------------------


def vit_cfg(out, **kw):
    """DeiT's recipe in seconds: Mixup/CutMix (numpy's RNG), random erasing and RandAugment
    (python's), drop-path (torch's)."""
    from dna.model.vit import vit_arch_json
    from dna.retrain_vit import RetrainViTConfig
    from dna.space.vit import VIT_TINY

    arch = vit_arch_json(VIT_TINY, ["h2-r2-d1", "h3-r2-d1", "h2-r2-d1", "h2-r2-d1"])
    data = DataConfig(train_size=32, val_size=16, rating_size=8, batch_size=16)
    base = dict(epochs=3, warmup_epochs=0, steps_per_epoch=1, auto_augment="rand-m9-mstd0.5")
    base.update(kw)
    return RetrainViTConfig(arch=arch, out=str(out), data=data, **base)


def test_retrain_vit_resumed_equals_uninterrupted(tmp_path):
    from dna.retrain_vit import retrain_vit

    straight = retrain_vit(vit_cfg(tmp_path / "straight"))
    with pytest.raises(Killed):
        retrain_vit(vit_cfg(tmp_path / "resumed"), on_epoch_end=kill_after(2))
    resumed = retrain_vit(vit_cfg(tmp_path / "resumed"))
    assert resumed["resumed_from"] == 2
    assert losses(resumed["history"], "train_loss") == losses(straight["history"], "train_loss")
    a = storage.load_torch(str(tmp_path / "straight" / "checkpoint.pt"))
    b = storage.load_torch(str(tmp_path / "resumed" / "checkpoint.pt"))
    for part in ("model", "optimizer", "scheduler", "rng", "step", "history"):
        assert_same(a[part], b[part], part)
    with pytest.raises(DnaError, match=r"other training settings: mixup \(stored 0\.8, now 0\.5\)"):
        retrain_vit(vit_cfg(tmp_path / "resumed", epochs=4, mixup=0.5))


def pp_cfg(out, **kw):
    from dna.ssl.train import PPTrainConfig

    # flip augmentation draws from torch's global RNG, which train_pp does not re-seed per epoch
    data = DataConfig(train_size=48, val_size=16, rating_size=16, batch_size=16, augment=True)
    base = dict(epochs=3, lr=0.2, proj_dim=16, proj_hidden=16, max_steps_per_epoch=2)
    base.update(kw)
    return PPTrainConfig(out=str(out), data=data, **base)


def test_train_pp_resumed_equals_uninterrupted(tmp_path):
    from dna.ssl.train import train_pp

    straight = train_pp(pp_cfg(tmp_path / "straight"))
    with pytest.raises(Killed):
        train_pp(pp_cfg(tmp_path / "resumed"), on_epoch_end=kill_after(1))
    resumed = train_pp(pp_cfg(tmp_path / "resumed"))
    assert losses(resumed["history"], "loss") == losses(straight["history"], "loss")
    a = storage.load_torch(str(tmp_path / "straight" / "checkpoint.pt"))
    b = storage.load_torch(str(tmp_path / "resumed" / "checkpoint.pt"))
    for part in ("model", "optimizer", "scheduler", "generators", "rng", "history"):
        assert_same(a[part], b[part], part)
    with pytest.raises(DnaError, match=r"other training settings: lr \(stored 0\.2, now 0\.1\)"):
        train_pp(pp_cfg(tmp_path / "resumed", epochs=4, lr=0.1))


@pytest.mark.parametrize("value", [0, -5, True])
def test_train_pp_rejects_non_positive_steps(tmp_path, value):
    from dna.ssl.train import train_pp

    with pytest.raises(DnaError, match=f"max_steps_per_epoch={value!r}"):
        train_pp(pp_cfg(tmp_path / "p", max_steps_per_epoch=value))
    assert not (tmp_path / "p").exists()


def test_fan_out_counts_only_blocks_of_the_same_settings_finished(tmp_path, teacher):
    from components.fanout.spec import FanOut, finished_blocks
    from dna.generation import RunConfig, block_config

    run = RunConfig(root=str(tmp_path), data=tiny_data(train_size=64), block_epochs=1, block_max_steps=1)
    train_block(block_config(run, 0, 1, teacher))
    assert list(finished_blocks(FanOut(task="train", run=run, generation=0, teacher=teacher, blocks=[1]))) == [1]
    other = RunConfig(root=str(tmp_path), data=tiny_data(train_size=64), block_epochs=1, block_max_steps=1, seed=3)
    with pytest.raises(DnaError, match=r"seed \(stored 0, now 3\)"):
        finished_blocks(FanOut(task="train", run=other, generation=0, teacher=teacher, blocks=[1]))


@pytest.mark.parametrize("value", [-5, 0])
def test_run_config_rejects_non_positive_block_steps(tmp_path, value):
    from dna.generation import RunConfig

    with pytest.raises(DnaError, match=f"block_max_steps={value}"):
        RunConfig(root=str(tmp_path), data=tiny_data(), block_max_steps=value).validate()
