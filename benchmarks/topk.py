"""Top-k search time over table sizes, k and limits: the threshold enumeration vs the dominance layers.

For every built-in space (and ``mbconv-8op``: the 6-op space plus two ops, 162,640 rows, random
costs), a scores table with
every (path, input width) row, real params/FLOPs from the space family's cost counter (``--fake-costs``:
seeded random costs instead) and seeded losses that fall with cost plus noise (one draw per path,
shared by its input widths, as rating gives), then ``search`` for k in 1, 10, 100 under one limit
(params) and two (params and FLOPs), each loose (the 90% quantile of random architectures: prunes
little) and tight (the 10% quantile). Each answer is checked equal to the reference dominance
traversal (``reference_search``), whose time is printed too unless ``--no-reference``.
Figures go to benchmarks/RESULTS.md (## Top-k search).

Usage: python benchmarks/topk.py [--spaces mbconv,mbconv-tiny,...] [--repeats 3] [--no-reference] [--no-record]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import timed  # noqa: E402
from dna.rate.scores import ScoresMeta, make_table  # noqa: E402
from dna.search.traversal import Problem, reference_search, search  # noqa: E402
from dna.space import get_family, get_space  # noqa: E402

COLS = ("block", "cell", "ops", "in_channels", "out_channels", "loss", "params", "flops")
SPACES = ("mbconv", "mbconv4", "mbconv-tiny", "uir", "uir-tiny", "vit", "vit-tiny", "mbconv-8op")
WIDE = "mbconv-8op"  # mbconv plus k3e4 and k5e4: 162,640 rows (always with seeded random costs)


def wide_space():
    import dataclasses

    s = get_space("mbconv")
    return dataclasses.replace(s, name=WIDE, ops=(*s.ops, "k3e4", "k5e4"))


def space_rows(space):
    """(block, cell, ops, out width) of every path of ``space``, in rating's order."""
    out = []
    for k in range(len(space.blocks)):
        cells = getattr(space.blocks[k], "cells", None)
        if cells is None:  # ViT: one cell, a path is heads/ratio/depth, its width from the heads
            out += [(k, 0, p.ops, space.out_width(k, p)) for p in space.paths(k)]
        else:
            out += [(k, c, "-".join(ops), cell.channels) for c, cell in enumerate(cells)
                    for ops in space.paths(k, c)]
    return out


def space_table(space, seed: int = 0, noise: float = 0.05, real_costs: bool = True, ties: bool = False):
    """A scores table of every (path, input width) row of ``space`` with seeded losses.

    Costs: the family's counter (``real_costs``) or seeded random integers. Loss of a path = 0.5 -
    0.1 z + N(0, noise), z the standardised log params + log FLOPs within its block, the same for
    all its input widths; ``ties``: losses and costs from a few small integers (many exact ties).
    """
    space = get_space(space)
    rng = np.random.default_rng(seed)
    counter = get_family(space).path_costs(space, space.resolution) if real_costs else None
    rows: dict[str, list] = {c: [] for c in COLS}
    for k, c, ops, width in space_rows(space):
        for w in space.in_widths(k):
            if counter is not None:
                d = counter.path(k, c, ops.split("-"), w)
                p, f = int(d["params"]), int(d["flops"])
            elif ties:
                p, f = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            else:
                p, f = int(rng.integers(1_000, 400_000)), int(rng.integers(100_000, 60_000_000))
            for col, v in zip(COLS, (k, c, ops, w, width, 0.0, p, f), strict=True):
                rows[col].append(v)
    blk = np.asarray(rows["block"])
    if ties:
        loss = rng.integers(0, 4, len(blk)).astype(float)
    else:
        z = np.log(np.asarray(rows["params"], float)) + np.log(np.asarray(rows["flops"], float))
        loss = np.zeros(len(blk))
        for k in range(len(space.blocks)):
            sel = blk == k
            loss[sel] = 0.5 - 0.1 * (z[sel] - z[sel].mean()) / (z[sel].std() or 1.0)
        keys = list(zip(rows["block"], rows["cell"], rows["ops"], strict=True))
        uniq = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        pid = np.asarray([uniq[key] for key in keys])
        loss = np.bincount(pid, loss)[pid] / np.bincount(pid)[pid] + rng.normal(0, noise, len(uniq))[pid]
    rows["loss"] = loss.tolist()
    if counter is not None:
        fixed = counter.fixed()
        fp, ff = int(fixed["params"]), int(fixed["flops"])
    else:
        fp, ff = 1_000_000, 50_000_000
    meta = ScoresMeta(space=space.to_json(), resolution=space.resolution, fixed_params=fp, fixed_flops=ff,
                      teacher="synthetic", generation=0)
    return make_table(rows, meta), meta


