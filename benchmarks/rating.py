"""Algorithm 1 (feature-sharing rating) vs per-path evaluation on a full 6-op cell of 4 layers.

Prints the layer-evaluation counts, wall-clock speed-up and paths/second, and records them in
benchmarks/RESULTS.md. Usage: python benchmarks/rating.py [--batches 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, record  # noqa: E402
from dna.rate.rating import rate_cell, rate_cell_per_path  # noqa: E402
from dna.space import get_space  # noqa: E402
from dna.supernet import BlockSupernet  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=14, help="input feature-map size (block 3 of mbconv at 224 px)")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    space = get_space("mbconv")
    block, cell = 3, 1  # (4 layers, c112): 6^4 = 1296 paths
    net = BlockSupernet(space, block, 80, 112).eval()
    layers = [layer.candidates for layer in net.cells[cell].layers]
    xs = [torch.randn(args.batch_size, 80, args.size, args.size) for _ in range(args.batches)]
    ys = [torch.randn(args.batch_size, 112, args.size, args.size) for _ in range(args.batches)]
    calib = xs[:1]
    t = time.perf_counter()
    shared = rate_cell(layers, space.ops, xs, ys, calib)
    t_shared = time.perf_counter() - t
    t = time.perf_counter()
    naive = rate_cell_per_path(layers, space.ops, xs, ys, calib)
    t_naive = time.perf_counter() - t
    worst = max(abs(shared.losses[k] - naive.losses[k]) for k in naive.losses)
    paths = len(shared.losses)
    r = {
        "paths": paths,
        "layer_evals_shared": shared.layer_evals,
        "layer_evals_per_path": naive.layer_evals,
        "eval_ratio": naive.layer_evals / shared.layer_evals,
        "seconds_shared": t_shared,
        "seconds_per_path": t_naive,
        "speedup": t_naive / t_shared,
        "paths_per_s_shared": paths / t_shared,
        "paths_per_s_per_path": paths / t_naive,
        "max_abs_loss_diff": worst,
    }
    for k, v in r.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    if not args.no_record:
        record("Rating (Algorithm 1)", f"""
Machine: {machine()}
Command: `python benchmarks/rating.py --batches {args.batches} --batch-size {args.batch_size} --size {args.size}`

Full 6-op cell of 4 layers (block 3, cell 1 of `mbconv`: 1296 paths), {args.batches} x {args.batch_size} images
at {args.size}x{args.size} (80 -> 112 channels), BatchNorm recalibrated per prefix on one batch.

| | layer evaluations | seconds | paths/s |
|---|---|---|---|
| per path | {naive.layer_evals} | {t_naive:.2f} | {paths / t_naive:.1f} |
| Algorithm 1 (shared prefixes) | {shared.layer_evals} | {t_shared:.2f} | {paths / t_shared:.1f} |

Speed-up {r['speedup']:.2f}x (evaluation ratio {r['eval_ratio']:.2f}x); largest loss difference {worst:.2e}.
""")
    return r


if __name__ == "__main__":
    main()
