"""The MobileNetV4-style UIR family: ops, layers, and a whole DNA generation on the embedded default."""

from __future__ import annotations

import pytest

from dna import storage
from dna.errors import DnaError
from dna.generation import RetrainSettings, RunConfig, run
from dna.layout import generation
from dna.model.arch import Architecture
from dna.model.layers import build_layer
from dna.model.summary import arch_layers, summarize
from dna.rate.scores import read_scores
from dna.space import family_of_arch, get_family, get_space
from dna.space.mbconv import MBCONV_TINY
from dna.space.uir import UIR, UIR_TINY, UIROp, UIRSpace
from dna.teacher import TeacherConfig
from tests.helpers import tiny_data


def test_ops_are_timm_uir_blocks():
    assert UIROp.parse("xd_k5e4").block_str(2, 40, 0.0) == "uir_r1_a5_k5_s2_e4_c40"      # ExtraDW
    assert UIROp.parse("ib_k3e6").block_str(1, 40, 0.0) == "uir_r1_a0_k3_s1_e6_c40"      # IB
    assert UIROp.parse("cn_k3e4").block_str(2, 40, 0.25) == "uir_r1_a3_k0_s2_e4_c40_se0.25"  # ConvNext
    for bad in ("ffn_e2", "xd_k4e4", "k3e6", "ib_k3e0"):
        with pytest.raises(DnaError, match=f"unknown op '{bad}'"):
            UIROp.parse(bad)
    with pytest.raises(DnaError, match="unknown op 'k3e6'"):
        UIRSpace(name="x", ops=("k3e6",), blocks=UIR.blocks)
    layer = build_layer(16, UIR_TINY.block_str("xd_k3e2", 2, 24))
    assert type(layer).__name__ == "UniversalInvertedResidual"


def test_tiny_space_matches_mbconv_tiny_and_reads_back():
    assert [b.stride for b in UIR_TINY.blocks] == [b.stride for b in MBCONV_TINY.blocks]
    assert UIR_TINY.blocks == MBCONV_TINY.blocks and UIR_TINY.resolution == 32
    assert get_space(UIR_TINY.to_json()) == UIR_TINY and get_family(UIR_TINY).kind == "uir"
    assert UIR.count() == get_space("mbconv").count()          # same cells, 6 ops each


def test_searched_uir_architecture_is_an_efficientnet_arch_def():
    picks = ["xd_k3e2", "ib_k3e4-cn_k3e4", "ib_k5e4", "cn_k3e4-cn_k3e4", "xd_k3e2", "ib_k3e4"]
    from dna.space.mbconv import BlockChoice

    choices = [BlockChoice(k, 0 if "-" not in p else 1, tuple(p.split("-"))) for k, p in enumerate(picks)]
    d = Architecture.from_choices(UIR_TINY, choices).to_json()
    assert family_of_arch(d).kind == "uir"
    layers = arch_layers(d)
    assert [x["type"] for x in layers][:3] == ["ds", "uir", "uir"]
    assert [x["kernels"] for x in layers[1:4]] == [[3, 3], [0, 3], [3, 0]]      # ExtraDW, IB, ConvNext
    fixed, s = get_family(UIR_TINY).path_costs(UIR_TINY).fixed(), summarize(d)
    costs = get_family(UIR_TINY).path_costs(UIR_TINY)
    total, w = {k: fixed[k] for k in ("params", "flops")}, UIR_TINY.first_channels
    for ch in choices:
        part = costs.path(ch.block, ch.cell, ch.ops, w)
        total, w = {k: v + part[k] for k, v in total.items()}, UIR_TINY.cell(ch.block, ch.cell).channels
    assert total == {"params": s["params"], "flops": s["flops"]}


def test_one_generation_end_to_end_on_the_tiny_uir_space(tmp_path):
    """Trained, rated, searched, built and retrained like MBConv: the searched params/FLOPs are the
    built model's."""
    fast = RetrainSettings(epochs=1, opt="adamw", lr=3e-3, sched="cosine", steps_per_epoch=2, drop_rate=0.0,
                           drop_path_rate=0.0, label_smoothing=0.0)
    root = str(tmp_path / "run")
    cfg = RunConfig(root=root, generations=1, space="uir-tiny", data=tiny_data(),
                    teacher=TeacherConfig(model="tiny"), block_epochs=1, block_max_steps=1, rate_max_batches=1,
                    teacher_train=fast, retrain=fast, transfer=[])
    run(cfg, log=lambda _m: None)
    g0 = generation(root, 0)
    table, meta = read_scores(g0.scores)
    assert sorted(set(table.column("block").to_pylist())) == list(range(6))
    assert set("-".join(table.column("ops").to_pylist()).split("-")) <= set(UIR_TINY.ops)
    uri = storage.join(g0.search, "arch.json")
    searched = Architecture.load(uri)
    assert searched.space["kind"] == "uir" and all(s.startswith("uir_") for st in searched.arch_def[1:] for s in st)
    built = summarize(storage.read_json(uri))
    assert (searched.extra["params"], searched.extra["flops"]) == (built["params"], built["flops"])
    assert storage.exists(storage.join(g0.retrain, "model.pt"))
