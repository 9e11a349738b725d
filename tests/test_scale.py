"""DNA+ compound scaling: exactly timm's EfficientNet scaling."""

from __future__ import annotations

import json

import pytest
import timm

from dna import storage
from dna.cli import main
from dna.costs import count_params
from dna.errors import DnaError
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.model.summary import build, summarize
from dna.scale import COEFFICIENTS, expand, scale, scale_arch_def
from dna.space import get_space
from dna.space.mbconv import BlockChoice


def shapes(model) -> list[tuple]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("to,params,res", [("b1", 7_794_184, 240), ("b2", 9_109_994, 260)])
def test_scaling_b0_gives_timm(to, params, res):
    b0 = Architecture(arch_def=EFFICIENTNET_B0)
    ref = timm.create_model(f"efficientnet_{to}")
    assert count_params(ref) == params
    explicit = scale(b0, to)
    kept = scale(b0, to, expand_arch=False)
    assert explicit.channel_multiplier == explicit.depth_multiplier == 1.0
    assert kept.arch_def == b0.arch_def and kept.depth_multiplier == COEFFICIENTS[to][1]
    for arch in (explicit, kept):
        assert arch.resolution == res and arch.num_classes == 1000
        model = build(arch)
        assert count_params(model) == params
        assert shapes(model) == shapes(ref)  # the very same layers, not just the same count
    # A plain timm user builds the explicit arch_def with no multipliers at all.
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet

    plain = EfficientNet(decode_arch_def(explicit.arch_def), stem_size=explicit.stem_channels,
                         num_features=explicit.head_channels)
    assert count_params(plain) == params


def test_b1_arch_def_and_provenance():
    b1 = scale(Architecture(arch_def=EFFICIENTNET_B0), "B1")
    assert b1.arch_def[0] == ["ds_r2_k3_s1_e1_c16_se0.25"]  # ceil(1 * 1.1) = 2
    assert [int(s[0].split("_")[1][1:]) for s in b1.arch_def] == [2, 3, 3, 4, 4, 5, 2]
    assert b1.extra["scale"]["to"] == "b1" and b1.extra["scaled_from"]["arch_def"] == EFFICIENTNET_B0
    b2 = scale(Architecture(arch_def=EFFICIENTNET_B0), "b2")
    assert (b2.stem_channels, b2.head_channels) == (32, 1408)


def test_searched_arch_scales_the_same_either_way():
    s = get_space("mbconv-tiny")
    arch = Architecture.from_choices(
        s, [BlockChoice(k, len(s.blocks[k].cells) - 1,
                        tuple(s.ops[(k + i) % len(s.ops)] for i in range(s.blocks[k].cells[-1].layers)))
            for k in range(6)])
    base = count_params(build(arch))
    for to in ("b1", "b3", (1.3, 1.6, 40)):
        explicit, kept = scale(arch, to), scale(arch, to, expand_arch=False)
        assert explicit.choices is None and explicit.extra["scaled_from"]["blocks"]
        a, b = build(explicit), build(kept)
        assert shapes(a) == shapes(b) and count_params(a) > base
    a, b = summarize(scale(arch, "b3")), summarize(scale(arch, "b3", expand_arch=False))
    assert (a["params"], a["flops"], a["num_layers"]) == (b["params"], b["flops"], b["num_layers"])
    assert a["resolution"] == round(32 * 300 / 224)
    assert scale(arch, (1.3, 1.6, 40)).resolution == 40
    # Scaling composes with multipliers already present, and expand() keeps the network.
    kept = scale(scale(arch, "b2", expand_arch=False), "b1", expand_arch=False)
    assert kept.depth_multiplier == pytest.approx(1.2 * 1.1)
    assert shapes(build(expand(kept))) == shapes(build(kept))
    assert scale_arch_def(arch.arch_def) == arch.arch_def


def test_bad_scale_inputs():
    b0 = Architecture(arch_def=EFFICIENTNET_B0)
    with pytest.raises(DnaError, match="b1, b2, b3"):
        scale(b0, "b9")
    with pytest.raises(DnaError, match="width"):
        scale(b0, width=-1.0)
    with pytest.raises(DnaError, match="resolution"):
        scale(b0, (1.0, 1.0, 0))
    with pytest.raises(DnaError, match="not both"):
        scale(b0, "b1", width=1.2)
    with pytest.raises(DnaError, match="ir_r1_kq"):
        scale([["ir_r1_kq_s1_e6_c8"]], "b1")


def test_scale_cli(tmp_path, capsys):
    src, out = str(tmp_path / "b0.json"), str(tmp_path / "b1.json")
    storage.write_json(EFFICIENTNET_B0, src)
    assert main(["scale", src, "--to", "b1", "--out", out, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["params"] == 7_794_184 and r["resolution"] == 240
    arch = Architecture.load(out)
    assert arch.channel_multiplier == 1.0 and count_params(build(arch)) == 7_794_184

    assert main(["scale", src, "--width", "1.1", "--depth", "1.2", "--resolution", "260",
                 "--keep-multipliers", "--out", out]) == 0
    assert "9,109,994" in capsys.readouterr().out
    assert Architecture.load(out).channel_multiplier == 1.1

    assert main(["scale", src, "--to", "b42"]) == 2
    err = capsys.readouterr().err
    assert "b42" in err and "b7" in err
    assert main(["scale", src]) == 2
