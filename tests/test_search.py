"""Traversal search == brute force; errors; the `dna search` command."""

from __future__ import annotations

import io
import itertools
import json
from contextlib import redirect_stdout

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dna.cli import main
from dna.errors import DnaError
from dna.model.arch import Architecture
from dna.rate.path_costs import PathCosts
from dna.rate.scores import ScoresMeta, make_table, read_scores, write_scores
from dna.search import pareto_front, search
from dna.search.traversal import Problem
from dna.space import BlockChoice, get_space
from dna.space.mbconv import MBCONV_TINY, Block, Cell, MBConvSpace

COLS = ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops")


# ----- helpers ------------------------------------------------------------------------------


def random_space(rng, n_blocks: int) -> MBConvSpace:
    ops = tuple(rng.choice(["k3e3", "k3e6", "k5e3", "k5e6"], size=int(rng.integers(2, 4)), replace=False))
    blocks = []
    for k in range(n_blocks):
        if k == n_blocks - 1:
            w = int(rng.choice([16, 24]))
            cells = [Cell(int(rng.integers(1, 3)), w) for _ in range(int(rng.integers(1, 3)))]
        else:
            cells = [Cell(int(rng.integers(1, 3)), int(rng.choice([8, 16, 24])))
                     for _ in range(int(rng.integers(2, 4)))]
        blocks.append(Block(tuple(cells), int(rng.choice([1, 2]))))
    return MBConvSpace(name="rand", ops=ops, blocks=tuple(blocks), stem_channels=8, first_channels=8,
                       head_channels=16, resolution=16, num_classes=4)


def table_for(space, rng=None, costs=None, integer=False, latency=False, fixed=(1000, 20000),
              fixed_latency=None):
    """Rows in table order; random losses (integers with ``integer``: many ties) and costs."""
    rows = {k: [] for k in COLS}
    if latency:
        rows["latency_ms"] = []
    for k in range(len(space.blocks)):
        for c, cell in enumerate(space.blocks[k].cells):
            for ops in sorted("-".join(p) for p in space.paths(k, c)):
                for w in space.in_widths(k):
                    rows["block"].append(k)
                    rows["cell"].append(c)
                    rows["ops"].append(ops)
                    rows["in_channels"].append(w)
                    rows["out_channels"].append(cell.channels)
                    if costs is not None:
                        d = costs.path(k, c, ops.split("-"), w)
                        p, f = d["params"], d["flops"]
                    elif integer:
                        p, f = int(rng.integers(1, 6)), int(rng.integers(1, 6))
                    else:
                        p, f = int(rng.integers(100, 2000)), int(rng.integers(1000, 90000))
                    rows["params"].append(p)
                    rows["flops"].append(f)
                    rows["loss"].append(float(rng.integers(0, 4)) if integer else float(rng.random()))
                    if latency:
                        rows["latency_ms"].append(float(rng.integers(1, 5)) if integer else float(rng.random()))
    if isinstance(fixed, dict):
        fixed = (fixed["params"], fixed["flops"])
    meta = ScoresMeta(space=space.to_json(), resolution=space.resolution, fixed_params=fixed[0],
                      fixed_flops=fixed[1], teacher="t", generation=0, fixed_latency_ms=fixed_latency)
    return make_table(rows, meta), meta


def brute(table, meta, lambdas=None):
    """Every architecture: (rows matrix, loss, params, flops, latency) sorted by the search's order."""
    space = get_space(meta.space)
    nb = len(space.blocks)
    t = table.to_pydict()
    n = table.num_rows
    per_block = [[i for i in range(n) if t["block"][i] == k] for k in range(nb)]
    chains = [[i] for i in per_block[0] if t["in_channels"][i] == space.in_widths(0)[0]]
    for k in range(1, nb):
        chains = [ch + [i] for ch in chains for i in per_block[k]
                  if t["in_channels"][i] == t["out_channels"][ch[-1]]]
    R = np.array(chains)
    lam = np.ones(nb) if lambdas is None else np.asarray(lambdas, float)
    obj = lam[np.asarray(t["block"])] * np.asarray(t["loss"])
    loss = np.zeros(len(R))
    for k in range(nb):
        loss = loss + obj[R[:, k]]
    par = meta.fixed_params + np.asarray(t["params"])[R].sum(1)
    fl = meta.fixed_flops + np.asarray(t["flops"])[R].sum(1)
    has_lat = "latency_ms" in t
    lat = ((meta.fixed_latency_ms or 0.0) + np.asarray(t["latency_ms"])[R].sum(1)) if has_lat else np.zeros(len(R))
    order = np.lexsort((*[R[:, k] for k in reversed(range(nb))], lat, fl, par, loss))
    return R[order], loss[order], par[order], fl[order], lat[order], has_lat


