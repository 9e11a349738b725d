"""Stand-alone retraining: learning, resuming, KD, EMA, outputs and input errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import dna.retrain as rt
from dna import storage
from dna.cli import main
from dna.data import DataConfig, make_loader
from dna.errors import DnaError
from dna.model.arch import Architecture
from dna.model.summary import build
from dna.retrain import RetrainConfig, evaluate, kd_loss, retrain
from dna.space import get_space
from dna.space.mbconv import BlockChoice
from dna.teacher import TeacherConfig, load_state
from tests.helpers import one_thread  # noqa: F401 (autouse: one torch thread per test)

# A small MBConv net that learns the built-in shapes at 32 px in a few epochs. (The nets of the
# mbconv-tiny space, 8-16 channels and stride 32, need many more epochs on this data.)
LEARNER = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r1_k3_s2_e3_c32_se0.25"],
    ["ir_r1_k3_s1_e3_c32_se0.25"],
    ["ir_r1_k3_s2_e3_c64_se0.25"],
    ["ir_r1_k3_s1_e3_c64_se0.25"],
    ["ir_r1_k3_s2_e3_c96_se0.25"],
    ["ir_r1_k3_s1_e3_c128_se0.25"],
]




def tiny_arch() -> Architecture:
    s = get_space("mbconv-tiny")
    return Architecture.from_choices(
        s, [BlockChoice(k, 0, (s.ops[0],) * s.blocks[k].cells[0].layers) for k in range(6)])


def small(out, **kw) -> RetrainConfig:
    """A seconds-long run of the tiny net on a handful of samples."""
    data = DataConfig(train_size=64, val_size=32, batch_size=32)
    return RetrainConfig.fast(out=str(out), data=data, epochs=kw.pop("epochs", 1), **kw)


def test_learns_well_above_chance(tmp_path):
    arch = Architecture(arch_def=LEARNER, resolution=32, num_classes=10, stem_channels=16, head_channels=320)
    uri = str(tmp_path / "arch.json")
    arch.save(uri)
    cfg = RetrainConfig.fast(model=uri, out=str(tmp_path / "run"), epochs=4,
                             data=DataConfig(train_size=3000, val_size=300, batch_size=32))
    m = retrain(cfg)
    assert m["status"] == "trained" and m["epochs"] == 4 and len(m["history"]) == 4
    assert m["top1"] >= 40.0, m["history"]  # chance is 10 %
    assert m["best_top1"] >= m["top1"] and m["top5"] >= m["top1"]
    assert m["params"] == sum(p.numel() for p in build(arch).parameters())
    assert m["flops"] > 0 and m["resolution"] == 32

    out = cfg.out
    for name in ("checkpoint.pt", "model.pt", "metrics.json", "curve.csv", "curve.png"):
        assert storage.exists(storage.join(out, name)), name
    assert storage.read_bytes(storage.join(out, "curve.png"))[:4] == b"\x89PNG"
    rows = list(csv.DictReader(storage.read_text(storage.join(out, "curve.csv")).splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["val_top1"]) == pytest.approx(m["top1"], abs=1e-3)
    assert storage.read_json(storage.join(out, "metrics.json"))["top1"] == m["top1"]

    # model.pt is a teacher checkpoint: it loads into the architecture and reproduces top-1.
    model = build(arch)
    load_state(model, storage.join(out, "model.pt"))
    top1, _, _ = evaluate(model, make_loader(cfg.data_config(), "val", shuffle=False))
    assert top1 == pytest.approx(m["top1"])


def test_zero_head_starts_the_classifier_at_chance(tmp_path, monkeypatch):
    """``zero_head``: the first loss is ln(num_classes); timm's TF init of a 10-class classifier
    (the default, kept) starts far from it. The rest of the net keeps its init."""
    from dna.model.efficientnet import zero_classifier

    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    timm_init = build(tiny_arch()).eval()
    torch.manual_seed(0)
    zero = zero_classifier(build(tiny_arch())).eval()
    assert torch.count_nonzero(timm_init.classifier.weight) > 0
    assert torch.count_nonzero(zero.classifier.weight) == 0 and torch.count_nonzero(zero.classifier.bias) == 0
    assert torch.equal(zero.conv_head.weight, timm_init.conv_head.weight)
    loss = torch.nn.functional.cross_entropy(zero(x), y)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(10.0)).item(), abs=1e-5)

    import dna.model.efficientnet as eff

    zeroed = []
    monkeypatch.setattr(eff, "zero_classifier", lambda net: zeroed.append(type(net).__name__) or net)
    retrain(small(tmp_path / "timm", steps_per_epoch=1), tiny_arch())
    retrain(small(tmp_path / "z", steps_per_epoch=1, zero_head=True), tiny_arch())
    assert zeroed == ["EfficientNet"]                      # only the zero_head run
    with pytest.raises(DnaError, match="zero_head"):
        retrain(small(tmp_path / "bad", zero_head="yes"), tiny_arch())


def test_eval_epochs_evaluates_only_the_last(tmp_path):
    """``eval_epochs=2`` of 3: epoch 1 has no val figures (blank in curve.csv), epochs 2-3 do, and
    the metrics come from the evaluated epochs; the same training as evaluating every epoch."""
    every = retrain(small(tmp_path / "every", epochs=3, steps_per_epoch=2), tiny_arch())
    last = retrain(small(tmp_path / "last", epochs=3, steps_per_epoch=2, eval_epochs=2), tiny_arch())
    h = last["history"]
    assert [r["val_top1"] is None for r in h] == [True, False, False]
    assert h[0]["val_loss"] is None and h[0]["train_loss"] == pytest.approx(every["history"][0]["train_loss"])
    assert [r["val_top1"] for r in h[1:]] == pytest.approx([r["val_top1"] for r in every["history"][1:]])
    assert last["top1"] == pytest.approx(every["top1"])
    assert last["best_top1"] == max(r["val_top1"] for r in h[1:])
    rows = list(csv.DictReader(storage.read_text(storage.join(last["out"], "curve.csv")).splitlines()))
    assert [r["val_top1"] == "" for r in rows] == [True, False, False]
    with pytest.raises(DnaError, match="eval_epochs"):
        retrain(small(tmp_path / "bad", eval_epochs=0), tiny_arch())


def test_resume_and_cached(tmp_path, monkeypatch):
    arch = tiny_arch()
    out = tmp_path / "run"
    ended: list[dict] = []

    def on_epoch_end(m: dict) -> None:              # the epoch's checkpoint is stored already
        assert storage.load_torch(m["checkpoint"])["epoch"] == m["epoch"]
        ended.append(m)

    first = retrain(small(out, epochs=1), arch, on_epoch_end=on_epoch_end)
    assert first["resumed_from"] == 0 and len(first["history"]) == 1
    (m,) = ended                                     # once per epoch, with the epoch's metrics
    assert (m["epoch"], m["epochs"], m["resumed_from"]) == (1, 1, 0)
    assert m["checkpoint"] == storage.join(str(out), "checkpoint.pt")
    assert m["loss"] == m["train_loss"] == first["history"][0]["train_loss"]
    assert m["val_top1"] == first["top1"] and m["seconds"] == first["history"][0]["time_s"]
    assert m["images_per_s"] > 0 and m["elapsed_s"] > 0

    ended.clear()
    second = retrain(small(out, epochs=3), arch, on_epoch_end=on_epoch_end)
    assert second["status"] == "trained" and second["resumed_from"] == 1
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert second["history"][0] == first["history"][0]
    assert [(m["epoch"], m["epochs"], m["resumed_from"]) for m in ended] == [(2, 3, 1), (3, 3, 1)]

    # A finished run is not retrained: no training step runs, the stored metrics come back.
    monkeypatch.setattr(rt, "evaluate", lambda *a, **k: pytest.fail("retrained a finished run"))
    ended.clear()
    third = retrain(small(out, epochs=3), arch, on_epoch_end=on_epoch_end)
    assert ended == []
    assert third["status"] == "cached" and third["history"] == second["history"]
    assert retrain(small(out, epochs=1), arch)["status"] == "cached"


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    arch = tiny_arch()
    out = tmp_path / "run"
    calls = {"n": 0}
    real = rt.evaluate

    def dies_in_epoch_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rt, "evaluate", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        retrain(small(out, epochs=3), arch)
    assert storage.exists(str(out / "checkpoint.pt")) and not storage.exists(str(out / "metrics.json"))
    monkeypatch.setattr(rt, "evaluate", real)
    m = retrain(small(out, epochs=3), arch)
    assert m["resumed_from"] == 1 and [h["epoch"] for h in m["history"]] == [1, 2, 3]


def test_same_seed_same_run(tmp_path):
    a = retrain(small(tmp_path / "a", steps_per_epoch=1), tiny_arch())
    b = retrain(small(tmp_path / "b", steps_per_epoch=1), tiny_arch())
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]


def test_kd_and_ema(tmp_path):
    arch = tiny_arch()
    teacher_arch = str(tmp_path / "teacher.json")
    arch.save(teacher_arch)
    teacher_ckpt = str(tmp_path / "teacher.pt")
    storage.save_torch({"model": build(arch).state_dict(), "num_classes": 10}, teacher_ckpt)
    cfg = small(tmp_path / "kd", steps_per_epoch=1, ema=True, kd_alpha=0.7, kd_temperature=2.0,
                teacher=TeacherConfig(model=teacher_arch, checkpoint=teacher_ckpt))
    m = retrain(cfg, arch)
    assert m["kd"] and m["ema"] and "ema_top1" in m["history"][0]
    assert m["top1"] == m["history"][0]["ema_top1"]
    ck = storage.load_torch(str(tmp_path / "kd" / "model.pt"))
    assert ck["ema"] is True and ck["num_classes"] == 10


def test_kd_loss():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    assert kd_loss(s, s, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    p, q = t.softmax(1), s.log_softmax(1)
    want = (p * (p.log() - q)).sum(1).mean()
    assert kd_loss(s, t, 1.0).item() == pytest.approx(want.item(), rel=1e-5)
    assert kd_loss(s, t, 2.0).item() > 0


def test_paper_recipe_defaults():
    cfg = RetrainConfig(out="x", batch_size=4096)
    assert cfg.opt == "rmsproptf" and cfg.effective_lr() == pytest.approx(0.256)
    assert (cfg.sched, cfg.decay_epochs, cfg.decay_rate) == ("step", 2.4, 0.97)
    assert cfg.label_smoothing == 0.1 and cfg.weight_decay == 1e-5
    assert RetrainConfig(out="x", data=DataConfig(batch_size=64)).effective_lr() == pytest.approx(0.004)


def test_paper_recipe_steps_lr_every_2_4_epochs(tmp_path):
    # 4 updates per epoch, so the first x0.97 falls after update ceil(2.4 * 4) = 10.
    data = DataConfig(train_size=128, val_size=16, batch_size=32)
    m = retrain(RetrainConfig(out=str(tmp_path / "p"), data=data, epochs=3), tiny_arch())
    lrs = [h["lr"] for h in m["history"]]
    base = 0.256 * 32 / 4096
    assert lrs[0] == pytest.approx(base) and lrs[1] == pytest.approx(base)
    assert lrs[2] == pytest.approx(base * 0.97)


def test_bad_inputs(tmp_path):
    with pytest.raises(DnaError, match="epochs"):
        retrain(small(tmp_path / "x", epochs=0), tiny_arch())
    with pytest.raises(DnaError, match="not_a_model"):
        retrain(RetrainConfig.fast(model="not_a_model", out=str(tmp_path / "x")))
    with pytest.raises(DnaError, match="missing.json"):
        retrain(RetrainConfig.fast(model=str(tmp_path / "missing.json"), out=str(tmp_path / "x")))
    with pytest.raises(DnaError, match="no_such_data"):
        retrain(RetrainConfig.fast(out=str(tmp_path / "x"),
                                   data=DataConfig(uri=str(tmp_path / "no_such_data"))), tiny_arch())
    with pytest.raises(DnaError, match="opt"):
        retrain(small(tmp_path / "x", opt="sgdd"), tiny_arch())
    with pytest.raises(DnaError, match="kd_alpha"):
        retrain(small(tmp_path / "x", kd_alpha=1.5), tiny_arch())
    with pytest.raises(DnaError, match="no weights"):
        retrain(small(tmp_path / "x", teacher=TeacherConfig(model="efficientnet_b0")), tiny_arch())
    with pytest.raises(DnaError, match="out"):
        retrain(RetrainConfig.fast(out=""), tiny_arch())
    assert not storage.exists(str(tmp_path / "x"))  # nothing started

    # A folder holding another model's run is not silently mixed with this one.
    retrain(small(tmp_path / "y", steps_per_epoch=1), tiny_arch())
    other = Architecture(arch_def=LEARNER, resolution=32, num_classes=10, stem_channels=16, head_channels=320)
    with pytest.raises(DnaError, match="another model"):
        retrain(small(tmp_path / "y", steps_per_epoch=1, epochs=2), other)


def test_retrain_cli(tmp_path, capsys):
    uri = str(tmp_path / "arch.json")
    tiny_arch().save(uri)
    out = str(tmp_path / "cli")
    argv = ["retrain", uri, "--out", out, "--epochs", "1", "--train-size", "32", "--val-size", "16",
            "--batch-size", "16", "--recipe", "fast", "--lr", "0.01", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "trained" and r["epochs"] == 1 and r["resolution"] == 32 and r["lr"] == 0.01
    assert main(argv[:-1]) == 0  # text output of the cached run
    assert "cached" in capsys.readouterr().out
    assert main(["retrain", uri, "--out", out, "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["retrain", "no_such_net", "--out", out]) == 2
    assert "no_such_net" in capsys.readouterr().err
