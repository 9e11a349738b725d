"""Latency lookup tables: measuring, path sums, storage, add_latency and latency-limited search."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from dna.cli import main
from dna.errors import DnaError
from dna.rate.path_costs import PathCosts
from dna.rate.scores import ScoresMeta, make_table, read_scores, write_scores
from dna.search import search
from dna.search.latency import LatencyTable, add_latency, layer_key, space_layers
from dna.space import BlockChoice
from dna.space.mbconv import MBCONV_TINY

SPACE = MBCONV_TINY


@pytest.fixture(scope="module")
def lt() -> LatencyTable:
    return LatencyTable.measure(SPACE, device="cpu", warmup=1, repeats=3, threads=1)


@pytest.fixture(scope="module")
def scores():
    costs = PathCosts(SPACE)
    rng = np.random.default_rng(0)
    rows = {k: [] for k in ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops")}
    for k in range(len(SPACE.blocks)):
        for c, cell in enumerate(SPACE.blocks[k].cells):
            for ops in SPACE.paths(k, c):
                for w in SPACE.in_widths(k):
                    p, f = (costs.path(k, c, ops, w)[n] for n in ("params", "flops"))
                    for name, v in zip(rows, (k, c, "-".join(ops), w, cell.channels, float(rng.random()), p, f),
                                       strict=True):
                        rows[name].append(v)
    fp, ff = (costs.fixed()[n] for n in ("params", "flops"))
    meta = ScoresMeta(space=SPACE.to_json(), resolution=SPACE.resolution, fixed_params=fp, fixed_flops=ff,
                      teacher="efficientnet_b0", generation=0)
    return make_table(rows, meta), meta


def test_measure_covers_every_layer(lt):
    assert set(lt.layers) == set(space_layers(SPACE))
    assert len(lt.layers) == len(space_layers(SPACE)) > 20
    assert all(v > 0 for v in lt.layers.values()) and lt.fixed_ms > 0
    assert lt.device == "cpu" and lt.device_name and lt.torch_version == torch.__version__
    assert lt.resolution == SPACE.resolution and lt.batch_size == 1 and lt.threads == 1


def test_path_is_the_sum_of_its_layers(lt):
    k, c = 4, 1  # two layers, input width depends on block 3's cell
    for w in SPACE.in_widths(k):
        ops = ("k5e6", "k3e3")
        want = lt.layers[layer_key(SPACE, k, c, 0, ops[0], w)] + lt.layers[layer_key(SPACE, k, c, 1, ops[1], w)]
        assert lt.path(k, c, ops, w) == pytest.approx(want)
        assert lt.path(k, c, "k5e6-k3e3", w) == lt.path(k, c, ops, w)
    # the first layer's cost depends on the width handed over, later layers do not
    a, b = SPACE.in_widths(k)
    assert layer_key(SPACE, k, c, 0, "k3e3", a) != layer_key(SPACE, k, c, 0, "k3e3", b)
    assert layer_key(SPACE, k, c, 1, "k3e3", a) == layer_key(SPACE, k, c, 1, "k3e3", b)
    choices = [BlockChoice(i, 0, (SPACE.ops[0],) * b.cells[0].layers) for i, b in enumerate(SPACE.blocks)]
    total, w = lt.fixed_ms, SPACE.in_widths(0)[0]
    for ch in choices:
        total += lt.path(ch.block, ch.cell, ch.ops, w)
        w = SPACE.cell(ch.block, ch.cell).channels
    assert lt.predict(choices) == pytest.approx(total)
    with pytest.raises(DnaError, match="has no layer"):
        lt.path(1, 0, ["k3e3"], 999)


def test_save_load_roundtrip(lt, tmp_path):
    uri = str(tmp_path / "lat.json")
    lt.save(uri)
    back = LatencyTable.load(uri)
    assert back.layers == lt.layers and back.fixed_ms == lt.fixed_ms and back.space == lt.space
    assert back.device_name == lt.device_name and back.torch_version == lt.torch_version
    assert back.stat == "median" and back.repeats == 3 and back.threads == 1
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(DnaError, match="not a latency table"):
        LatencyTable.load(str(tmp_path / "bad.json"))
    d = lt.to_json()
    d["layers"][0]["ms"] = -1
    (tmp_path / "neg.json").write_text(json.dumps(d))
    with pytest.raises(DnaError, match="finite and >= 0"):
        LatencyTable.load(str(tmp_path / "neg.json"))


def test_bad_measure_arguments():
    with pytest.raises(DnaError, match="device 'tpu'"):
        LatencyTable.measure(SPACE, device="tpu")
    with pytest.raises(DnaError, match="repeats=0"):
        LatencyTable.measure(SPACE, repeats=0)
    with pytest.raises(DnaError, match="stat 'mean'"):
        LatencyTable.measure(SPACE, stat="mean")
    if not torch.cuda.is_available():
        with pytest.raises(DnaError, match="CUDA is not available"):
            LatencyTable.measure(SPACE, device="cuda")


def test_add_latency_and_latency_limited_search(lt, scores, tmp_path):
    table, meta = scores
    t2, m2 = add_latency(table, meta, lt)
    assert m2.fixed_latency_ms == lt.fixed_ms
    assert "latency_ms" in t2.column_names and t2.num_rows == table.num_rows
    d = t2.to_pydict()
    for i in range(0, t2.num_rows, 7):
        assert d["latency_ms"][i] == pytest.approx(lt.path(d["block"][i], d["cell"][i], d["ops"][i],
                                                           d["in_channels"][i]))
    # the metadata travels with the table (the rating stage writes only the table)
    uri = str(tmp_path / "scores")
    write_scores(t2, uri, partitioned=True)
    t3, m3 = read_scores(uri)
    assert m3.fixed_latency_ms == pytest.approx(lt.fixed_ms)
    # search honours the latency limit; it is exact (tests/test_search.py checks against brute force)
    (free,) = search(t3, m3)
    fastest = m3.fixed_latency_ms + min_chain(t3, "latency_ms")
    limit = (fastest + free.latency_ms) / 2
    (best,) = search(t3, m3, max_latency_ms=limit)
    assert best.latency_ms <= limit and best.loss >= free.loss
    assert best.latency_ms == pytest.approx(lt.predict(best.choices))
    with pytest.raises(DnaError, match=r"no architecture has latency_ms <= .* the smallest achievable is"):
        search(t3, m3, max_latency_ms=fastest * 0.99)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["search", uri, "--json", "--max-latency-ms", str(limit)]) == 0
    a = json.loads(buf.getvalue())["architectures"][0]
    assert list(a) == ["loss", "params", "flops", "latency_ms", "blocks", "arch_def"]
    assert a["latency_ms"] <= limit and a["blocks"] == [c.to_json() for c in best.choices]


def min_chain(table, column):
    """Smallest sum of ``column`` over width-chained rows (a tiny DP, independent of the search)."""
    d = table.to_pydict()
    best = {SPACE.in_widths(0)[0]: 0.0}
    for k in range(len(SPACE.blocks)):
        nxt = {}
        for i in range(table.num_rows):
            if d["block"][i] == k and d["in_channels"][i] in best:
                v = best[d["in_channels"][i]] + d[column][i]
                w = d["out_channels"][i]
                nxt[w] = min(nxt.get(w, np.inf), v)
        best = nxt
    return min(best.values())


def test_add_latency_rejects_other_resolution(lt, scores):
    table, meta = scores
    other = ScoresMeta(**{**meta.__dict__, "resolution": 64})
    with pytest.raises(DnaError, match="measured at 32 px, but the scores are rated at 64 px"):
        add_latency(table, other, lt)


def test_cli_latency_table(tmp_path):
    uri = str(tmp_path / "lat.json")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["latency-table", "mbconv-tiny", "--out", uri, "--repeats", "1", "--warmup", "0",
                     "--threads", "1", "--json"]) == 0
    d = json.loads(buf.getvalue())
    assert d["space"] == "mbconv-tiny" and d["device"] == "cpu" and d["layers"] == len(space_layers(SPACE))
    assert LatencyTable.load(uri).layers.keys() == set(space_layers(SPACE))
