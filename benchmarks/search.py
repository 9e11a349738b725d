"""Traversal search on a full-size scores table, and exactness against brute force.

Builds a realistic scores table of the 6-op `mbconv` space (every path of every cell, every input
width: 41,448 rows, about 2e17 architectures) with real params/FLOPs from timm layers
(``PathCosts``) and seeded random losses that fall with cost plus noise, then times the exact
search under one limit, two limits, top-10 and the whole Pareto front. It then checks the search
against brute-force enumeration on reduced spaces (slices of `mbconv` with real costs, several
seeds and limits). Figures go to benchmarks/RESULTS.md (## Search).

Usage: python benchmarks/search.py [--seed 0] [--repeats 5] [--brute-seeds 4] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, record  # noqa: E402
from benchmarks._timing import timed  # noqa: E402
from dna.rate.path_costs import PathCosts  # noqa: E402
from dna.rate.scores import ScoresMeta, make_table, read_scores, write_scores  # noqa: E402
from dna.search import Problem, pareto_front, search  # noqa: E402
from dna.space import get_space  # noqa: E402
from dna.space.mbconv import MBConvSpace  # noqa: E402

COLS = ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops")


def scores_table(space: MBConvSpace, seed: int = 0, noise: float = 0.05, costs: PathCosts | None = None):
    """Every (path, input width) row of ``space`` with real costs and a seeded loss.

    Loss of a path (the same for all its input widths, as in rating: the teacher feeds the block)
    = 0.5 - 0.1 * z + N(0, noise), z the standardised log params + log FLOPs within its block.
    """
    rng = np.random.default_rng(seed)
    costs = costs or PathCosts(space)
    rows: dict[str, list] = {k: [] for k in COLS}
    for k in range(len(space.blocks)):
        for c, cell in enumerate(space.blocks[k].cells):
            for ops in space.paths(k, c):
                name = "-".join(ops)
                for w in space.in_widths(k):
                    p, f = (costs.path(k, c, ops, w)[n] for n in ("params", "flops"))
                    for col, v in zip(COLS, (k, c, name, w, cell.channels, 0.0, p, f), strict=True):
                        rows[col].append(v)
    blk = np.asarray(rows["block"])
    z = np.log(np.asarray(rows["params"], float)) + np.log(np.asarray(rows["flops"], float))
    loss = np.zeros(len(blk))
    for k in range(len(space.blocks)):
        sel = blk == k
        zz = z[sel]
        loss[sel] = 0.5 - 0.1 * (zz - zz.mean()) / (zz.std() or 1.0)
    # one noise draw per path, shared by its input-width variants; loss = mean over them + noise
    keys = list(zip(rows["block"], rows["cell"], rows["ops"], strict=True))
    uniq = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    pid = np.asarray([uniq[key] for key in keys])
    mean = np.bincount(pid, loss) / np.bincount(pid)
    rows["loss"] = (mean[pid] + rng.normal(0, noise, len(uniq))[pid]).tolist()
    fp, ff = (costs.fixed()[n] for n in ("params", "flops"))
    meta = ScoresMeta(space=space.to_json(), resolution=costs.resolution, fixed_params=fp, fixed_flops=ff,
                      teacher="synthetic", generation=0)
    return make_table(rows, meta), meta


def brute_force(table, meta):
    """Every architecture of a (small) table: rows matrix and totals, in the search's order."""
    space = get_space(meta.space)
    nb = len(space.blocks)
    blk = table.column("block").to_numpy()
    w_in = table.column("in_channels").to_numpy()
    w_out = table.column("out_channels").to_numpy()
    chains = np.flatnonzero((blk == 0) & (w_in == space.in_widths(0)[0]))[:, None]
    for k in range(1, nb):
        parts = []
        for w in np.unique(w_out[chains[:, -1]]):
            c = chains[w_out[chains[:, -1]] == w]
            r = np.flatnonzero((blk == k) & (w_in == w))
            parts.append(np.concatenate([np.repeat(c, len(r), 0), np.tile(r, len(c))[:, None]], 1))
        chains = np.concatenate(parts)
    loss = np.zeros(len(chains))
    lo = table.column("loss").to_numpy()
    for k in range(nb):
        loss = loss + lo[chains[:, k]]
    par = meta.fixed_params + table.column("params").to_numpy()[chains].sum(1)
    fl = meta.fixed_flops + table.column("flops").to_numpy()[chains].sum(1)
    order = np.lexsort((*[chains[:, k] for k in reversed(range(nb))], fl, par, loss))
    return chains[order], loss[order], par[order], fl[order]


