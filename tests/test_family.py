"""The search-space seam: families found by kind and by architecture JSON, and what each one does."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dna.errors import DnaError
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.model.vit import vit_arch_json
from dna.rate.path_costs import PathCosts
from dna.scale import scale
from dna.search.latency import space_layers
from dna.space import FAMILIES, SPACES, family_of_arch, get_family, get_space
from dna.space.mbconv import MBCONV_TINY, BlockChoice
from dna.space.vit import VIT_TINY

VIT_ARCH = vit_arch_json(VIT_TINY, ["h2-r2-d1", "h3-r4-d2", "h2-r4-d1", "h3-r2-d2"])
MB_ARCH = Architecture.from_choices(MBCONV_TINY, [BlockChoice(k, 0, ("k3e3",) * b.cells[0].layers)
                                                  for k, b in enumerate(MBCONV_TINY.blocks)]).to_json()


def test_every_builtin_space_has_its_family_and_reads_back():
    for name, space in SPACES.items():
        family = get_family(space)
        assert space in family.spaces and FAMILIES[space.kind] is family, name
        assert family.space_from_json(space.to_json()) == space == get_space(space.to_json())
    with pytest.raises(DnaError, match=r"unknown space kind 'resnet'.*'mbconv'"):
        get_space({"name": "x", "kind": "resnet"})


def test_architecture_json_finds_its_family():
    assert family_of_arch(VIT_ARCH).kind == "vit"
    assert family_of_arch(MB_ARCH).kind == "mbconv"
    assert family_of_arch(EFFICIENTNET_B0).kind == "mbconv"               # a bare arch_def list
    assert family_of_arch({"arch_def": EFFICIENTNET_B0}).kind == "mbconv"  # no space: a scaled net
    with pytest.raises(DnaError, match="not an architecture JSON"):
        family_of_arch({"layers": []})
    with pytest.raises(DnaError, match="format 'dna.vit-architecture/v1' is not a timm arch_def"):
        Architecture.from_json(VIT_ARCH)


def test_layers_of_both_families():
    vit = family_of_arch(VIT_ARCH).arch_layers(VIT_ARCH)
    assert [x["width"] for x in vit] == [16, 24, 24, 16, 24, 24]            # head_dim 8, not a default
    assert {x["type"] for x in vit} == {"transformer"}
    mb = family_of_arch(MB_ARCH).arch_layers(MB_ARCH)
    assert len(mb) == 1 + 6 and mb[1]["kernel"] == 3 and mb[1]["expansion"] == 3.0 and mb[1]["stride"] == 2


def test_costs_objects_of_both_families():
    vit = get_family(VIT_TINY).path_costs(VIT_TINY)
    from dna.model.vit import predicted_costs

    choices = [b["ops"] for b in VIT_ARCH["blocks"]]
    total, w = dict(vit.fixed()), VIT_TINY.embed_dim
    for k, c in enumerate(choices):
        part = vit.path(k, 0, c.split("-"), w)
        total, w = {n: total[n] + part[n] for n in total}, VIT_TINY.out_width(k, c)
    assert total == predicted_costs(VIT_TINY, choices)
    mb = get_family(MBCONV_TINY).path_costs(MBCONV_TINY, 32)
    assert isinstance(mb, PathCosts) and len(mb.layers()) == len(space_layers(MBCONV_TINY))
    with pytest.raises(DnaError, match="no latency-table layers"):
        space_layers(VIT_TINY)


def test_native_resolution_of_any_family(tmp_path):
    from dna import storage
    from dna.retrain import model_resolution

    for name, d in (("vit", VIT_ARCH), ("mb", MB_ARCH)):
        storage.write_json(d, str(tmp_path / f"{name}.json"))
        assert model_resolution(str(tmp_path / f"{name}.json")) == 32


def test_scaling_applies_to_cnn_families_only():
    assert scale(MB_ARCH, "b1").extra["scale"]["to"] == "b1"
    with pytest.raises(DnaError, match="compound scaling is EfficientNet's"):
        scale(VIT_ARCH, "b1")


def _vit_rows(**change) -> dict:
    rows = {"block": np.array([0, 1]), "cell": np.array([0, 0]), "out_channels": np.array([16, 24]),
            "ops": pa.array(["h2-r2-d1", "h3-r4-d2"])}
    rows.update(change)
    return rows


@pytest.mark.parametrize("change, match", [
    ({"cell": np.array([0, 1])}, "ViT blocks have one cell"),
    ({"out_channels": np.array([16, 16])}, "has width 24"),
    ({"ops": pa.array(["h2-r2-d1", "h9-r4-d2"])}, r"heads 9 not in \[2, 3\]"),
])
def test_vit_scores_rows_are_checked(change, match):
    family = get_family("vit")
    ok = _vit_rows()
    family.check_rows(VIT_TINY, ok["block"], ok["cell"], ok["out_channels"], ok["ops"], int)
    bad = _vit_rows(**change)
    with pytest.raises(DnaError, match=match):
        family.check_rows(VIT_TINY, bad["block"], bad["cell"], bad["out_channels"], bad["ops"], int)


def test_cli_routes_every_family(tmp_path, capsys):
    """`dna build`, `dna retrain` and `dna scale` take any family's architecture JSON."""
    import json

    from dna import storage
    from dna.cli import main

    for name, d in (("vit", VIT_ARCH), ("mbconv", MB_ARCH)):
        uri = str(tmp_path / f"{name}.json")
        storage.write_json(d, uri)
        assert main(["build", uri, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["kind"] == name
        argv = ["retrain", uri, "--out", str(tmp_path / f"r-{name}"), "--epochs", "1", "--train-size", "16",
                "--val-size", "16", "--batch-size", "16", "--steps-per-epoch", "1", "--lr", "0.001", "--json"]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["epochs"] == 1
    assert main(["scale", str(tmp_path / "vit.json"), "--to", "b1"]) == 2
    assert "compound scaling is EfficientNet's" in capsys.readouterr().err
