"""Smoke tests of the SPOS baseline and the speed benchmark (the ranking benchmark: test_ranking_bench.py)."""

from __future__ import annotations

import math

import torch

from benchmarks.spos import SPOSSupernet, rate_spos, train_spos
from dna.space.mbconv import MBConvSpace, _blocks
from tests.helpers import tiny_data

# 2 blocks (strides 1, 2), 2 cells in block 0 (widths 8 and 16: two input widths for block 1).
SMALL = MBConvSpace(name="bench-small", ops=("k3e3", "k3e6"),
                    blocks=_blocks([(1, [(1, 8), (1, 16)]), (2, [(1, 16)])]),
                    stem_channels=8, first_channels=8, head_channels=32, resolution=32, num_classes=10)


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


def test_speed_throughput_step_runs(tmp_path):
    from benchmarks.speed import block_step_throughput
    from dna.space import get_space
    from dna.train.block import build_block_teacher
    from tests.helpers import tiny_teacher

    space = get_space("mbconv-tiny")
    teacher = build_block_teacher(space, tiny_teacher(str(tmp_path)))
    assert block_step_throughput(1, teacher, space, torch.device("cpu"), steps=1, batch=8) > 0