def result_rows(results, P: Problem):
    index = {}
    t = P.table.to_pydict()
    for i in range(P.table.num_rows):
        index[(t["block"][i], t["cell"][i], t["ops"][i], t["in_channels"][i])] = i
    out = []
    for r in results:
        rows, w = [], P.first_width
        for ch in r.choices:
            i = index[(ch.block, ch.cell, ch.ops_str, w)]
            rows.append(i)
            w = t["out_channels"][i]
        out.append(rows)
    return out


def reduced_spaces():
    """Slices of `mbconv` (real strides and widths, 3 ops) small enough to enumerate."""
    full = get_space("mbconv")
    ops = ("k3e3", "k5e6", "k7e3")
    return [
        MBConvSpace(name="mbconv[0:3]", ops=ops, blocks=full.blocks[0:3], resolution=224),
        MBConvSpace(name="mbconv[3:6]", ops=ops[:2], blocks=full.blocks[3:6], first_channels=80,
                    resolution=224),
        MBConvSpace(name="mbconv[1:3]", ops=ops, blocks=full.blocks[1:3], first_channels=24, resolution=224),
    ]


def check_brute(seeds: int) -> tuple[int, int]:
    cases = archs = 0
    for space in reduced_spaces():
        costs = PathCosts(space)
        for seed in range(seeds):
            table, meta = scores_table(space, seed=seed, noise=0.02 + 0.05 * seed, costs=costs)
            P = Problem(table, meta)
            R, loss, par, fl = brute_force(P.table, meta)
            archs += len(R)
            limits = [{}]
            for q in (0.05, 0.3, 0.7):
                limits += [{"max_params": int(np.quantile(par, q))}, {"max_flops": int(np.quantile(fl, q))},
                           {"max_params": int(np.quantile(par, q)), "max_flops": int(np.quantile(fl, 1 - q))}]
            for lim in limits:
                ok = np.ones(len(R), bool)
                if "max_params" in lim:
                    ok &= par <= lim["max_params"]
                if "max_flops" in lim:
                    ok &= fl <= lim["max_flops"]
                if not ok.any():
                    continue
                for k in (1, 5):
                    got = search(P, top_k=k, **lim)
                    want = np.flatnonzero(ok)[:k]
                    if result_rows(got, P) != R[want].tolist() or [g.loss for g in got] != loss[want].tolist():
                        raise SystemExit(f"MISMATCH on {space.name} seed {seed} {lim} top-{k}")
                    cases += 1
            for cost, arr in (("params", par), ("flops", fl)):
                got = pareto_front(P, cost=cost)
                run = np.minimum.accumulate(arr)
                keep = np.concatenate([[0], np.flatnonzero(arr[1:] < run[:-1]) + 1])
                keep = keep[np.lexsort((loss[keep], arr[keep]))]
                if result_rows(got, P) != R[keep].tolist():
                    raise SystemExit(f"MISMATCH on {space.name} seed {seed} pareto {cost}")
                cases += 1
    return cases, archs


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per query (median reported)")
    p.add_argument("--brute-seeds", type=int, default=4, help="seeds per reduced space for the brute-force check")
    p.add_argument("--max-params", type=float, default=5.3e6)
    p.add_argument("--max-flops", type=float, default=450e6)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    space = get_space("mbconv")
    t = time.perf_counter()
    table, meta = scores_table(space, seed=args.seed)
    t_build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"{tmp}/scores"
        write_scores(table, uri, partitioned=True)
        t_read, (table, meta) = timed(lambda: read_scores(uri), args.repeats)
    t_prep, P = timed(lambda: Problem(table, meta), args.repeats)
    mp, mf = int(args.max_params), int(args.max_flops)
    queries = [
        (f"params <= {mp / 1e6:g}M", lambda: search(P, max_params=mp)),
        (f"FLOPs <= {mf / 1e6:g}M", lambda: search(P, max_flops=mf)),
        (f"params <= {mp / 1e6:g}M and FLOPs <= {mf / 1e6:g}M", lambda: search(P, max_params=mp, max_flops=mf)),
        (f"top-10, params <= {mp / 1e6:g}M", lambda: search(P, max_params=mp, top_k=10)),
        (f"top-10, params <= {mp / 1e6:g}M and FLOPs <= {mf / 1e6:g}M",
         lambda: search(P, max_params=mp, max_flops=mf, top_k=10)),
        ("unconstrained", lambda: search(P)),
        ("Pareto front loss vs params", lambda: pareto_front(P, cost="params")),
        ("Pareto front loss vs FLOPs", lambda: pareto_front(P, cost="flops")),
    ]
    rows = []
    for name, fn in queries:
        sec, res = timed(fn, args.repeats)
        best = res[0] if not name.startswith("Pareto") else None
        detail = (f"loss {best.loss:.4f}, {best.params / 1e6:.3f}M params, {best.flops / 1e6:.1f}M FLOPs"
                  if best else f"{len(res)} architectures on the front")
        if name.startswith("top-10"):
            detail += f"; 10th loss {res[-1].loss:.4f}"
        rows.append((name, sec, detail))
        print(f"{name:55s} {sec * 1e3:8.1f} ms   {detail}", flush=True)
    t_one = time.perf_counter()
    search(table, meta, max_params=mp)
    t_one = time.perf_counter() - t_one
    print(f"one constrained search from the pyarrow table (Problem build included): {t_one * 1e3:.0f} ms")

    t = time.perf_counter()
    cases, archs = check_brute(args.brute_seeds)
    t_brute = time.perf_counter() - t
    print(f"brute force agrees on {cases} cases ({archs:,} architectures enumerated, {t_brute:.1f} s)")

    body = [
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} while running",
        f"Command: `python benchmarks/search.py --seed {args.seed} --repeats {args.repeats} "
        f"--brute-seeds {args.brute_seeds}`",
        "",
        f"Scores table of `mbconv` (6 ops): {table.num_rows:,} rows (every path of every cell x input width), "
        f"{space.count():.3g} architectures; real params/FLOPs from timm layers (table built in "
        f"{t_build:.1f} s), seeded losses falling with cost plus noise. Median of {args.repeats} runs.",
        "",
        "| query | time (ms) | result |",
        "|---|---|---|",
        f"| read_scores (partitioned Parquet) | {t_read * 1e3:.1f} | |",
        f"| Problem (validate, sort, group) | {t_prep * 1e3:.1f} | reused by the queries below |",
    ]
    body += [f"| {n} | {s * 1e3:.1f} | {d} |" for n, s, d in rows]
    body += [
        f"| params <= {mp / 1e6:g}M from the table (Problem included) | {t_one * 1e3:.1f} | |",
        "",
        f"Exactness: brute force agrees on {cases} cases (top-1 and top-5 under params, FLOPs and both "
        f"limits; loss-vs-params and loss-vs-FLOPs fronts) over {len(reduced_spaces())} reduced `mbconv` "
        f"slices x {args.brute_seeds} seeds ({archs:,} architectures enumerated).",
    ]
    if not args.no_record:
        record("Search", "\n".join(body))
    return {"rows": rows, "cases": cases}


if __name__ == "__main__":
    main()
