"""Peak activation memory (act_mem), the cost added through the registry: counting, the scores
table, exact search under a max limit, and the built model agreeing with the searched totals."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pyarrow as pa
import pytest
import torch.nn as nn

from dna.cli import main
from dna.cost_registry import BY_NAME
from dna.costs import count_act_mem, count_flops, count_params
from dna.errors import DnaError
from dna.generation import RunConfig
from dna.model.arch import Architecture
from dna.model.efficientnet import build_model
from dna.rate.path_costs import PathCosts
from dna.rate.scores import ScoresMeta, make_table, read_scores, write_scores
from dna.search import search
from dna.space.mbconv import MBCONV_TINY, MBConvSpace
from tests.test_search import brute, random_space, rows_of

COLS = ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops", "act_mem")


def act_table(space, rng, costs: PathCosts | None = None, integer: bool = False):
    """Every row of ``space`` with random losses and random (or, with ``costs``, real) costs."""
    rows = {k: [] for k in COLS}
    for k in range(len(space.blocks)):
        for c, cell in enumerate(space.blocks[k].cells):
            for ops in sorted("-".join(p) for p in space.paths(k, c)):
                for w in space.in_widths(k):
                    if costs is not None:
                        d = costs.path(k, c, ops.split("-"), w)
                    else:
                        hi = 6 if integer else 5000
                        d = {n: int(rng.integers(1, hi)) for n in ("params", "flops", "act_mem")}
                    loss = float(rng.integers(0, 4)) if integer else float(rng.random())
                    for col, v in zip(COLS, (k, c, ops, w, cell.channels, loss, d["params"], d["flops"],
                                             d["act_mem"]), strict=True):
                        rows[col].append(v)
    fixed = costs.fixed() if costs is not None else {"params": 100, "flops": 2000, "act_mem": 1500}
    meta = ScoresMeta(space=space.to_json(), resolution=space.resolution, teacher="t", fixed=fixed)
    return make_table(rows, meta), meta


def brute_act(table, meta):
    """Every architecture in the search's order, with its act_mem (max of fixed part and rows)."""
    R, loss, par, fl, _, _ = brute(table, meta)
    act = np.maximum(meta.fixed_act_mem, np.asarray(table.column("act_mem"))[R].max(1))
    return R, loss, par, fl, act


def test_count_act_mem_is_the_largest_leaf_input_plus_output():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    # conv: 3*8*8 in + 8*4*4 out; relu: 2 * 128; flatten: 2 * 128; linear: 128 + 5
    assert count_act_mem(net, (3, 8, 8)) == 4 * max(3 * 64 + 128, 2 * 128, 128 + 5)
    assert count_act_mem(nn.Linear(7, 3), (7,)) == 4 * (7 + 3)
    assert net.training  # the count leaves the module's mode as it was


@pytest.mark.parametrize("seed", range(8))
def test_search_under_act_mem_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    space = random_space(rng, int(rng.integers(2, 4)))
    table, meta = act_table(space, rng, integer=seed % 2 == 0)
    R, loss, par, fl, act = brute_act(table, meta)
    cases = 0
    for q in (0.0, 0.2, 0.5, 0.9, 1.0):
        lim = int(np.quantile(act, q))
        for p in (None, int(np.quantile(par, 0.5))):
            ok = (act <= lim) & ((par <= p) if p is not None else True)
            limits = {"act_mem": lim, **({"params": p} if p is not None else {})}
            for k in (1, 3):
                if not ok.any():
                    with pytest.raises(DnaError, match="no architecture"):
                        search(table, meta, limits=limits, top_k=k)
                    continue
                got = search(table, meta, limits=limits, top_k=k)
                want = np.flatnonzero(ok)[:k]
                assert rows_of(got, table) == R[want].tolist(), (limits, k)
                assert [g.act_mem for g in got] == act[want].tolist()
                assert [g.params for g in got] == par[want].tolist()
                cases += 1
    assert cases >= 10