def rows_of(results, table):
    """Table row indices of each result's choices (widths chained from the fixed first width)."""
    t = table.to_pydict()
    index = {(t["block"][i], t["cell"][i], t["ops"][i], t["in_channels"][i]): i for i in range(table.num_rows)}
    first = get_space(ScoresMeta.from_metadata(table.schema.metadata).space).in_widths(0)[0]
    out = []
    for r in results:
        rows, w = [], first
        for ch in r.choices:
            i = index[(ch.block, ch.cell, ch.ops_str, w)]
            rows.append(i)
            w = t["out_channels"][i]
        out.append(rows)
    return out


def check_against_brute(table, meta, rng, lambdas=None, latency=False):
    R, loss, par, fl, lat, _ = brute(table, meta, lambdas)
    limits_list = [{}]
    for q in (0.1, 0.4, 0.8):
        limits_list.append({"max_params": int(np.quantile(par, q))})
        limits_list.append({"max_flops": int(np.quantile(fl, q))})
        limits_list.append({"max_params": int(np.quantile(par, q)), "max_flops": int(np.quantile(fl, 1 - q))})
        if latency:
            limits_list.append({"max_latency_ms": float(np.quantile(lat, q))})
            limits_list.append({"max_latency_ms": float(np.quantile(lat, q)), "max_params": int(np.quantile(par, 0.7)),
                                "max_flops": int(np.quantile(fl, 0.6))})
    cases = 0
    for limits in limits_list:
        ok = np.ones(len(R), bool)
        if "max_params" in limits:
            ok &= par <= limits["max_params"]
        if "max_flops" in limits:
            ok &= fl <= limits["max_flops"]
        if "max_latency_ms" in limits:
            ok &= lat <= limits["max_latency_ms"]
        for k in (1, 3, 8):
            if not ok.any():
                with pytest.raises(DnaError, match="no architecture"):
                    search(table, meta, top_k=k, lambdas=lambdas, **limits)
                continue
            got = search(table, meta, top_k=k, lambdas=lambdas, **limits)
            want = np.flatnonzero(ok)[:k]
            assert len(got) == len(want), limits
            assert rows_of(got, table) == R[want].tolist(), (limits, k)
            assert [g.loss for g in got] == loss[want].tolist()
            assert [g.params for g in got] == par[want].tolist()
            assert [g.flops for g in got] == fl[want].tolist()
            if latency:
                assert [g.latency_ms for g in got] == pytest.approx(lat[want].tolist())
            cases += 1
    # Pareto fronts
    for cost, arr in (("params", par), ("flops", fl)) + ((("latency_ms", lat),) if latency else ()):
        got = pareto_front(table, meta, cost=cost, lambdas=lambdas)
        best = np.inf
        front = []
        for i in range(len(R)):  # key order: keep what beats every earlier one on cost
            if arr[i] < best:
                front.append(i)
                best = arr[i]
        front.sort(key=lambda i: (arr[i], loss[i]))
        assert rows_of(got, table) == R[front].tolist(), cost
        cases += 1
    return cases


# ----- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_search_equals_brute_force_random_tables(seed):
    rng = np.random.default_rng(seed)
    space = random_space(rng, int(rng.integers(2, 4)))
    integer = seed % 3 == 0  # integer losses and costs: many ties, checks the tie-break order
    latency = seed % 2 == 0
    table, meta = table_for(space, rng, integer=integer, latency=latency,
                            fixed_latency=1.5 if latency else None)
    lambdas = None
    if seed % 4 == 1:
        lambdas = [float(x) for x in rng.integers(1, 4, len(space.blocks))] if integer else \
            [float(x) for x in rng.uniform(0.2, 2.0, len(space.blocks))]
    assert check_against_brute(table, meta, rng, lambdas=lambdas, latency=latency) > 10


