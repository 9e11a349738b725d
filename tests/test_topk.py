"""Top-k by threshold enumeration (dna.search.topk) == brute force == the dominance traversal."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.topk import space_table
from dna.errors import DnaError
from dna.rate.scores import ScoresMeta, make_table
from dna.search import topk
from dna.search.traversal import MAX_TOP_K, Problem, reference_search, search
from dna.space import get_space
from dna.space.mbconv import Block, Cell, MBConvSpace

SUMMED = ("params", "flops", "latency_ms")


def random_space(rng, n_blocks: int) -> MBConvSpace:
    n_ops = 2 if n_blocks > 3 else int(rng.integers(2, 4))  # a few thousand architectures
    ops = tuple(rng.choice(["k3e3", "k3e6", "k5e3", "k5e6"], size=n_ops, replace=False))
    blocks = []
    for k in range(n_blocks):
        if k == n_blocks - 1:  # the head takes one width
            w = int(rng.choice([16, 24]))
            cells = tuple(Cell(int(rng.integers(1, 3)), w) for _ in range(int(rng.integers(1, 3))))
        else:
            cells = tuple(Cell(int(rng.integers(1, 3)), int(rng.choice([8, 16, 24])))
                          for _ in range(int(rng.integers(2, 4))))
        blocks.append(Block(cells, int(rng.choice([1, 2]))))
    return MBConvSpace(name="rand", ops=ops, blocks=tuple(blocks), stem_channels=8, first_channels=8,
                       head_channels=16, resolution=16, num_classes=4)


def random_table(space, rng, ties: bool):
    """Every (path, input width) row with random losses and costs (small integers with ``ties``),
    a latency and a peak-memory column, and fixed parts of each."""
    cols = ("block", "cell", "ops", "in_channels", "out_channels", "loss", *SUMMED, "act_mem")
    rows: dict[str, list] = {c: [] for c in cols}
    for k in range(len(space.blocks)):
        for c, cell in enumerate(space.blocks[k].cells):
            for ops in space.paths(k, c):
                for w in space.in_widths(k):
                    if ties:
                        vals = (float(rng.integers(0, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                float(rng.integers(1, 3)), int(rng.integers(1, 4)))
                    else:
                        vals = (float(rng.random()), int(rng.integers(100, 2000)), int(rng.integers(1000, 90000)),
                                float(rng.random()), int(rng.integers(100, 5000)))
                    for col, v in zip(cols, (k, c, "-".join(ops), w, cell.channels, *vals), strict=True):
                        rows[col].append(v)
    meta = ScoresMeta(space=space.to_json(), resolution=space.resolution, teacher="t", generation=0,
                      fixed={"params": 10, "flops": 100, "latency_ms": 0.5, "act_mem": 50})
    return make_table(rows, meta), meta


def brute(P: Problem):
    """Every architecture of a small table: its rows, objective summed block by block, summed
    costs (fixed parts excluded) and peak, sorted in the search's order."""
    nb = P.n_blocks
    chains = np.array([[r] for rows in (v for (w, _), v in P.groups[0].items() if w == P.first_width)
                       for r in rows], np.int64).reshape(-1, 1)
    for k in range(1, nb):
        parts = []
        for (w_in, _), rows in P.groups[k].items():
            c = chains[P.out_ch[chains[:, -1]] == w_in]
            parts.append(np.concatenate([np.repeat(c, len(rows), 0), np.tile(rows, len(c))[:, None]], 1))
        chains = np.concatenate(parts)
    obj = np.zeros(len(chains))
    sums = {d: np.zeros(len(chains), P.costs[d].dtype) for d in SUMMED if d in P.costs}
    for k in range(nb):
        obj = obj + P.loss[chains[:, k]]
        for d in sums:
            sums[d] = sums[d] + P.costs[d][chains[:, k]]
    peak = P.costs["act_mem"][chains].max(1)
    order = np.lexsort((*[chains[:, k] for k in reversed(range(nb))], *reversed(list(sums.values())), obj))
    return chains[order], obj[order], {d: v[order] for d, v in sums.items()}, peak[order]


