"""DNA+ generations end to end on the embedded default (tiny settings), in-process."""

from __future__ import annotations

import pytest

from dna import storage
from dna.data import DataConfig
from dna.errors import DnaError
from dna.generation import RetrainSettings, RunConfig, run, transfer_configs
from dna.layout import generation
from dna.model.arch import Architecture
from dna.rate.scores import read_scores
from dna.run_summary import run_summary
from dna.teacher import TeacherConfig
from tests.helpers import tiny_data

FAST = RetrainSettings(epochs=1, opt="adamw", lr=3e-3, sched="cosine", steps_per_epoch=2, drop_rate=0.0,
                       drop_path_rate=0.0, label_smoothing=0.0)


def test_two_generations_end_to_end(tmp_path):
    root = str(tmp_path / "run")
    cfg = RunConfig(root=root, generations=2, data=tiny_data(), teacher=TeacherConfig(model="tiny"),
                    block_epochs=1, block_max_steps=1, rate_max_batches=1,
        teacher_train=FAST, retrain=FAST, transfer=[])
    summary = run(cfg, log=lambda _m: None)
    assert [g["generation"] for g in summary["generations"]] == [0, 1]
    g0, g1 = generation(root, 0), generation(root, 1)
    # Generation 0 trained its own teacher; generation 1 learns from gen 0's scaled, retrained net.
    assert storage.exists(storage.join(g0.teacher, "model.pt"))
    assert summary["generations"][1]["teacher"]["model"] == storage.join(g0.scaled, "arch.json")
    scaled = Architecture.load(storage.join(g0.scaled, "arch.json"))
    assert scaled.extra["scale"]["to"] == "b1"
    for g in (g0, g1):
        table, meta = read_scores(g.scores)
        assert sorted(set(table.column("block").to_pylist())) == list(range(6))
    assert meta.generation == 1
    searched = Architecture.load(storage.join(g1.search, "arch.json"))
    assert searched.choices is not None and len(searched.choices) == 6
    assert storage.exists(storage.join(g1.retrain, "model.pt"))
    assert not storage.exists(g1.scaled), "the last generation is retrained without scaling"
    # A rerun resumes from what is stored and does no work.
    again = run(cfg, log=lambda _m: None)
    assert again["generations"][1]["search"] == summary["generations"][1]["search"]
    # One summary shape: what run returns is what summary.json holds (and what the pipelines write).
    stored = storage.read_json(storage.join(root, "summary.json"))
    assert stored == {k: v for k, v in again.items() if k != "seconds"} == run_summary(cfg)
    assert set(stored) == {"root", "generations", "final", "limits", "artifacts", "comparison", "trend"}
    assert stored["final"]["retrain"]["top1"] >= 0 and "scaled" in stored["generations"][0]
    # Each generation's random baseline: scaled like the next teacher in gen 0, like the final net in gen 1.
    assert storage.exists(g0.random_scaled_arch) and not storage.exists(g1.random_scaled_arch)
    assert [g["random"]["scaled"] for g in stored["generations"]] == [True, False]
    rows = stored["comparison"]
    assert [r["searched_as"] for r in rows] == ["scaled", "retrained"]
    assert rows[1]["random_top1"] == stored["generations"][1]["random"]["metrics"]["top1"]
    assert abs(rows[1]["random_params"] - rows[1]["searched_params"]) <= 0.1 * rows[1]["searched_params"]
    assert isinstance(stored["trend"], list)


def test_in_process_run_rejects_bad_settings_before_any_work(tmp_path):
    root = tmp_path / "run"
    for kw, message in [
        ({"retrain": RetrainSettings(opt="nope")}, "retrain: opt 'nope'"),
        ({"teacher_train": RetrainSettings(epochs=0)}, "teacher_train: "),
        ({"teacher_train": RetrainSettings(train_size=0)}, "teacher_train: train_size 0"),
        ({"transfer_epochs": 0}, "transfer_epochs=0"),
        ({"teacher": TeacherConfig(model="no_such_net")}, "teacher 'no_such_net'"),
        ({"teacher": TeacherConfig(model="tiny", checkpoint="/w.pt")}, "need --teacher"),
        ({"data": DataConfig(uri=str(tmp_path / "no-data"))}, "no-data"),
        ({"max_params": -1}, "max_params=-1"),
    ]:
        with pytest.raises(DnaError, match=message):
            run(RunConfig(root=str(root), **kw), log=lambda _m: None)
        assert not root.exists(), kw


