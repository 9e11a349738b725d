"""Core: space, teacher split, block supernets, block-wise training, rating, scores table."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from dna import storage
from dna.cli import main
from dna.costs import count_params
from dna.errors import DnaError
from dna.model.layers import build_layers
from dna.rate.block import RateConfig, rate
from dna.rate.path_costs import PathCosts
from dna.rate.rating import rate_cell, rate_cell_per_path
from dna.rate.scores import SCHEMA, read_scores
from dna.space import SPACES, BlockChoice, Op, get_space
from dna.supernet import BlockSupernet
from dna.teacher import BlockTeacher, TeacherConfig, load_teacher_model
from dna.train.block import BlockTrainConfig, build_block_teacher, train_block
from tests.helpers import tiny_data, tiny_teacher
from tests.s3fixture import s3_bucket  # noqa: F401


def test_space_counts():
    assert get_space("mbconv").count() == 195898498887057408
    assert [get_space("mbconv").block_paths(k) for k in range(6)] == [288, 1548, 1548, 2808, 16848, 6]
    assert get_space("mbconv4").count() == (4**2 + 4**3 + 4**2) * (4**2 + 4**3 + 4**4) ** 2 * (
        4**3 + 2 * 4**4) * (2 * 4**5 + 4**4) * 4
    assert get_space("mbconv").ops == ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")


def test_space_cli_json(capsys):
    assert main(["space", "mbconv", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    d = out["describe"]
    assert d["architectures"] == 195898498887057408
    assert [c["channels"] for c in d["blocks"][3]["cells"]] == [112, 112, 96]
    assert d["blocks"][1]["in_widths"] == [24, 32]
    assert get_space(out) == get_space("mbconv")


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_cli_json_reads_back_as_the_space(name, tmp_path, capsys):
    """`dna space NAME --json` is the definition `--space FILE.json` accepts ("describe" ignored)."""
    assert main(["space", name, "--json"]) == 0
    out = capsys.readouterr().out
    uri = str(tmp_path / "space.json")
    open(uri, "w").write(out)
    assert get_space(uri) == get_space(name)
    assert main(["space", uri]) == 0
    assert f"space {name} " in capsys.readouterr().out


def test_space_json_round_trip_and_user_space(tmp_path):
    space = get_space("mbconv")
    assert get_space(space.to_json()) == space
    custom = dict(space.to_json(), name="mine", ops=["k3e3", "k9e4"],
                  blocks=[{"stride": 2, "cells": [[1, 16], [2, 24]]}, {"stride": 1, "cells": [[1, 32]]}])
    storage.write_json(custom, str(tmp_path / "space.json"))
    mine = get_space(str(tmp_path / "space.json"))
    assert mine.count() == (2 + 4) * 2
    assert mine.arch_def([BlockChoice(0, 1, ("k9e4", "k3e3")), BlockChoice(1, 0, ("k3e3",))])[1] == [
        "ir_r1_k9_s2_e4_c24_se0.25", "ir_r1_k3_s1_e3_c24_se0.25"]


@pytest.mark.parametrize("bad", ["k4e3", "x3e6", "k3", "k3e0"])
def test_unknown_op_rejected(bad):
    with pytest.raises(DnaError, match=bad):
        Op.parse(bad)
    with pytest.raises(DnaError, match=bad):
        get_space("mbconv").check_choice(BlockChoice(5, 0, (bad,)))


def test_block_out_of_range():
    with pytest.raises(DnaError, match="block index 6 out of range"):
        get_space("mbconv").check_block(6)
    with pytest.raises(DnaError, match="block index 9"):
        BlockTrainConfig(block=9, out="/tmp/x").validate()


def test_teacher_split_reproduces_forward():
    model = timm.create_model("efficientnet_b0", num_classes=10).eval()
    teacher = BlockTeacher(model, 6)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(teacher(x), model(x))
    assert teacher.channels == [16, 24, 40, 80, 112, 192, 320]
    feats = teacher.features(x)
    assert torch.equal(teacher.head(feats[-1]), model(x))


def test_teacher_without_stages_rejected():
    with pytest.raises(DnaError, match="conv_stem"):
        BlockTeacher(timm.create_model("resnet18"), 6)
    tiny = timm.create_model("efficientnet_b0")
    tiny.blocks = tiny.blocks[:4]
    with pytest.raises(DnaError, match="has 4 stages; the space needs 7"):
        BlockTeacher(tiny, 6)
    with pytest.raises(DnaError, match="unknown teacher model"):
        load_teacher_model(TeacherConfig(model="not_a_model", checkpoint="/nope.pt"))


def test_cell_outputs_match_teacher_shapes():
    space = get_space("mbconv")
    teacher = BlockTeacher(timm.create_model("efficientnet_b0").eval(), 6)
    feats = teacher.features(torch.randn(1, 3, 64, 64))
    for k in range(6):
        net = BlockSupernet(space, k, teacher.in_channels(k), teacher.out_channels(k)).eval()
        for c, cell in enumerate(space.blocks[k].cells):
            out = net(feats[k], c, (space.ops[-1],) * cell.layers)
            assert out.shape == feats[k + 1].shape, (k, c)


def test_training_step_lowers_loss(tmp_path):
    space = get_space("mbconv-tiny")
    teacher = build_block_teacher(space, tiny_teacher(str(tmp_path)))
    net = BlockSupernet(space, 2, teacher.in_channels(2), teacher.out_channels(2))
    x = torch.randn(16, 3, 32, 32)
    inp, target = teacher.block_io(x, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.005)
    ops = ("k3e6", "k5e3")
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.mse_loss(net(inp, 1, ops), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_train_block_checkpoints_and_resumes(tmp_path):
    tc = tiny_teacher(str(tmp_path))
    out = str(tmp_path / "sn" / "block1")
    cfg = BlockTrainConfig(block=1, out=out, teacher=tc, data=tiny_data(), epochs=1, max_steps_per_epoch=2)
    ended: list[dict] = []

    def on_epoch_end(m: dict) -> None:              # the epoch's checkpoint is stored already
        assert storage.load_torch(m["checkpoint"])["epoch"] == m["epoch"]
        ended.append(m)

    first = train_block(cfg, on_epoch_end=on_epoch_end)
    assert first["epochs"] == 1 and storage.exists(out + "/supernet.pt")
    (m,) = ended                                     # once per epoch, with the epoch's metrics
    assert (m["epoch"], m["epochs"], m["block"], m["resumed_from"]) == (1, 1, 1, 0)
    assert m["loss"] == first["loss"] and m["checkpoint"] == out + "/supernet.pt"
    assert m["seconds"] > 0 and m["images_per_s"] > 0 and m["elapsed_s"] > 0
    ended.clear()
    cfg.epochs = 2
    second = train_block(cfg, on_epoch_end=on_epoch_end)
    assert [(m["epoch"], m["epochs"], m["resumed_from"]) for m in ended] == [(2, 2, 1)], \
        "a rerun must resume after the finished epoch"
    assert second["epochs"] == 2 and second["history"][0] == first["history"][0]
    ended.clear()
    assert train_block(cfg, on_epoch_end=on_epoch_end)["epochs"] == 2
    assert ended == [], "a finished block is not retrained"


def test_algorithm1_matches_per_path_with_fewer_evaluations():
    space = get_space("mbconv-tiny")
    torch.manual_seed(0)
    net = BlockSupernet(space, 1, 16, 24)
    # Give the BatchNorms some non-trivial running statistics, as training would.
    net.train()
    for c in range(2):
        for ops in [("k3e3", "k5e6"), ("k5e3", "k3e6")]:
            net(torch.randn(8, 16, 16, 16), c, ops[: space.blocks[1].cells[c].layers])
    net.eval()
    layers = [layer.candidates for layer in net.cells[1].layers]  # 2 layers x 4 ops
    xs = [torch.randn(4, 16, 16, 16) for _ in range(2)]
    ys = [torch.randn(4, 24, 8, 8) for _ in range(2)]
    calib = [torch.randn(4, 16, 16, 16)]
    shared = rate_cell(layers, space.ops, xs, ys, calib)
    naive = rate_cell_per_path(layers, space.ops, xs, ys, calib)
    assert shared.losses.keys() == naive.losses.keys() and len(shared.losses) == 16
    for path, loss in naive.losses.items():
        assert shared.losses[path] == pytest.approx(loss, rel=1e-6, abs=1e-7)
    assert shared.layer_evals == 4 + 16 < naive.layer_evals == 2 * 16
    # Without recalibration the scores do depend on BN state, and still match per path.
    nocal = rate_cell(layers, space.ops, xs, ys, None)
    assert nocal.losses[("k3e3", "k3e3")] == pytest.approx(
        rate_cell_per_path(layers, space.ops, xs, ys, None).losses[("k3e3", "k3e3")], rel=1e-6)


def test_path_params_equal_standalone_timm_layers():
    space = get_space("mbconv")
    costs = PathCosts(space)
    for block, cell, ops, in_chs in [(0, 1, ("k3e3", "k7e6", "k5e3"), 16), (1, 2, ("k5e6",) * 4, 32),
                                     (3, 2, ("k3e6", "k3e3", "k7e3", "k5e6"), 80), (4, 0, ("k7e6",) * 4, 96),
                                     (4, 0, ("k7e6",) * 4, 112)]:
        params = costs.path(block, cell, ops, in_chs)["params"]
        layers = build_layers(in_chs, space.cell_arch(block, cell, ops))
        assert params == count_params(layers)


def test_costs_of_efficientnet_b0_choice_match_timm():
    space = get_space("mbconv")
    costs = PathCosts(space)
    picks = [(0, 0, ("k3e6",) * 2), (1, 0, ("k5e6",) * 2), (2, 1, ("k3e6",) * 3),
             (3, 0, ("k5e6",) * 3), (4, 0, ("k5e6",) * 4), (5, 0, ("k3e6",))]
    total, prev = costs.fixed()["params"], 16
    for b, c, ops in picks:
        total += costs.path(b, c, ops, prev)["params"]
        prev = space.cell(b, c).channels
    assert total == count_params(timm.create_model("efficientnet_b0"))


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("run"))
    tc = tiny_teacher(root)
    data = tiny_data()
    teacher = build_block_teacher(get_space("mbconv-tiny"), tc)
    for k in range(6):
        train_block(BlockTrainConfig(block=k, out=f"{root}/sn/block{k}", teacher=tc, data=data, epochs=1,
                                     max_steps_per_epoch=1), teacher=teacher)
    return root, tc, data, teacher


def _check_scores(uri):
    table, meta = read_scores(uri)
    space = get_space(meta.space)
    expected = sum(space.block_paths(k) * len(space.in_widths(k)) for k in range(6))
    assert table.num_rows == expected
    assert table.schema.names[: len(SCHEMA)] == SCHEMA.names
    assert [f.type for f in table.schema][: len(SCHEMA)] == list(SCHEMA.types)
    assert meta.generation == 0 and meta.resolution == 32 and meta.fixed_params > 0
    assert meta.fixed_act_mem > 0 and min(table.column("act_mem").to_pylist()) > 0  # every counted cost
    rows = table.to_pylist()
    by_key = {(r["block"], r["cell"], r["ops"], r["in_channels"]): r for r in rows}
    r0, r1 = by_key[(1, 1, "k3e3-k5e6", 16)], by_key[(1, 1, "k3e3-k5e6", 24)]
    assert r0["loss"] == r1["loss"] and r0["params"] < r1["params"]
    assert r0["out_channels"] == 24
    return table


def test_rate_writes_scores_locally_and_to_s3(rated_run, s3_bucket):  # noqa: F811
    root, tc, data, teacher = rated_run
    local = _check_scores(rate(RateConfig(supernets=f"{root}/sn", out=f"{root}/scores", teacher=tc,
                                          data=data), teacher=teacher)["scores"])
    assert storage.exists(f"{root}/scores/block=3/part-0.parquet")
    remote = f"{s3_bucket}/run/scores"
    rate(RateConfig(supernets=f"{root}/sn", out=remote, teacher=tc, data=data), teacher=teacher)
    assert _check_scores(remote).to_pylist() == local.to_pylist()


def test_rate_and_train_cli(rated_run, tmp_path, capsys):
    root, tc, _, _ = rated_run
    common = ["--teacher", tc.model, "--teacher-checkpoint", tc.checkpoint, "--train-size", "64",
              "--rating-size", "32", "--batch-size", "32"]
    assert main(["train-block", "--block", "5", "--supernets", str(tmp_path / "sn"), "--epochs", "1",
                 "--max-steps", "1", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    assert main(["rate", "--supernets", str(tmp_path / "sn"), "--block", "5", "--out",
                 str(tmp_path / "scores"), "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 4 * 2  # 4 ops x 2 input widths
    assert main(["rate", "--supernets", str(tmp_path / "sn"), "--block", "7", "--out", "x", *common]) == 2
    assert "block index 7 out of range" in capsys.readouterr().err


def test_unreadable_uris_fail_before_work(tmp_path, capsys):
    with pytest.raises(DnaError, match="missing.pt"):
        load_teacher_model(TeacherConfig(model="efficientnet_b0", checkpoint=str(tmp_path / "missing.pt")))
    with pytest.raises(DnaError, match="no trained supernet for block 0"):
        rate(RateConfig(supernets=str(tmp_path / "none"), out=str(tmp_path / "s"), block=0,
                        teacher=tiny_teacher(str(tmp_path)), data=tiny_data()))
    with pytest.raises(DnaError, match="gs://"):
        read_scores("gs://bucket/scores")