def random_totals(P: Problem, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Totals (fixed part included) of ``n`` uniformly drawn architectures: to place limits."""
    rng = np.random.default_rng(seed)
    tot = {d: np.full(n, P.fixed[d], float) for d in ("params", "flops")}
    w = np.full(n, P.first_width)
    for k in range(P.n_blocks):
        pick = np.empty(n, np.int64)
        for w_in in np.unique(w):
            rows = np.concatenate([r for (a, _), r in P.groups[k].items() if a == w_in])
            sel = np.flatnonzero(w == w_in)
            pick[sel] = rows[rng.integers(0, len(rows), len(sel))]
        for d in tot:
            tot[d] += P.costs[d][pick]
        w = P.out_ch[pick]
    return tot


def queries(P: Problem):
    tot = random_totals(P, 4000)
    for tight, q in (("loose", 0.9), ("tight", 0.1)):
        mp, mf = (float(np.quantile(tot[d], q)) for d in ("params", "flops"))
        yield f"params ({tight})", {"params": mp}
        yield f"params+FLOPs ({tight})", {"params": mp, "flops": mf}


def _reference_child(P, lim, k, conn) -> None:
    t = time.perf_counter()
    res = reference_search(P, limits=lim, top_k=k)
    conn.send((time.perf_counter() - t, [(r.loss, r.choices) for r in res]))


def reference(P: Problem, lim: dict, k: int, timeout: float):
    """(seconds, [(loss, choices)]) of the reference traversal, run in a forked child that is
    stopped after ``timeout`` s: then (inf, None)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_reference_child, args=(P, lim, k, send))
    proc.start()
    got = recv.recv() if recv.poll(timeout) else (math.inf, None)
    proc.terminate()
    proc.join()
    return got


def _show(ref: float, timeout: float) -> str:
    return f"> {timeout:g} s (stopped)" if math.isinf(ref) else f"{ref:.3f} s"


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default=",".join(SPACES), help="built-in spaces, comma-separated (default: all)")
    p.add_argument("--ks", default="1,10,100", help="k values (default 1,10,100)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per query, median reported (default 3)")
    p.add_argument("--fake-costs", action="store_true", help="seeded random costs instead of counted ones")
    p.add_argument("--no-reference", action="store_true", help="skip timing the reference dominance traversal")
    p.add_argument("--reference-timeout", type=float, default=30.0,
                   help="stop a reference query after this many seconds (default 30)")
    p.add_argument("--no-record", action="store_true", help="print only, do not write RESULTS.md")
    p.add_argument("--note", default="", help="a line recorded under the machine, e.g. what else ran on it")
    args = p.parse_args(argv)
    ks = [int(x) for x in args.ks.split(",")]
    out = []
    for name in args.spaces.split(","):
        t = time.perf_counter()
        if name == WIDE:
            table, meta = space_table(wide_space(), real_costs=False)
        else:
            table, meta = space_table(name, real_costs=not args.fake_costs)
        P = Problem(table, meta)
        print(f"# {name}: {table.num_rows:,} rows, {P.count():.3g} architectures "
              f"(table built in {time.perf_counter() - t:.1f} s)", flush=True)
        for label, lim in queries(P):
            for k in ks:
                k = min(k, P.count())
                sec, got = timed(lambda P=P, lim=lim, k=k: search(P, limits=lim, top_k=k), args.repeats)
                ref = None
                if not args.no_reference:
                    ref, want = reference(P, lim, k, args.reference_timeout)
                    if want is not None and [(g.loss, g.choices) for g in got] != want:
                        raise SystemExit(f"MISMATCH with the reference: {name} {label} top-{k}")
                row = (name, table.num_rows, label, k, sec, ref)
                out.append(row)
                print(f"{name:12s} {table.num_rows:7,d} rows  {label:22s} k={k:<4d} {sec:8.3f} s"
                      + (f"   reference {_show(ref, args.reference_timeout)}" if ref is not None else ""),
                      flush=True)
    if not args.no_record:
        from benchmarks._machine import machine, record

        body = [
            f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} while running",
            *([args.note] if args.note else []),
            f"Command: `python benchmarks/topk.py --spaces {args.spaces} --ks {args.ks} --repeats {args.repeats}"
            + (" --fake-costs" if args.fake_costs else "") + "`",
            "",
            "`search` (threshold enumeration, `dna.search.topk`) vs the reference dominance traversal "
            "(`reference_search`, timed once in a forked child, stopped after "
            f"{args.reference_timeout:g} s). Limits at the 90% (loose) and 10% (tight) quantile of the totals "
            "of 4,000 random architectures. Every answer the reference gave equals search's. Seconds, "
            f"median of {args.repeats} runs, Problem built beforehand.",
            "",
            "| space | rows | limits | k | search (s) | reference (s) |",
            "|---|---|---|---|---|---|",
        ]
        body += [f"| {n} | {r:,} | {lab} | {k} | {s:.3f} | "
                 f"{'' if ref is None else _show(ref, args.reference_timeout).removesuffix(' s')} |"
                 for n, r, lab, k, s, ref in out]
        record("Top-k search", "\n".join(body))
    return out


if __name__ == "__main__":
    main()
