"""How well a latency lookup table predicts whole-network latency.

Measures a ``LatencyTable`` of a space (every distinct candidate layer + the fixed stem/head),
builds random architectures of the space with ``build_model``, times each end to end on the same
device, and compares with the table's prediction (fixed part + sum of the chosen paths' layers):
Pearson and Spearman correlation, mean absolute and relative error. Records benchmarks/RESULTS.md
(## Latency).

Usage: python benchmarks/latency.py [--space mbconv-tiny|mbconv] [--device cpu|cuda] [--archs 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, record  # noqa: E402
from dna.model.arch import Architecture  # noqa: E402
from dna.model.efficientnet import build_model  # noqa: E402
from dna.search.latency import LatencyTable, time_module  # noqa: E402
from dna.space import BlockChoice, get_space  # noqa: E402


def random_choices(space, rng) -> list[BlockChoice]:
    out = []
    for k, b in enumerate(space.blocks):
        c = int(rng.integers(len(b.cells)))
        out.append(BlockChoice(k, c, tuple(str(o) for o in rng.choice(space.ops, b.cells[c].layers))))
    return out


def ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="mbconv-tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (table and networks alike)")
    p.add_argument("--stat", default="median", choices=("median", "min"),
                   help="statistic of the timed runs, for the table and the networks alike")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space = get_space(args.space)
    res = args.resolution or space.resolution

    t = time.perf_counter()
    lt = LatencyTable.measure(space, device=args.device, resolution=res, batch_size=args.batch_size,
                              warmup=args.warmup, repeats=args.repeats, stat=args.stat)
    t_table = time.perf_counter() - t
    print(f"latency table: {len(lt.layers)} layers + fixed parts ({lt.fixed_ms:.3f} ms) in {t_table:.1f} s "
          f"on {lt.device_name}", flush=True)

    rng = np.random.default_rng(args.seed)
    pred, meas = [], []
    t = time.perf_counter()
    for i in range(args.archs):
        choices = random_choices(space, rng)
        arch = Architecture.from_choices(space, choices)
        arch.resolution = res
        model = build_model(arch)
        m = time_module(model, (args.batch_size, 3, res, res), args.device, args.warmup, args.repeats, args.stat)
        pr = lt.predict(choices)
        pred.append(pr)
        meas.append(m)
        print(f"  arch {i:2d}: measured {m:8.3f} ms  predicted {pr:8.3f} ms", flush=True)
    t_archs = time.perf_counter() - t
    pred_a, meas_a = np.asarray(pred), np.asarray(meas)
    pearson = float(np.corrcoef(pred_a, meas_a)[0, 1])
    spearman = float(np.corrcoef(ranks(pred_a), ranks(meas_a))[0, 1])
    mae = float(np.abs(pred_a - meas_a).mean())
    mre = float((np.abs(pred_a - meas_a) / meas_a).mean())
    bias = float(((pred_a - meas_a) / meas_a).mean())
    print(f"Pearson {pearson:.3f}, Spearman {spearman:.3f}, MAE {mae:.3f} ms, mean relative error "
          f"{mre * 100:.1f}% (bias {bias * 100:+.1f}%)")

    threads = f", {args.threads} thread(s)" if args.device == "cpu" else ""
    body = "\n".join([
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} while running",
        f"Command: `python benchmarks/latency.py --space {args.space} --device {args.device} --archs {args.archs} "
        f"--repeats {args.repeats} --threads {args.threads} --stat {args.stat}`",
        "",
        f"Space `{space.name}` at {res} px, batch {args.batch_size}, on {args.device} ({lt.device_name}{threads}). "
        f"Table: {len(lt.layers)} distinct candidate layers + fixed stem/head ({lt.fixed_ms:.3f} ms), "
        f"measured in {t_table:.1f} s ({args.stat} of {args.repeats} runs each). {args.archs} random architectures "
        f"built with `build_model` and timed end to end ({t_archs:.1f} s).",
        "",
        "A sum-of-layers table times each layer alone (weights and input hot in cache) and misses "
        "what runs between layers, so it tends to under-predict on CPU, more so on a busy shared "
        "machine; the search uses its ranking.",
        "",
        "| Pearson r | Spearman rho | mean abs. error (ms) | mean rel. error | mean signed rel. error | measured range (ms) |",
        "|---|---|---|---|---|---|",
        f"| {pearson:.3f} | {spearman:.3f} | {mae:.3f} | {mre * 100:.1f}% | {bias * 100:+.1f}% | "
        f"{meas_a.min():.3f} - {meas_a.max():.3f} |",
    ])
    if not args.no_record:
        section = "Latency" if (args.space, args.device) == ("mbconv-tiny", "cpu") else \
            f"Latency ({args.space}, {args.device})"
        record(section, body)
    return {"pearson": pearson, "spearman": spearman, "mae_ms": mae, "mean_rel_error": mre}


if __name__ == "__main__":
    main()