def test_search_equals_brute_force_real_costs():
    """A 3-block slice of mbconv-tiny with real params/FLOPs from timm layers."""
    tiny = MBCONV_TINY
    space = MBConvSpace(name="tiny3", ops=tiny.ops, blocks=tiny.blocks[:3], stem_channels=16,
                        first_channels=8, head_channels=64, resolution=32, num_classes=10)
    costs = PathCosts(space)
    rng = np.random.default_rng(7)
    table, meta = table_for(space, rng, costs=costs, fixed=costs.fixed())
    assert table.num_rows == 84 and space.count() == 9600
    assert check_against_brute(table, meta, rng) > 10
    assert check_against_brute(table, meta, rng, lambdas=[1.0, 0.5, 2.0]) > 10


def test_search_results_and_arch_def():
    rng = np.random.default_rng(3)
    space = random_space(rng, 3)
    table, meta = table_for(space, rng)
    (best,) = search(table, meta)
    assert best.arch_def == space.arch_def(best.choices)
    assert [c.block for c in best.choices] == [0, 1, 2]
    assert best.latency_ms is None
    d = best.to_json()
    assert list(d) == ["loss", "params", "flops", "blocks", "arch_def"]
    # a Problem can be reused, and results do not depend on the input row order
    shuffled = table.take(pa.array(rng.permutation(table.num_rows)))
    assert search(shuffled, meta)[0].choices == best.choices
    P = Problem(table, meta)
    assert search(P, max_params=best.params)[0].choices == best.choices


# ----- errors -------------------------------------------------------------------------------


def small():
    rng = np.random.default_rng(11)
    space = random_space(rng, 2)
    return table_for(space, rng)


def test_infeasible_names_the_smallest_cost():
    table, meta = small()
    R, loss, par, fl, lat, _ = brute(table, meta)
    with pytest.raises(DnaError, match=rf"no architecture has params <= 10: the smallest achievable is {par.min():,}"):
        search(table, meta, max_params=10)
    with pytest.raises(DnaError, match=rf"flops <= 10: the smallest achievable is {fl.min():,}"):
        search(table, meta, max_flops=10)
    # each limit alone is feasible, together they are not
    p_min, f_at_pmin = par.min(), fl[par == par.min()].min()
    if f_at_pmin > fl.min():
        with pytest.raises(DnaError, match="together"):
            search(table, meta, max_params=int(p_min), max_flops=int(fl.min()))


@pytest.mark.parametrize("kwargs,match", [
    ({"max_params": -1}, "max_params=-1"),
    ({"max_flops": float("nan")}, "max_flops=nan"),
    ({"max_params": 0}, "max_params=0"),
    ({"top_k": 0}, "top_k=0"),
    ({"top_k": 1.5}, "top_k=1.5"),
    ({"lambdas": [1.0]}, "lambdas has 1 values"),
    ({"lambdas": [1.0, float("inf")]}, r"lambdas\[1\]=inf"),
    ({"lambdas": [1.0, -1.0]}, r"lambdas\[1\]=-1"),
    ({"max_latency_ms": 5.0}, "needs a latency_ms column"),
])
def test_bad_arguments(kwargs, match):
    table, meta = small()
    with pytest.raises(DnaError, match=match):
        search(table, meta, **kwargs)


def test_pareto_bad_cost():
    table, meta = small()
    with pytest.raises(DnaError, match="cost 'size'"):
        pareto_front(table, meta, cost="size")
    with pytest.raises(DnaError, match="latency_ms"):
        pareto_front(table, meta, cost="latency_ms")


def test_table_inconsistent_with_space():
    table, meta = small()
    t = table.to_pydict()
    i = next(j for j in range(len(t["block"])) if t["block"][j] == 0)
    t["in_channels"][i] = 999
    with pytest.raises(DnaError, match="in_channels 999, but block 0 takes the fixed first layer's width"):
        search(make_table(t, meta), meta)
    t = table.to_pydict()
    t["out_channels"][0] = 7
    with pytest.raises(DnaError, match="out_channels 7"):
        search(make_table(t, meta), meta)
    t = table.to_pydict()
    keep = [j for j in range(len(t["block"])) if t["block"][j] != 1]
    with pytest.raises(DnaError, match="no rows for block 1"):
        search(table.take(pa.array(keep)), meta)