def want(P: Problem, B, limits: dict, k: int):
    chains, obj, sums, peak = B
    ok = np.ones(len(chains), bool)
    for d, v in limits.items():
        ok &= (peak <= v) & (P.fixed[d] <= v) if d == "act_mem" else sums[d] <= v - P.fixed[d]
    idx = np.flatnonzero(ok)[:k]
    return [(float(obj[i]), chains[i].tolist()) for i in idx]


def got_rows(P: Problem, results):
    """Rows of each result (widths chained), with its loss."""
    key = {(int(P.block[i]), int(P.cell[i]), P.table.column("ops")[i].as_py(), int(P.in_ch[i])): i
           for i in range(len(P.block))}
    out = []
    for r in results:
        rows, w = [], P.first_width
        for c in r.choices:
            i = key[(c.block, c.cell, c.ops_str, w)]
            rows.append(i)
            w = int(P.out_ch[i])
        out.append((r.loss, rows))
    return out


def limit_sets(P: Problem, B, rng):
    """One, two, three and four limits (peak included), loose and tight, at quantiles of the totals."""
    _, _, sums, peak = B
    q = {d: (lambda x, d=d: float(np.quantile(sums[d], x)) + P.fixed[d]) for d in sums}
    qp = lambda x: float(np.quantile(peak, x))  # noqa: E731
    out = [{}]
    for lo in (0.1, 0.9):
        hi = float(rng.uniform(0.2, 1.0))
        out += [{"params": q["params"](lo)}, {"flops": q["flops"](lo)},
                {"params": q["params"](lo), "flops": q["flops"](hi)},
                {"params": q["params"](hi), "flops": q["flops"](lo), "latency_ms": q["latency_ms"](hi)},
                {"params": q["params"](lo), "act_mem": qp(hi)},
                {"params": q["params"](hi), "flops": q["flops"](hi), "latency_ms": q["latency_ms"](lo),
                 "act_mem": qp(0.5)}]
    return out


def check(P: Problem, rng, ks=(1, 2, 7, 40)) -> int:
    B = brute(P)
    n = len(B[0])
    cases = 0
    for limits in limit_sets(P, B, rng):
        feasible = len(want(P, B, limits, n))
        # k past the feasible count where that is small (building thousands of results is slow)
        extra = (feasible, feasible + 3) if feasible <= 200 else (200,)
        for k in sorted({min(x, n, MAX_TOP_K) for x in (*ks, *extra)}):
            if k < 1:
                continue
            expect = want(P, B, limits, k)
            if not expect:
                with pytest.raises(DnaError, match="no architecture"):
                    search(P, limits=limits, top_k=k)
                continue
            got = search(P, limits=limits, top_k=k)
            assert got_rows(P, got) == expect, (limits, k)
            for d in ("params", "flops"):
                assert [g.costs[d] for g in got] == [P.fixed[d] + int(P.costs[d][r].sum()) for _, r in expect]
            if k <= 7:
                ref = reference_search(P, limits=limits, top_k=k)
                assert [(r.loss, r.choices) for r in ref] == [(g.loss, g.choices) for g in got]
            cases += 1
    return cases


# ----- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_topk_equals_brute_force_random_tables(seed):
    rng = np.random.default_rng(100 + seed)
    space = random_space(rng, int(rng.integers(2, 5)))
    table, meta = random_table(space, rng, ties=seed % 2 == 0)
    P = Problem(table, meta)
    assert check(P, rng) > 25


