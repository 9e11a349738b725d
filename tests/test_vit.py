"""The ViT search space, slimmable supernet layers, the stand-alone ViT, its costs and retraining."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from dna import storage
from dna.costs import count_flops
from dna.data import DataConfig
from dna.errors import DnaError
from dna.model.vit import (
    build_from_arch,
    build_vit,
    load_vit_arch,
    make_layer,
    predicted_costs,
    summarize_vit,
    vit_arch_json,
    vit_costs,
    vit_fixed_costs,
    vit_flops,
    vit_path_costs,
)
from dna.space import get_space
from dna.space.mbconv import BlockChoice
from dna.space.vit import VIT, VIT_TINY, PathChoice, ViTSpace, vit_space
from dna.supernet.vit import SlimViTLayer, ViTBlockSupernet, patch_stride


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: one intra-op thread is faster, and far faster on a busy machine (no spin-waits).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----- the space -------------------------------------------------------------------------------


def test_vit_space_count_and_layout():
    assert VIT.count() == 16_777_216 == 64**4
    assert isinstance(VIT.count(), int)
    assert [VIT.block_paths(k) for k in range(4)] == [64] * 4
    assert VIT.widths(0) == tuple(range(224, 449, 32))
    assert VIT.in_widths(0) == (384,) and VIT.in_widths(2) == VIT.widths(1)
    assert sum(max(b.depths) for b in VIT.blocks) == 16 and sum(min(b.depths) for b in VIT.blocks) == 12
    assert VIT.tokens() == 197
    assert VIT_TINY.count() == 8**4
    d = VIT.describe()
    assert d["kind"] == "vit" and d["architectures"] == 16_777_216 and d["blocks"][0]["paths"] == 64
    from dna.cli.space import format_text

    text = format_text({**VIT.to_json(), "describe": d})
    assert "architectures: 16777216" in text and "h14" in text


def test_ops_encoding_is_stable_and_validated():
    c = PathChoice.parse("h8-r3.5-d4")
    assert c == (8, 3.5, 4) and c.ops == "h8-r3.5-d4"
    assert PathChoice(12, 3.0, 3).ops == "h12-r3-d3"
    assert PathChoice.parse(("h12", "r3", "d3")) == (12, 3.0, 3)
    ops = [p.ops for p in VIT.paths(0)]
    assert len(ops) == len(set(ops)) == 64 and all(PathChoice.parse(o).ops == o for o in ops)
    assert VIT.check_path(0, "h14-r4-d3") == (14, 4.0, 3)
    for bad in ("h6-r3-d3", "h8-r5-d3", "h8-r3-d5", "k3e6", "h8-r3"):
        with pytest.raises(DnaError):
            VIT.check_path(0, bad)
    with pytest.raises(DnaError):
        VIT.check_block(4)
    assert VIT.arch_def([BlockChoice(k, 0, ("h8", "r3.5", "d4")) for k in range(4)])[1] == ["h8", "r3.5", "d4"]


def test_space_json_roundtrip_and_user_defined_ranges():
    for space in (VIT, VIT_TINY):
        assert ViTSpace.from_json(space.to_json()) == space
        assert get_space(space.to_json()) == space  # dna.space dispatches kind 'vit'
    compact = {"name": "mine", "kind": "vit", "num_blocks": 3, "heads": [4, 6], "mlp_ratios": [2, 3],
               "depths": [2, 3, 4], "head_dim": 16, "embed_dim": 64, "patch_size": 8, "resolution": 64}
    mine = vit_space(compact)
    assert mine.count() == 12**3 and mine.widths(1) == (64, 96)
    assert vit_space("vit-tiny") is VIT_TINY
    with pytest.raises(DnaError):
        ViTSpace.from_json(dict(compact, resolution=60))  # not a multiple of the patch
    with pytest.raises(DnaError):
        ViTSpace.from_json({"name": "x", "kind": "vit", "blocks": [{"heads": []}]})
    with pytest.raises(DnaError):
        vit_space("mbconv-tiny")


# ----- slimmable layers ------------------------------------------------------------------------


def _randomize(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("heads,ratio", [(7, 2.5), (14, 4.0), (10, 3.5), (8, 3.0)])
def test_sliced_layer_equals_standalone_layer_with_sliced_weights(heads, ratio):
    layer = SlimViTLayer(max_heads=14, head_dim=32, max_ratio=4.0)
    _randomize(layer)
    x = torch.randn(2, 5, heads * 32)
    block = layer.export(heads, ratio).eval()
    assert type(block) is type(make_layer(heads, ratio, 32))
    assert block.mlp.fc1.out_features == int(heads * 32 * ratio)
    torch.testing.assert_close(layer(x, heads, ratio), block(x), rtol=1e-5, atol=1e-5)


def test_supernet_block_tokens_maps_and_depth_prefix():
    space = VIT_TINY
    net = ViTBlockSupernet(space, 0, teacher_in=24, teacher_out=40, in_hw=(7, 7), out_hw=(4, 4))
    assert net.stride == (2, 2)  # 7 -> 4: stride 2 with right/bottom padding
    x = torch.randn(3, 24, 7, 7)
    for c in space.paths(0):
        tokens = net(x, c)
        assert tokens.shape == (3, 16, 40)
        assert net.to_map(tokens).shape == (3, 40, 4, 4)
    # depth 1 is the prefix of depth 2
    c2 = PathChoice(3, 4.0, 2)
    t = net.embed_tokens(x, 3)
    t1 = net.layer(0, t, c2)
    torch.testing.assert_close(net(x, PathChoice(3, 4.0, 1)), net.readout(t1))
    torch.testing.assert_close(net(x, c2), net.readout(net.layer(1, t1, c2)))
    g = torch.Generator().manual_seed(0)
    seen = {net.sample(g).ops for _ in range(200)}
    assert seen == {c.ops for c in space.paths(0)}
    assert patch_stride(14, 7) == 2 and patch_stride(2, 2) == 1
    with pytest.raises(DnaError):
        patch_stride(2, 4)


# ----- stand-alone model and costs ----------------------------------------------------------------


def test_built_vit_is_a_timm_vision_transformer():
    model = build_vit(VIT_TINY, ["h3-r4-d2", "h2-r2-d1", "h3-r2-d1", "h2-r4-d2"])
    assert isinstance(model, VisionTransformer)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert model.forward_features(x).shape == (2, VIT_TINY.tokens(), 16)
    assert [type(s.proj).__name__ for s in model.blocks] == ["Linear", "Linear", "Linear", "Linear"]
    same = build_vit(VIT_TINY, ["h2-r2-d1"] * 4)  # every width 16 == patch width: no projections
    assert all(isinstance(s.proj, nn.Identity) for s in same.blocks)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    with pytest.raises(DnaError):
        build_vit(VIT_TINY, ["h2-r2-d1"] * 3)


def test_path_costs_add_up_to_the_built_model():
    space = VIT_TINY
    fixed = vit_fixed_costs(space)
    for picks in itertools.islice(itertools.product(*(list(space.paths(k)) for k in range(4))), 0, None, 509):
        model = build_vit(space, picks)
        assert vit_costs(model) == predicted_costs(space, picks)
        rows, in_w = [], space.embed_dim
        for k, c in enumerate(picks):
            rows.append(vit_path_costs(space, k, c, in_w))
            in_w = c.heads * space.head_dim
        assert vit_costs(model) == {n: fixed[n] + sum(r[n] for r in rows) for n in ("params", "flops")}
    # the full-size space: about DeiT-S (params 20M, 4.3 GMACs) for a mid-size pick
    picks = ["h12-r4-d4", "h7-r2.5-d3", "h14-r3.5-d4", "h8-r3-d3"]
    assert vit_costs(build_vit(VIT, picks)) == predicted_costs(VIT, picks)


def test_flops_count_attention_matmuls():
    layer = make_layer(heads=3, mlp_ratio=2.0, head_dim=8)
    tokens, w = 65, 24
    linear = count_flops(layer, (tokens, w))
    assert linear == tokens * (w * 3 * w + w * w + 2 * w * 48)
    assert vit_flops(layer, (tokens, w)) == linear + 2 * tokens * tokens * w


def test_vit_arch_json_roundtrip(tmp_path):
    picks = ["h3-r4-d2", "h2-r2-d1", "h3-r2-d1", "h2-r4-d2"]
    d = vit_arch_json(VIT_TINY, picks)
    uri = str(tmp_path / "arch.json")
    storage.write_json(d, uri)
    assert load_vit_arch(uri) == d
    assert load_vit_arch({"space": VIT_TINY.to_json(), "arch_def": [p.split("-") for p in picks]})["blocks"] == d["blocks"]
    model = build_from_arch(uri)
    s = summarize_vit(uri)
    assert {n: s[n] for n in ("params", "flops")} == vit_costs(model) == predicted_costs(VIT_TINY, picks)
    assert [b["ops"] for b in s["blocks"]] == picks
    with pytest.raises(DnaError):
        load_vit_arch({"arch_def": [["ir_r1_k3_s1_e1_c16"]]})


# ----- retraining ---------------------------------------------------------------------------------


def test_retrain_vit_deit_recipe_smoke(tmp_path):
    from dna.retrain_vit import RetrainViTConfig, retrain_vit

    arch = vit_arch_json(VIT_TINY, ["h2-r2-d1", "h3-r2-d1", "h2-r2-d1", "h2-r2-d1"])
    data = DataConfig(train_size=32, val_size=16, rating_size=8, batch_size=16)
    cfg = RetrainViTConfig(arch=arch, out=str(tmp_path / "rt"), data=data, epochs=1, warmup_epochs=0,
                           auto_augment=None, steps_per_epoch=1)
    m = retrain_vit(cfg)
    assert m["status"] == "trained" and m["epochs"] == 1 and math.isfinite(m["val_loss"])
    assert {n: m[n] for n in ("params", "flops")} == predicted_costs(VIT_TINY, [b["ops"] for b in arch["blocks"]])
    for name in ("checkpoint.pt", "model.pt", "metrics.json", "curve.csv"):
        assert storage.exists(str(tmp_path / "rt" / name))
    saved = storage.load_torch(str(tmp_path / "rt" / "model.pt"))
    model = build_from_arch(saved["arch"])
    model.load_state_dict(saved["model"])
    assert retrain_vit(cfg)["status"] == "cached"
    m2 = retrain_vit(RetrainViTConfig(**{**cfg.__dict__, "epochs": 2}))
    assert m2["epochs"] == 2 and m2["resumed_from"] == 1
    with pytest.raises(DnaError):
        RetrainViTConfig(arch=arch, out="x", mixup_prob=2.0).validate()