def _write_raw(tmp_path, table, meta, name="bad.parquet"):
    uri = str(tmp_path / name)
    md = {k.encode(): v.encode() for k, v in meta.to_metadata().items()}
    pq.write_table(table.replace_schema_metadata(md), uri)
    return uri


@pytest.mark.parametrize("mutate,match", [
    (lambda t: t.drop_columns(["flops"]), "missing column 'flops'"),
    (lambda t: pa.concat_tables([t, t.slice(0, 1)]), "duplicate path"),
    (lambda t: t.set_column(5, "loss", pa.array([float("nan")] + t.column("loss").to_pylist()[1:])), "not finite"),
    (lambda t: t.set_column(6, "params", pa.array([-5] + t.column("params").to_pylist()[1:], pa.int64())),
     "negative params"),
])
def test_malformed_tables_rejected(tmp_path, mutate, match):
    table, meta = small()
    uri = _write_raw(tmp_path, mutate(table), meta)
    with pytest.raises(DnaError, match=match):
        read_scores(uri)
    assert main(["search", uri]) == 2  # the CLI reports it as `error: ...`, no traceback


def test_cli_reports_errors_with_exit_2(tmp_path, capsys):
    table, meta = small()
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    assert main(["search", uri, "--max-params", "10"]) == 2
    assert "no architecture has params <= 10" in capsys.readouterr().err
    assert main(["search", uri, "--max-params", "lots"]) == 2
    assert "max_params='lots'" in capsys.readouterr().err


# ----- CLI ----------------------------------------------------------------------------------