def test_a_training_may_see_more_images_than_the_search():
    """``RetrainSettings.train_size`` sets that training's train split (a teacher trained on more
    images than the supernets see); None keeps the run's data."""
    from dna.generation import _retrain_config

    data = DataConfig(train_size=64, val_size=32)
    more = _retrain_config(RetrainSettings(train_size=512), "m.json", "out", data, 0, "cpu")
    same = _retrain_config(RetrainSettings(), "m.json", "out", data, 0, "cpu")
    assert (more.data.train_size, more.data.val_size, same.data.train_size) == (512, 32, 64)
    assert not same.zero_head and _retrain_config(RetrainSettings(zero_head=True), "m.json", "out", data, 0,
                                                  "cpu").zero_head


def test_a_run_sets_its_trainings_warm_up_and_weight_decay():
    """``warmup_epochs`` and ``weight_decay`` reach the RetrainConfig (a run's trainings could not
    set them before); the defaults are RetrainConfig's own."""
    from dna.generation import _retrain_config
    from dna.retrain_config import RetrainConfig

    data = DataConfig(train_size=64, val_size=32)
    same = _retrain_config(RetrainSettings(), "m.json", "out", data, 0, "cpu")
    assert (same.warmup_epochs, same.weight_decay) == (RetrainConfig.warmup_epochs, RetrainConfig.weight_decay)
    warm = _retrain_config(RetrainSettings(warmup_epochs=0.5, weight_decay=0.01), "m.json", "out", data, 0, "cpu")
    assert (warm.warmup_epochs, warm.weight_decay) == (0.5, 0.01)
    cfg = RunConfig(root="r", teacher_train=RetrainSettings(warmup_epochs=-1.0))
    with pytest.raises(DnaError, match="warmup_epochs -1.0"):
        cfg.validate()


def test_validate_remote_opens_no_uri_and_knows_the_dnapp_defaults(tmp_path):
    given = RunConfig(root=str(tmp_path), teacher=TeacherConfig(model=str(tmp_path / "t.json"),
                                                                 checkpoint=str(tmp_path / "t.pt")),
                      data=DataConfig(uri="s3://bucket/data"))
    given.validate(remote=True)                          # the cluster opens them
    with pytest.raises(DnaError, match="cannot read"):
        given.validate()
    RunConfig(root=str(tmp_path), space="vit-tiny", teacher=TeacherConfig(model="default")).validate()
    with pytest.raises(DnaError, match="teacher 'default'"):
        RunConfig(root=str(tmp_path), teacher=TeacherConfig(model="default")).validate()


def test_bad_run_config_fails_before_work(tmp_path):
    with pytest.raises(DnaError, match="generations=0"):
        RunConfig(root=str(tmp_path), generations=0).validate()
    with pytest.raises(DnaError, match="scale"):
        RunConfig(root=str(tmp_path), generations=2, scale_to="b99").validate()
    with pytest.raises(DnaError, match="transfer tasks"):
        RunConfig(root=str(tmp_path), transfer=["pose"]).validate()
    with pytest.raises(DnaError, match=r"transfer_options\['det'\] keys \['rois'\]"):
        RunConfig(root=str(tmp_path), transfer_options={"det": {"rois": 3}}).validate()
    with pytest.raises(DnaError, match=r"transfer_options\['cls'\] keys \['lrr'\]"):   # also a task not run
        RunConfig(root=str(tmp_path), transfer=["seg"], transfer_options={"cls": {"lrr": 0.1}}).validate()
    with pytest.raises(DnaError, match="transfer_options tasks"):
        RunConfig(root=str(tmp_path), transfer_options={"pose": {}}).validate()
    with pytest.raises(DnaError, match="roi_size 0"):
        RunConfig(root=str(tmp_path), transfer_options={"det": {"roi_size": 0}}).validate()
    with pytest.raises(DnaError, match="'checkpoint'"):       # the run decides the backbone
        RunConfig(root=str(tmp_path), transfer_options={"seg": {"checkpoint": "x.pt"}}).validate()
    assert not any(tmp_path.iterdir())


def test_transfer_options_reach_each_task(tmp_path):
    cfg = RunConfig(root=str(tmp_path / "r"), transfer=["seg", "det"], transfer_epochs=3,
                    transfer_options={"det": {"epochs": 5, "rois_per_image": 32, "fpn": True}, "cls": {"lr": 0.1}})
    tcs = transfer_configs(cfg.validate(), 1)
    assert sorted(tcs) == ["det", "seg"]
    det, seg = tcs["det"], tcs["seg"]
    assert (det.epochs, det.rois_per_image, det.fpn, seg.epochs) == (5, 32, True, 3)
    assert det.checkpoint == storage.join(generation(cfg.root, 1).retrain, "model.pt")
    assert seg.out == storage.join(generation(cfg.root, 1).transfer, "seg")
