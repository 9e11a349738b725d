"""Smoke tests of the ranking benchmark's code path and of the SPOS baseline (no figures asserted)."""

from __future__ import annotations

import json
import math

import torch

from benchmarks.ranking import correlations, load_space, main, sample_archs, teacher_arch_def
from benchmarks.spos import SPOSSupernet, rate_spos, train_spos
from dna.space.mbconv import OPS4, MBConvSpace, _blocks
from tests.helpers import tiny_data

# 2 blocks (strides 1, 2), 2 cells in block 0 (widths 8 and 16: two input widths for block 1).
SMALL = MBConvSpace(name="bench-small", ops=("k3e3", "k3e6"),
                    blocks=_blocks([(1, [(1, 8), (1, 16)]), (2, [(1, 16)])]),
                    stem_channels=8, first_channels=8, head_channels=32, resolution=32, num_classes=10)


def test_sample_archs_distinct_and_seeded():
    space = load_space("rank-bench")
    a, b = sample_archs(space, 20, seed=3), sample_archs(space, 20, seed=3)
    assert a == b
    assert len({json.dumps([c.to_json() for c in x]) for x in a}) == 20
    for arch in a:
        space.arch_def(arch)                # valid choices
    assert len(teacher_arch_def(space)) == len(space.blocks) + 1


def test_correlations_negate_losses():
    top1 = [10.0, 20.0, 30.0, 40.0]
    assert correlations([4.0, 3.0, 2.0, 1.0], top1)["tau"] == 1.0     # lower loss, higher accuracy
    assert correlations([1.0, 2.0, 3.0, 4.0], top1)["rho"] == -1.0


def test_spos_trains_and_rates_paths():
    data = tiny_data(train_size=32, rating_size=32, batch_size=16)
    net, info = train_spos(SMALL, data, epochs=1, seed=0, max_steps_per_epoch=2)
    assert len(info["history"]) == 1 and math.isfinite(info["history"][0]["loss"])
    gen = torch.Generator().manual_seed(0)
    archs = [net.sample(gen) for _ in range(3)]
    losses = rate_spos(net, archs, data, calib_batches=1)
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    # the supernet holds one first-layer candidate set per input width of block 1
    assert set(net.cells[1][0].first) == {"8", "16"}
    assert isinstance(SPOSSupernet(SMALL), torch.nn.Module)


def test_ranking_smoke(tmp_path):
    space = json.dumps(MBConvSpace(name="bench-small2", ops=OPS4[:2],
                                   blocks=_blocks([(1, [(1, 8)]), (2, [(1, 16)])]), stem_channels=8,
                                   first_channels=8, head_channels=32, resolution=32, num_classes=10).to_json())
    args = ["--space", space, "--archs", "3", "--seeds", "0", "--epochs", "1", "--train-size", "32",
            "--val-size", "16", "--rating-size", "16", "--batch-size", "16", "--max-steps", "1", "--jobs", "0", "--gt-repeats", "3",
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-plot", "--no-record"]
    r = main(args)
    assert set(r["correlations"]) == {"DNA", "SPOS", "random"}
    assert len(r["top1"]) == 3
    assert len(list((tmp_path / "cache").glob("ground_truth-*.parquet"))) == 2     # + the seed-1 repeat
    assert r["ground_truth_noise"]["n"] == 3
    r2 = main(args)                         # ground truth and predictions come from the caches
    assert r2["ground_truth_cached"] == 3
    assert r2["top1"] == r["top1"]
    assert r2["predictions"] == r["predictions"]


def test_speed_throughput_step_runs(tmp_path):
    from benchmarks.speed import block_step_throughput
    from dna.space import get_space
    from dna.train.block import build_block_teacher
    from tests.helpers import tiny_teacher

    space = get_space("mbconv-tiny")
    teacher = build_block_teacher(space, tiny_teacher(str(tmp_path)))
    assert block_step_throughput(1, teacher, space, torch.device("cpu"), steps=1, batch=8) > 0