def _json(argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(argv) == 0
    return json.loads(buf.getvalue())


def test_cli_json_shape_and_out(tmp_path):
    rng = np.random.default_rng(5)
    space = random_space(rng, 3)
    table, meta = table_for(space, rng)
    uri = str(tmp_path / "scores")
    write_scores(table, uri, partitioned=True)
    R, loss, par, fl, lat, _ = brute(table, meta)
    limit = int(np.quantile(par, 0.5))
    out = str(tmp_path / "arch.json")
    d = _json(["search", uri, "--json", "--max-params", str(limit), "--top-k", "3", "--out", out])
    assert list(d) == ["architectures"]
    assert len(d["architectures"]) == 3
    a = d["architectures"][0]
    assert list(a) == ["loss", "params", "flops", "blocks", "arch_def"]
    assert all(list(b) == ["block", "cell", "ops"] for b in a["blocks"])
    assert a["params"] <= limit
    assert [x["loss"] for x in d["architectures"]] == sorted(x["loss"] for x in d["architectures"])
    want = np.flatnonzero(par <= limit)[0]
    assert a["loss"] == loss[want] and a["params"] == par[want] and a["flops"] == fl[want]
    arch = Architecture.load(out)
    choices = [BlockChoice.from_json(b) for b in a["blocks"]]
    assert arch.arch_def == space.arch_def(choices) == a["arch_def"]
    assert arch.choices == choices
    assert arch.extra["loss"] == a["loss"] and arch.extra["params"] == a["params"]
    assert arch.extra["teacher"] == "t" and arch.extra["generation"] == 0
    assert arch.resolution == space.resolution
    # human numbers, lambdas, Pareto
    d2 = _json(["search", uri, "--json", "--max-params", f"{limit / 1e3}k", "--lambdas", "1,1,1"])
    assert d2["architectures"][0]["blocks"] == a["blocks"]
    front = _json(["search", uri, "--json", "--pareto", "--cost", "flops"])["architectures"]
    assert [x["flops"] for x in front] == sorted(x["flops"] for x in front)
    assert all(x["loss"] > y["loss"] for x, y in itertools.pairwise(front))


def test_cli_text_output(tmp_path, capsys):
    table, meta = small()
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    assert main(["search", uri, "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    assert "loss" in text and "params" in text and len(text.strip().splitlines()) == 3


def test_run_search_plain_function(tmp_path):
    from dna.search.run import parse_count, run_search

    assert parse_count("5M") == 5_000_000 and parse_count("400M") == 400_000_000
    assert parse_count("5e6") == 5_000_000 and parse_count("1.5k") == 1500 and parse_count(7) == 7
    table, meta = small()
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    d = run_search(uri, top_k=2)
    assert len(d["architectures"]) == 2
    assert [r.to_json() for r in search(uri, top_k=2)] == d["architectures"]  # a URI works too
    # a partitioned dataset read without read_scores (dictionary-typed block column) works too
    from dna import storage

    write_scores(table, str(tmp_path / "part"), partitioned=True)
    raw = storage.read_table(str(tmp_path / "part"))
    assert search(raw, meta)[0].choices == search(table, meta)[0].choices
    with pytest.raises(DnaError, match="--out writes one architecture"):
        run_search(uri, pareto=True, out=str(tmp_path / "a.json"))


def test_searched_arch_keeps_the_rating_resolution(tmp_path):
    """A net rated (and costed) at 64 px is a 64 px net, whatever the space's default: DNA+ scales
    the resolution from there."""
    import dataclasses

    rng = np.random.default_rng(3)
    space = random_space(rng, 2)
    table, meta = table_for(space, rng)
    meta = dataclasses.replace(meta, resolution=2 * space.resolution)
    uri = str(tmp_path / "s.parquet")
    write_scores(make_table({c: table.column(c).to_pylist() for c in table.column_names}, meta), uri)
    out = str(tmp_path / "arch.json")
    _json(["search", uri, "--json", "--out", out])
    assert Architecture.load(out).resolution == 2 * space.resolution


# ----- limits as data (dna.cost_registry) -------------------------------------------------------


def test_limits_mapping_equals_the_old_keywords(tmp_path):
    from dna.search.run import run_search

    table, meta = small()
    R, loss, par, fl, lat, _ = brute(table, meta)
    p, f = int(np.quantile(par, 0.6)), int(np.quantile(fl, 0.6))
    old = search(table, meta, max_params=p, max_flops=f, top_k=3)
    assert search(table, meta, limits={"params": p, "flops": f}, top_k=3) == old
    assert search(table, meta, max_params=p, limits={"flops": f}, top_k=3) == old
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    assert run_search(uri, limits={"params": str(p), "flops": f}, top_k=3)["architectures"] == \
        [r.to_json() for r in old] == run_search(uri, max_params=p, max_flops=f, top_k=3)["architectures"]
    with pytest.raises(DnaError, match="disagree"):
        search(table, meta, max_params=p, limits={"params": p + 1})


@pytest.mark.parametrize("limits", [{"parms": 5e6}, {"params": 5e6, "memory": 1}])
def test_unknown_limit_names_the_known_costs(tmp_path, limits):
    from dna.search.run import run_search

    table, meta = small()
    bad = next(k for k in limits if k != "params")
    with pytest.raises(DnaError, match=rf"unknown cost '{bad}'; expected some of \['params', 'flops'"):
        search(table, meta, limits=limits)
    uri = str(tmp_path / "s.parquet")
    write_scores(table, uri)
    with pytest.raises(DnaError, match=rf"unknown cost '{bad}'"):
        run_search(uri, limits=limits)


def test_run_config_limits_take_the_old_keys():
    import dataclasses

    from dna.generation import RunConfig

    cfg = RunConfig(root="r", max_params=4e5)
    assert cfg.limits == {"params": 4e5} and cfg.max_params == 4e5 and cfg.max_flops is None
    d = cfg.to_dict()
    assert d["limits"] == {"params": 4e5} and "max_params" not in d
    assert RunConfig.from_dict(d).limits == {"params": 4e5}
    old = RunConfig.from_dict({"root": "r", "max_flops": 1e6, "max_latency_ms": 5})
    assert old.limits == {"flops": 1e6, "latency_ms": 5.0} and old.max_latency_ms == 5.0
    both = RunConfig.from_dict({"root": "r", "max_params": 1e6, "limits": {"flops": 2e6}})
    assert both.limits == {"params": 1e6, "flops": 2e6}
    assert dataclasses.replace(both, max_params=3e6).limits == {"params": 3e6, "flops": 2e6}
    assert dataclasses.replace(both, limits={"flops": 1e6}).limits == {"flops": 1e6}
    with pytest.raises(DnaError, match=r"unknown cost 'parms'; expected some of \['params'"):
        RunConfig.from_dict({"root": "r", "limits": {"parms": 1}})
    with pytest.raises(DnaError, match="max_flops=-1"):
        RunConfig(root="r", limits={"flops": -1}).validate()
