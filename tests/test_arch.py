"""The architecture JSON and timm arch_def round-trip."""

from __future__ import annotations

import json

import pytest
from timm.models._efficientnet_builder import _decode_block_str

from dna import storage
from dna.costs import count_params
from dna.errors import DnaError
from dna.model.arch import EFFICIENTNET_B0, Architecture
from dna.model.efficientnet import build_model
from dna.rate.path_costs import PathCosts
from dna.space import BlockChoice, get_space


def _choices():
    return [BlockChoice(0, 2, ("k5e6", "k3e3")), BlockChoice(1, 1, ("k7e3", "k3e6", "k5e3")),
            BlockChoice(2, 0, ("k3e3", "k7e6")), BlockChoice(3, 2, ("k5e3",) * 4),
            BlockChoice(4, 2, ("k3e6", "k5e6", "k7e6", "k3e3", "k5e3")), BlockChoice(5, 0, ("k7e6",))]


def test_searched_architecture_round_trips(tmp_path):
    space = get_space("mbconv")
    arch = Architecture.from_choices(space, _choices(), loss=1.5)
    uri = str(tmp_path / "arch.json")
    arch.save(uri)
    back = Architecture.load(uri)
    assert back.arch_def == arch.arch_def and back.choices == arch.choices
    assert back.extra["loss"] == 1.5 and back.space == space.to_json()
    assert arch.arch_def[0] == ["ds_r1_k3_s1_e1_c16_se0.25"]
    assert arch.arch_def[2][0] == "ir_r1_k7_s2_e3_c40_se0.25"
    # every string is one timm knows, with the op, stride and width the choice says
    for stage, choice in zip(arch.arch_def[1:], back.choices, strict=True):
        for i, (s, op) in enumerate(zip(stage, choice.ops, strict=True)):
            args, repeats, *_ = _decode_block_str(s)
            assert repeats == 1 and f"k{args['dw_kernel_size']}e{args['exp_ratio']:g}" == op
            assert args["stride"] == (space.blocks[choice.block].stride if i == 0 else 1)
    # the built model costs exactly what the scores table predicts
    costs = PathCosts(space)
    total, prev = costs.fixed()["params"], space.first_channels
    for c in back.choices:
        total += costs.path(c.block, c.cell, c.ops, prev)["params"]
        prev = space.cell(c.block, c.cell).channels
    assert count_params(build_model(back)) == total


def test_bare_arch_def_file_gets_efficientnet_defaults(tmp_path):
    uri = str(tmp_path / "b0.json")
    storage.write_json(EFFICIENTNET_B0, uri)
    arch = Architecture.load(uri)
    assert (arch.resolution, arch.num_classes, arch.stem_channels, arch.head_channels) == (224, 1000, 32, 1280)
    assert json.loads(json.dumps(arch.to_json()))["arch_def"] == EFFICIENTNET_B0


@pytest.mark.parametrize("bad", [[], [[]], "ir_r1", [["ir_r1_k3_s1_e6_c16"], [3]]])
def test_malformed_arch_def_rejected(bad):
    with pytest.raises(DnaError, match="arch_def"):
        Architecture.from_json(bad if not isinstance(bad, str) else {"arch_def": bad})