def test_topk_equals_brute_force_on_the_default_space():
    """mbconv-tiny, the embedded default's (smoke preset) space: every block and cell, two paths
    per cell (a table of that space small enough to enumerate), seeded random losses and costs."""
    rng = np.random.default_rng(5)
    table, meta = space_table("mbconv-tiny", seed=5, real_costs=False)
    space = get_space("mbconv-tiny")
    t = table.to_pydict()
    pick = {(k, c): set(rng.choice(sorted({o for b, cc, o in zip(t["block"], t["cell"], t["ops"], strict=True)
                                             if (b, cc) == (k, c)}), 2, replace=False))
            for k in range(len(space.blocks)) for c in range(len(space.blocks[k].cells))}
    keep = [i for i in range(table.num_rows) if t["ops"][i] in pick[(t["block"][i], t["cell"][i])]]
    sub = {c: [t[c][i] for i in keep] for c in t}
    sub["latency_ms"] = rng.random(len(keep)).tolist()
    sub["act_mem"] = rng.integers(1000, 9000, len(keep)).tolist()
    meta = ScoresMeta(space=meta.space, resolution=meta.resolution, teacher="t", generation=0,
                      fixed={**meta.fixed, "latency_ms": 0.25, "act_mem": 10})
    P = Problem(make_table(sub, meta), meta)
    assert 1000 < P.count() < 200_000
    assert check(P, rng, ks=(1, 10, 100)) > 40


def test_full_default_space_table_matches_reference():
    """The whole 152-row mbconv-tiny table: loose limits (they prune nothing) give the unlimited
    top-k; tight ones agree with the dominance traversal."""
    table, meta = space_table("mbconv-tiny", seed=1, real_costs=False)
    P = Problem(table, meta)
    assert table.num_rows == 152
    loose = {"params": 1e12, "flops": 1e15}
    got = search(P, limits=loose, top_k=100)
    ref = reference_search(P, top_k=100)
    assert len(got) == 100
    assert [(g.loss, g.choices) for g in got] == [(r.loss, r.choices) for r in ref]
    best = search(P, top_k=1)[0]
    tight = {"params": best.params * 0.9, "flops": best.flops * 0.9}
    got = search(P, limits=tight, top_k=30)
    ref = reference_search(P, limits=tight, top_k=30)
    assert len(got) == 30
    assert [(g.loss, g.choices) for g in got] == [(r.loss, r.choices) for r in ref]
    assert all(g.params <= tight["params"] and g.flops <= tight["flops"] for g in got)


# ----- the work cap -------------------------------------------------------------------------


def test_a_tiny_cap_stays_exact(monkeypatch):
    """With the work cap forcing the threshold down (and the fallback when that loses some of
    the k best) the answer is still the exact one."""
    rng = np.random.default_rng(3)
    space = random_space(rng, 4)
    table, meta = random_table(space, rng, ties=False)
    P = Problem(table, meta)
    B = brute(P)
    limits = {"params": float(np.quantile(B[2]["params"], 0.5)) + P.fixed["params"]}
    expect = want(P, B, limits, 25)
    monkeypatch.setattr(topk, "CAP", 8)
    assert got_rows(P, search(P, limits=limits, top_k=25)) == expect
    # called directly: exact when it answers, None (caller falls back) when unsure
    obj = P.loss
    budgets = [limits["params"] - P.fixed["params"]]
    answered = 0
    for cap in (4, 8, 64, 4096):
        r = topk.top_k(P, obj, ["params"], budgets, 25, np.inf, None, known=[expect[0][0]], cap=cap)
        if r is not None:
            assert r == expect
            answered += 1
    assert answered >= 1


def test_the_fast_path_answers_realistic_tables(monkeypatch):
    """On a table shaped like a rated one it answers itself: the dominance traversal is not run."""
    table, meta = space_table("mbconv-tiny", seed=2, real_costs=False)
    P = Problem(table, meta)
    calls = []
    real = topk.top_k
    monkeypatch.setattr(topk, "top_k", lambda *a, **kw: calls.append(r := real(*a, **kw)) or r)
    best = search(P, top_k=1)[0]
    calls.clear()
    for limits in ({}, {"params": best.params * 1.1}, {"params": best.params * 0.9, "flops": best.flops}):
        search(P, limits=limits, top_k=100)
    assert len(calls) == 3 and all(c is not None and len(c) == 100 for c in calls)


def test_topk_beyond_the_table_is_an_error():
    rng = np.random.default_rng(0)
    table, meta = random_table(random_space(rng, 2), rng, ties=True)
    P = Problem(table, meta)
    with pytest.raises(DnaError, match=f"top_k={P.count() + 1}: the scores table holds only"):
        search(P, top_k=P.count() + 1)
