"""The speed of every stage, measured in one run and recorded as ratios (## Speed in RESULTS.md).

1. Rating: Algorithm 1 (feature sharing) vs per-path evaluation on one full 6-op cell of `mbconv`
   (block 3, cell 0: 3 layers, 216 paths; a smaller cell than benchmarks/rating.py's so this
   stays quick), same inputs, BN recalibrated per prefix.
2. Search: exact traversal on the full 6-op `mbconv` scores table (41,448 rows, real costs,
   synthetic losses from benchmarks/search.py), one params limit, and the Pareto front.
3. Supernet training throughput: images/s of one block-supernet step (teacher forward, every
   cell with a sampled path, MSE, backward, Adam) per block of `mbconv-tiny` at 32 px. On a GPU
   also bf16 autocast, channels_last and ``torch.compile`` on vs off; on CPU that code path is
   skipped with a note (the library runs fp32/contiguous there).
4. Parallel block training on Ray: ``components.fanout.fan_out_blocks("train", ...)`` of N
   blocks concurrently vs ``dna.generation.supernet_step`` of the same blocks one after another.
5. Teacher feature caching: not implemented (the teacher runs in every step); reported as such.

Usage: python benchmarks/speed.py [--skip-ray] [--steps 20] [--ray-blocks 2] [--ray-steps 30] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, record  # noqa: E402
from dna.rate.rating import rate_cell, rate_cell_per_path  # noqa: E402
from dna.space import get_space  # noqa: E402
from dna.supernet import BlockSupernet  # noqa: E402


def bench_rating(batch: int, size: int) -> dict:
    torch.manual_seed(0)
    space = get_space("mbconv")
    block, cell = 3, 0                      # (3 layers, c112): 6^3 = 216 paths
    net = BlockSupernet(space, block, 80, 112).eval()
    layers = [layer.candidates for layer in net.cells[cell].layers]
    xs = [torch.randn(batch, 80, size, size)]
    ys = [torch.randn(batch, 112, size, size)]
    t = time.perf_counter()
    shared = rate_cell(layers, space.ops, xs, ys, xs[:1])
    t_shared = time.perf_counter() - t
    t = time.perf_counter()
    naive = rate_cell_per_path(layers, space.ops, xs, ys, xs[:1])
    t_naive = time.perf_counter() - t
    worst = max(abs(shared.losses[k] - naive.losses[k]) for k in naive.losses)
    return {"paths": len(shared.losses), "evals_shared": shared.layer_evals, "evals_naive": naive.layer_evals,
            "s_shared": t_shared, "s_naive": t_naive, "speedup": t_naive / t_shared, "max_diff": worst}


def bench_search(repeats: int) -> dict:
    from benchmarks.search import scores_table, timed
    from dna.search import Problem, pareto_front, search

    space = get_space("mbconv")
    table, meta = scores_table(space, seed=0)
    t_prep, P = timed(lambda: Problem(table, meta), repeats)
    t_one, res = timed(lambda: search(P, max_params=5_300_000), repeats)
    t_front, front = timed(lambda: pareto_front(P, cost="params"), repeats)
    return {"rows": table.num_rows, "archs": space.count(), "s_problem": t_prep, "s_search": t_one,
            "s_front": t_front, "front": len(front), "best_params": res[0].params}


# ----- supernet training throughput -----------------------------------------------------------------
def block_step_throughput(block: int, teacher, space, device: torch.device, steps: int, batch: int,
                          amp: bool = False, channels_last: bool = False, compile_: bool = False) -> float:
    """images/s of the block-training step (as ``dna.train.block.train_block`` runs it)."""
    from dna.train.block import make_supernet

    torch.manual_seed(0)
    net = make_supernet(space, block, teacher).to(device)
    teacher = teacher.to(device)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    teacher = teacher.to(memory_format=mf)
    if compile_:                            # compile each candidate layer (the supernet's path varies)
        for cell in net.cells:
            for layer in cell.layers:
                for op in list(layer.candidates):
                    layer.candidates[op] = torch.compile(layer.candidates[op])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, space.resolution, space.resolution, device=device).to(memory_format=mf)
    warm = 2 + (len(space.ops) * 3 if compile_ else 0)     # compile every candidate before timing

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            inp, target = teacher.block_io(x, block)
            loss = 0.0
            for c, ops in enumerate(net.sample(gen)):
                loss = loss + F.mse_loss(net(inp, c, ops).float(), target.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warm):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def bench_throughput(steps: int, batch: int, tmp: str) -> dict:
    from dna.train.block import build_block_teacher
    from tests.helpers import tiny_teacher

    space = get_space("mbconv-tiny")
    tcfg = tiny_teacher(tmp)
    teacher = build_block_teacher(space, tcfg)
    out: dict = {"cpu": {}, "gpu": None, "note": ""}
    cpu = torch.device("cpu")
    for k in range(len(space.blocks)):
        out["cpu"][k] = block_step_throughput(k, teacher, space, cpu, steps, batch)
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        variants = {"fp32": {}, "bf16": {"amp": True}, "bf16+channels_last": {"amp": True, "channels_last": True},
                    "bf16+channels_last+compile": {"amp": True, "channels_last": True, "compile_": True}}
        out["gpu"] = {name: {k: block_step_throughput(k, teacher, space, dev, steps, 256, **kw)
                             for k in range(len(space.blocks))} for name, kw in variants.items()}
    else:
        out["note"] = ("no CUDA device here: the GPU variants (bf16 autocast, channels_last, torch.compile on vs "
                       "off) were skipped; the code path is `block_step_throughput(..., amp, channels_last, "
                       "compile_)` and runs when a GPU is present")
    return out


# ----- Ray fan-out vs sequential -------------------------------------------------------------------
def bench_ray(blocks: int, steps: int, tmp: str) -> dict:
    from components.fanout import fan_out_blocks
    from components.fanout.local_ray import init_local_ray
    from dna.data import DataConfig
    from dna.generation import RunConfig, supernet_step
    from tests.helpers import tiny_teacher

    tcfg = tiny_teacher(tmp)
    data = DataConfig(train_size=64 * steps, batch_size=64, val_size=64, rating_size=64)

    def cfg(root: str) -> RunConfig:
        return RunConfig(root=root, space="mbconv-tiny", data=data, block_epochs=1, block_max_steps=steps,
                         device="cpu")

    ids = list(range(blocks))
    t = time.perf_counter()
    supernet_step(cfg(f"{tmp}/seq"), 0, tcfg, blocks=ids)
    t_seq = time.perf_counter() - t
    # a busy shared box can take over a minute to start a worker group (Ray's default timeout: 60 s)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
    init_local_ray()
    t = time.perf_counter()
    metrics = fan_out_blocks("train", cfg(f"{tmp}/ray"), 0, tcfg, blocks=ids)
    t_ray = time.perf_counter() - t
    import ray

    ray.shutdown()
    spans = sorted((m["ray"]["started_at"], m["ray"]["finished_at"]) for m in metrics.values()
                   if "started_at" in m.get("ray", {}))
    overlap = len(spans) > 1 and spans[1][0] < spans[0][1]
    return {"blocks": blocks, "steps": steps, "s_seq": t_seq, "s_ray": t_ray, "ratio": t_seq / t_ray,
            "spans": spans, "overlap": overlap}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rating-batch", type=int, default=8)
    p.add_argument("--rating-size", type=int, default=14)
    p.add_argument("--search-repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="timed steps per block (throughput)")
    p.add_argument("--batch-size", type=int, default=64, help="CPU throughput batch")
    p.add_argument("--ray-blocks", type=int, default=2)
    p.add_argument("--ray-steps", type=int, default=30, help="steps per block in the Ray comparison")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.time()
    r: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        r["rating"] = bench_rating(args.rating_batch, args.rating_size)
        print("rating:", r["rating"], flush=True)
        r["search"] = bench_search(args.search_repeats)
        print("search:", r["search"], flush=True)
        r["throughput"] = bench_throughput(args.steps, args.batch_size, tmp)
        print("throughput:", r["throughput"], flush=True)
        if not args.skip_ray:
            r["ray"] = bench_ray(args.ray_blocks, args.ray_steps, tmp)
            print("ray:", r["ray"], flush=True)
    wall = time.time() - t_all
    if not args.no_record:
        record("Speed", report(args, argv, r, wall))
    return r


def report(args, argv, r: dict, wall: float) -> str:
    import ray
    import timm

    cmd = "python benchmarks/speed.py" + "".join(
        " " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} at the end (other jobs share the CPU)"
    except OSError:
        load = ""
    ra, se, th = r["rating"], r["search"], r["throughput"]
    lines = [
        f"Machine: {machine()}; timm {timm.__version__}, ray {ray.__version__}{load}",
        f"Command: `{cmd}` ({args.threads} torch thread(s); total {wall:.0f} s)",
        "",
        "| stage | measurement | figure |",
        "|---|---|---|",
        f"| rating | Algorithm 1 vs per path, 6-op 3-layer cell ({ra['paths']} paths), {args.rating_batch} images "
        f"at {args.rating_size}x{args.rating_size} | {ra['s_shared']:.1f} s vs {ra['s_naive']:.1f} s: "
        f"**{ra['speedup']:.1f}x** ({ra['evals_naive']} vs {ra['evals_shared']} layer evaluations, "
        f"{ra['evals_naive'] / ra['evals_shared']:.2f}x; max loss difference {ra['max_diff']:.1e}) |",
        f"| search | full 6-op `mbconv` table ({se['rows']:,} rows, {se['archs']:.2g} archs), params <= 5.3M "
        f"| {se['s_search'] * 1e3:.1f} ms (+ {se['s_problem'] * 1e3:.1f} ms to build the Problem); Pareto front "
        f"({se['front']} archs) {se['s_front'] * 1e3:.1f} ms |",
    ]
    cpu = th["cpu"]
    lines.append("| supernet training (CPU) | images/s per block of `mbconv-tiny` at 32 px, batch "
                 f"{args.batch_size}, fp32 | " + ", ".join(f"block {k}: {v:.0f}" for k, v in cpu.items()) + " |")
    if th["gpu"]:
        for name, per in th["gpu"].items():
            base = th["gpu"]["fp32"]
            lines.append(f"| supernet training (GPU, {name}) | images/s per block, batch 256 | " + ", ".join(
                f"block {k}: {v:.0f} ({v / base[k]:.2f}x fp32)" for k, v in per.items()) + " |")
    else:
        lines.append(f"| supernet training (GPU) | bf16 autocast, channels_last, torch.compile on vs off | skipped: "
                     f"{th['note']} |")
    if "ray" in r:
        ry = r["ray"]
        lines.append(f"| parallel block training | {ry['blocks']} blocks x {ry['steps']} steps of `mbconv-tiny` "
                     f"(batch 64): sequential `supernet_step` vs concurrent `fan_out_blocks` on a local Ray | "
                     f"{ry['s_seq']:.0f} s vs {ry['s_ray']:.0f} s: **{ry['ratio']:.2f}x** (the blocks' training "
                     f"spans {'overlapped' if ry.get('overlap') else 'did not overlap'}; "
                     f"per-block training {', '.join(f'{b - a:.0f} s' for a, b in ry.get('spans', []))}) |")
    else:
        lines.append("| parallel block training | skipped (`--skip-ray`) | |")
    lines.append("| teacher feature caching | not implemented: the frozen teacher runs in every block-training "
                 "step | n/a |")
    if "ray" in r and not r["ray"].get("overlap"):
        lines += ["", "On this overloaded 2-core box each block's Ray worker group waited for a CPU (start-up "
                  "retries, 'Failed to send resource request ... CPU being overloaded' in the log), so the two "
                  "blocks trained one after the other and Ray's start-up dominated: the figure measures Ray's "
                  "overhead here, not the benefit of fanning out (which needs one free core or GPU per block)."]
    lines += [
        "",
        "Ratios come from one run on a shared machine (other engineers' jobs were running), so absolute "
        "seconds are pessimistic. Each Ray block is one `TorchTrainer` fit whose worker-group start-up "
        "(~20 s on this box) is paid once per block; on two cores at most two blocks run at once, so "
        "the fan-out pays off only when a block's training is long against that start-up (real runs: "
        "hours per block on one GPU each).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