def test_act_mem_below_the_fixed_part_or_every_chain_names_the_smallest():
    rng = np.random.default_rng(3)
    table, meta = act_table(random_space(rng, 2), rng)
    R, loss, par, fl, act = brute_act(table, meta)
    with pytest.raises(DnaError, match=rf"no architecture has act_mem <= 10: the smallest achievable is "
                                       rf"{int(act.min()):,}"):
        search(table, meta, limits={"act_mem": 10})
    p_min = int(par.min())
    if act[par == p_min].min() > act.min():  # each alone is feasible, together they are not
        with pytest.raises(DnaError, match="together: with act_mem"):
            search(table, meta, limits={"params": p_min, "act_mem": int(act.min())})


def test_searched_net_params_flops_act_mem_equal_the_built_timm_model():
    tiny = MBCONV_TINY
    space = MBConvSpace(name="tiny3", ops=tiny.ops, blocks=tiny.blocks[:3], stem_channels=16,
                        first_channels=8, head_channels=64, resolution=32, num_classes=10)
    rng = np.random.default_rng(0)
    table, meta = act_table(space, rng, costs=PathCosts(space))
    _, _, par, _, act = brute_act(table, meta)
    for limits in ({}, {"act_mem": int(np.quantile(act, 0.3))},
                   {"act_mem": int(np.quantile(act, 0.6)), "params": int(np.quantile(par, 0.5))}):
        for best in search(table, meta, limits=limits, top_k=2):
            model = build_model(Architecture.from_choices(space, best.choices))
            shape = (3, space.resolution, space.resolution)
            assert best.costs == {"params": count_params(model), "flops": count_flops(model, shape),
                                  "act_mem": count_act_mem(model, shape)}, limits
            assert all(best.costs[n] <= v for n, v in limits.items())


def test_scores_table_column_and_metadata_are_optional(tmp_path):
    rng = np.random.default_rng(1)
    table, meta = act_table(random_space(rng, 2), rng)
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    back, m = read_scores(uri)
    assert back.schema.field("act_mem").type == pa.int64() and m.fixed_act_mem == 1500
    assert back.schema.metadata[b"fixed_act_mem"] == b"1500"
    old = table.drop_columns(["act_mem"])
    old = old.replace_schema_metadata({k: v for k, v in old.schema.metadata.items() if k != b"fixed_act_mem"})
    write_scores(old, str(tmp_path / "old.parquet"))
    t2, m2 = read_scores(str(tmp_path / "old.parquet"))  # a table without them still reads
    assert "act_mem" not in t2.column_names and m2.fixed_act_mem is None
    assert search(t2, m2)[0].act_mem is None
    with pytest.raises(DnaError, match="max_act_mem=1000 needs an act_mem column, and this scores table has none"):
        search(t2, m2, limits={"act_mem": 1000})


def test_cli_max_act_mem_and_its_json(tmp_path, capsys):
    rng = np.random.default_rng(2)
    table, meta = act_table(random_space(rng, 2), rng)
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    _, _, _, _, act = brute_act(table, meta)
    lim = int(np.quantile(act, 0.5))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["search", uri, "--json", "--max-act-mem", f"{lim / 1e3}k"]) == 0
    a = json.loads(buf.getvalue())["architectures"][0]
    assert list(a) == ["loss", "params", "flops", "act_mem", "blocks", "arch_def"] and a["act_mem"] <= lim
    assert main(["search", uri, "--max-act-mem", str(lim)]) == 0
    assert "act_mem" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a peak is not an axis of the exact front
        main(["search", uri, "--pareto", "--cost", "act_mem"])


def test_run_config_limits_act_mem():
    assert BY_NAME["act_mem"].combine == "max" and BY_NAME["act_mem"].flag == "--max-act-mem"
    cfg = RunConfig.from_dict({"root": "r", "limits": {"act_mem": 2e6}, "max_params": 5e5}).validate()
    assert cfg.limits == {"params": 5e5, "act_mem": 2e6}
    with pytest.raises(DnaError, match="act_mem is not counted for vit spaces"):
        RunConfig(root="r", space="vit-tiny", limits={"act_mem": 2e6}).validate()
