"""Ranking quality against a validated ground truth (SPEC section 10, issue #11): DNA vs SPOS vs
random vs params-only vs FLOPs-only, and DNA search vs random search under one params budget.

The setup, and why (the old benchmark's ground truth was optimisation noise: tau 0.03 between
training seeds, so its verdicts were void):

1. Space ``rank-bench16`` (``BENCH_TABLE`` below, data): 3 blocks, 2 cells each of 2-3 layers (so
   the rated interior of every cell runs at the student's own width, as in the paper's Table 1), 2
   widths per block (the last block one width, two depths: the head's input is fixed), OPS4, stride
   matched to 16 px input (8x8 after the stem, 2x2 at the head).
2. Teacher outside the space and stronger: per block twice the deepest cell's layers at 1.5x the
   widest width (``teacher_arch_def``, checked by ``teacher_outside_space``), trained to a plateau
   on more images of the same distribution than the students (``--teacher-train-size``, as a real
   teacher is pretrained on more data than the search sees). Its top-1 is printed beside the best
   stand-alone candidate's; if it is not better the run stops (exit 4, no verdict).
3. Architectures stratified by parameter count over the space's whole cost range (cheapest and
   dearest included; costs from ``dna.rate.path_costs``, the modules the final model builds), plus
   nested pairs of known order (``nested_pairs``) as sanity checks.
4. Ground truth: every architecture trained stand-alone (``RetrainConfig.fast``, 16 px, 20 epochs,
   val split 2,000 images) with 3 training seeds; a run's score is the mean val top-1 of its last
   3 epochs (only those are evaluated: ``eval_epochs=3``), the architecture's the mean over seeds. Cached as
   one Parquet file per (architecture, seed) under ``--cache`` (``gt-<settings hash>/``), written by
   the job itself, so interrupted runs and reruns reuse every finished training. The rows measured
   for RESULTS.md are kept in the repository (``benchmarks/ground_truth/``, ``--stored``), so a
   fresh clone with the default settings trains only the teacher and the predictors.
5. Validity gate before any comparison (``benchmarks/ranking_stats.py``): seed-to-seed Kendall tau
   >= 0.5, Spearman-Brown reliability of the 3-seed mean >= 0.8, every nested pair in order in >= 2
   of 3 seeds. Otherwise: "ground truth invalid", the figures, exit 3 and no verdict.
6. Predictors: DNA (library ``supernet_step`` + ``rate_step``, score = sum of rated block losses),
   SPOS (``benchmarks/spos.py``, the same number of steps as one DNA block), random (3 seeds),
   params-only and FLOPs-only (deterministic, so one "seed").
7. Verdict: tau(DNA) - tau(baseline) with a 95% bootstrap CI resampling architectures and seeds,
   beside the ground-truth ceiling (seed-to-seed tau).
8. Search vs random search: under the params budget at the middle of the cost range, the
   architecture ``dna.search`` finds in the first DNA seed's scores table and ``--random-archs``
   random architectures within +-10% of the budget are retrained with the ground-truth recipe and
   seeds; the searched net's top-1 and rank among them are reported.

Every job (a stand-alone training, the teacher, one seed of DNA or SPOS) is a single-threaded
process; ``--jobs`` of them run at once. ``--only-ground-truth`` fills the caches and stops.

Usage: python benchmarks/ranking.py [--space rank-bench16|NAME|FILE.json|'{json}'] [--data URI]
       [--archs 20] [--arch-seed 0] [--data-seed 0] [--epochs 20] [--gt-seeds 0 1 2] [--seeds 0 1 2]
       [--supernet-steps 500] [--block-norm none|mean] [--jobs 2] [--cache benchmarks/cache] [--out DIR]
       [--supernets-from DIR] [--only-ground-truth]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ranking_stats as rs  # noqa: E402
from benchmarks._machine import machine, record  # noqa: E402
from dna.errors import DnaError  # noqa: E402
from dna.random_baseline import ArchCosts  # noqa: E402
from dna.space import get_space, space_from_json  # noqa: E402
from dna.space.mbconv import OPS4, BlockChoice, MBConvSpace, Op, _blocks  # noqa: E402

HERE = Path(__file__).resolve().parent

# The benchmark space as data: (stride, [(layers, channels) per cell]) per block. 16 px input:
# stem stride 2 -> 8x8, block strides 1, 2, 2 -> 2x2 at the head. 80 paths per block, 512,000
# architectures, 55k-337k params (6.2x).
BENCH_TABLE = [
    (1, [(2, 8), (3, 24)]),
    (2, [(2, 16), (3, 48)]),
    (2, [(2, 64), (3, 64)]),
]
BENCH_SPACE = MBConvSpace(name="rank-bench16", ops=OPS4, blocks=_blocks(BENCH_TABLE), stem_channels=16,
                          first_channels=8, head_channels=128, resolution=16, num_classes=10)
TEACHER_DEPTH = 2.0     # teacher layers per block >= this x the deepest cell's
TEACHER_WIDTH = 1.5     # teacher width per block >= this x the widest cell's
METHODS = ("DNA", "SPOS", "random", "params", "FLOPs")
DETERMINISTIC = ("params", "FLOPs")
EXIT_INVALID_GT, EXIT_WEAK_TEACHER = 3, 4


def load_space(spec: str) -> MBConvSpace:
    """A space of cells (mbconv, uir) by name, JSON text or .json URI."""
    from dna.space import get_family

    if spec == BENCH_SPACE.name:
        return BENCH_SPACE
    space = space_from_json(json.loads(spec)) if spec.lstrip().startswith("{") else get_space(spec)
    if get_family(space).joint_teacher:
        raise SystemExit(f"space {space.name!r}: DNA++ (ViT) spaces are not supported, only spaces of cells")
    return space


def arch_key(arch) -> str:
    return json.dumps([c.to_json() for c in arch])


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----- costs, sampling, nested pairs -------------------------------------------------------------
def extremes(space: MBConvSpace, costs: ArchCosts) -> list[list[BlockChoice]]:
    """For every combination of cells, the path with the fewest and the most params (a layer's
    params depend only on its op, its width and its input width, so the per-layer choice is exact):
    the space's cheapest and dearest architectures are among them."""
    out = []
    for cells in itertools.product(*(range(len(b.cells)) for b in space.blocks)):
        for pick in (min, max):
            arch, width = [], space.first_channels
            for k, c in enumerate(cells):
                cell = space.cell(k, c)
                ops = tuple(pick(space.ops, key=lambda o, i=i, w=width: costs.layer_params(k, c, i, o, w))
                            for i in range(cell.layers))
                arch.append(BlockChoice(k, c, ops))
                width = cell.channels
            out.append(arch)
    return out


def candidate_pool(space: MBConvSpace, costs: ArchCosts, n_random: int, seed: int) -> list[list[BlockChoice]]:
    """The extremes plus ``n_random`` architectures drawn with a uniform cell per block and a
    uniform op per layer (distinct, seeded): what the stratified sample picks from."""
    rng = random.Random(seed)
    pool, seen = [], set()
    for arch in extremes(space, costs):
        if arch_key(arch) not in seen:
            seen.add(arch_key(arch))
            pool.append(arch)
    tries = 0
    target = min(len(pool) + n_random, space.count())
    while len(pool) < target and tries < 20 * n_random:
        tries += 1
        arch = []
        for k, b in enumerate(space.blocks):
            c = rng.randrange(len(b.cells))
            arch.append(BlockChoice(k, c, tuple(rng.choice(space.ops) for _ in range(b.cells[c].layers))))
        if arch_key(arch) not in seen:
            seen.add(arch_key(arch))
            pool.append(arch)
    return pool


def sample_archs(space: MBConvSpace, n: int, seed: int = 0, costs: ArchCosts | None = None,
                 pool_size: int = 4000) -> list[list[BlockChoice]]:
    """``n`` architectures stratified by params over the space's whole range (cheapest and dearest
    first), seeded."""
    if n < 2:
        raise SystemExit(f"--archs {n}: need >= 2 (the cheapest and the dearest architecture)")
    if n > space.count():
        raise SystemExit(f"--archs {n}: the space has only {space.count()} architectures")
    costs = costs or ArchCosts(space)
    pool = candidate_pool(space, costs, pool_size, seed)
    params = [costs(a)["params"] for a in pool]
    return [pool[i] for i in rs.stratified_pick(params, n, seed)]


def _expansion_pair(ops) -> tuple[str, str] | None:
    """Two ops with the same kernel and different expansion (smaller first), if the space has them."""
    try:
        parsed = [Op.parse(o) for o in ops]
    except DnaError:
        return None
    for a, b in itertools.combinations(sorted(parsed, key=lambda o: (o.kernel, o.expand)), 2):
        if a.kernel == b.kernel and a.expand < b.expand:
            return a.name, b.name
    return None


def nested_pairs(space: MBConvSpace, costs: ArchCosts) -> list[tuple[str, list[BlockChoice], list[BlockChoice]]]:
    """Pairs (name, larger, smaller) where the larger net contains the smaller one's function class,
    so more capacity should not rank lower: cheapest vs dearest; the same cells with a larger
    expansion everywhere; the deepest-and-widest cell vs the shallowest-and-narrowest everywhere."""
    ex = extremes(space, costs)
    by_params = sorted(ex, key=lambda a: costs(a)["params"])
    pairs = [("min<max", by_params[-1], by_params[0])]
    e = _expansion_pair(space.ops)
    if e:
        small = [BlockChoice(k, 0, (e[0],) * b.cells[0].layers) for k, b in enumerate(space.blocks)]
        big = [BlockChoice(k, 0, (e[1],) * b.cells[0].layers) for k, b in enumerate(space.blocks)]
        pairs.append((f"{e[0]}<{e[1]}", big, small))
    lo = [min(range(len(b.cells)), key=lambda c, b=b: (b.cells[c].layers, b.cells[c].channels)) for b in space.blocks]
    hi = [max(range(len(b.cells)), key=lambda c, b=b: (b.cells[c].layers, b.cells[c].channels)) for b in space.blocks]
    nested = all(b.cells[h].layers >= b.cells[l_].layers and b.cells[h].channels >= b.cells[l_].channels
                 for b, h, l_ in zip(space.blocks, hi, lo, strict=True)) and hi != lo
    if nested:
        op = e[1] if e else space.ops[0]
        pairs.append(("shallow<deep",
                      [BlockChoice(k, c, (op,) * space.cell(k, c).layers) for k, c in enumerate(hi)],
                      [BlockChoice(k, c, (op,) * space.cell(k, c).layers) for k, c in enumerate(lo)]))
    return pairs


# ----- teacher ------------------------------------------------------------------------------------
def teacher_arch_def(space: MBConvSpace) -> list[list[str]]:
    """A teacher outside the space: one stage per block at the block's stride (so the block split
    holds), ``TEACHER_DEPTH`` x the deepest cell's layers at ``TEACHER_WIDTH`` x the widest width,
    k3e6 layers."""
    se = f"_se{space.se_ratio:g}" if space.se_ratio else ""
    stages = [space.first_stage()]
    for b in space.blocks:
        layers = math.ceil(TEACHER_DEPTH * max(c.layers for c in b.cells))
        width = math.ceil(TEACHER_WIDTH * max(c.channels for c in b.cells))
        stages.append([f"ir_r{layers}_k3_s{b.stride}_e6_c{width}{se}"])
    return stages


def _stage(strings: list[str]) -> tuple[int, int, int]:
    """(layers, output width, stride) of one arch_def stage of timm block strings."""
    import re

    layers, width, stride = 0, 0, 1
    for i, s in enumerate(strings):
        r, c, st = re.search(r"_r(\d+)", s), re.search(r"_c(\d+)", s), re.search(r"_s(\d+)", s)
        if not (r and c and st):
            raise DnaError(f"teacher block string {s!r}: expected timm's '<type>_r<N>_..._s<S>_..._c<C>' form")
        layers += int(r.group(1))
        width = int(c.group(1))
        if i == 0:
            stride = int(st.group(1))
    return layers, width, stride


def _op(block_str: str) -> str:
    """The ``k<kernel>e<expansion>`` op of one timm block string (``e1`` when it has no expansion)."""
    import re

    k, e = re.search(r"_k(\d+)", block_str), re.search(r"_e(\d+)", block_str)
    return f"k{k.group(1) if k else 3}e{e.group(1) if e else 1}"


def teacher_outside_space(space: MBConvSpace, arch_def: list[list[str]]) -> None:
    """Raise :class:`DnaError` unless ``arch_def`` is a teacher with one stage per block of
    ``space`` at the block's stride, every stage at least ``TEACHER_DEPTH`` x the block's deepest
    cell and ``TEACHER_WIDTH`` x its widest width (hence no candidate of the space)."""
    if len(arch_def) != len(space.blocks) + 1:
        raise DnaError(f"teacher has {len(arch_def)} stages; expected the fixed first stage plus one per block "
                       f"of space {space.name!r} ({len(space.blocks) + 1})")
    candidate = True
    for k, (b, stage) in enumerate(zip(space.blocks, arch_def[1:], strict=True)):
        layers, width, stride = _stage(stage)
        if stride != b.stride:
            raise DnaError(f"teacher stage {k + 1} has stride {stride}, block {k} of space {space.name!r} has "
                           f"{b.stride}: the block split would not line up")
        ops = {_op(s) for s in stage}
        if not any(c.layers == layers and c.channels == width for c in b.cells) or not ops <= set(space.ops):
            candidate = False
    if candidate:
        raise DnaError(f"teacher {arch_def!r} is a candidate of space {space.name!r}: block losses would measure "
                       "closeness to one architecture, not capacity")
    for k, (b, stage) in enumerate(zip(space.blocks, arch_def[1:], strict=True)):
        layers, width, _ = _stage(stage)
        deep, wide = max(c.layers for c in b.cells), max(c.channels for c in b.cells)
        if layers < TEACHER_DEPTH * deep:
            raise DnaError(f"teacher stage {k + 1} has {layers} layers; block {k}'s deepest cell has {deep}, so "
                           f"the teacher needs >= {math.ceil(TEACHER_DEPTH * deep)}")
        if width < TEACHER_WIDTH * wide:
            raise DnaError(f"teacher stage {k + 1} is {width} wide; block {k}'s widest cell is {wide}, so the "
                           f"teacher needs >= {math.ceil(TEACHER_WIDTH * wide)}")


def teacher_beats(teacher_top1: float, best_candidate_top1: float) -> bool:
    """Whether the teacher is better than every candidate (else its features cannot rank them)."""
    return teacher_top1 > best_candidate_top1


# ----- jobs (each in its own single-threaded process) ------------------------------------------
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _data(d: dict):
    from dna.data import DataConfig

    return DataConfig.from_dict(d)


SCORED_EPOCHS = 3   # a training's score: the mean val top-1 of its last 3 epochs (the only ones evaluated)


def last_mean(history: list[dict], n: int = SCORED_EPOCHS) -> float:
    """Mean val top-1 of the last ``n`` epochs: the plateau, not one epoch's luck."""
    tail = [float(h["val_top1"]) for h in history[-n:]]
    return sum(tail) / len(tail)


def gt_file(gt_dir: Path, arch: list[dict], seed: int) -> Path:
    return gt_dir / f"{digest(arch)}-s{seed}.parquet"


def read_gt_row(path: Path) -> dict | None:
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()[0]


# The ground truth measured for RESULTS.md, kept in the repository (one small Parquet row per
# training, under the settings hash it was trained with), so a fresh clone with the same settings
# reuses it instead of spending about 50 minutes on it; --stored '' trains everything again.
STORED = HERE / "ground_truth"


def cached_gt_row(gt_dir: Path, stored: Path | None, arch: list[dict], seed: int) -> dict | None:
    """The training's row from the cache, else from the stored ground truth of the same settings."""
    row = read_gt_row(gt_file(gt_dir, arch, seed))
    if row is None and stored is not None:
        row = read_gt_row(gt_file(stored / gt_dir.name, arch, seed))
    return row


def gt_job(space_json: dict, arch: list[dict], data: dict, recipe: dict, seed: int, gt_dir: str) -> dict:
    """Train one architecture stand-alone with one seed and store its row (atomically) in the cache;
    the retrain folder beside it makes a cut-short training resume; its checkpoints are dropped
    once the row is stored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dna.model.arch import Architecture
    from dna.retrain import RetrainConfig, retrain

    space = space_from_json(space_json)
    choices = [BlockChoice.from_json(c) for c in arch]
    path = gt_file(Path(gt_dir), arch, seed)
    run = Path(gt_dir) / "runs" / path.stem
    t = time.time()
    m = retrain(RetrainConfig.fast(out=str(run), data=_data(data), device="cpu", seed=seed, **recipe),
                model=Architecture.from_choices(space, choices))
    hist = m["history"]
    row = {"arch": json.dumps(arch), "seed": seed, "top1": last_mean(hist), "top1_final": float(m["top1"]),
           "top1_by_epoch": [None if h["val_top1"] is None else float(h["val_top1"]) for h in hist], "params": int(m.get("params", 0)),
           "flops": int(m.get("flops", 0)), "seconds": time.time() - t}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(pa.Table.from_pylist([row]), tmp)
    os.replace(tmp, path)
    for name in ("checkpoint.pt", "model.pt"):
        (run / name).unlink(missing_ok=True)
    return row


def teacher_job(space_json: dict, data: dict, recipe: dict, out: str) -> dict:
    from dna import storage
    from dna.data import num_classes
    from dna.model.arch import Architecture
    from dna.retrain import RetrainConfig, retrain

    space = space_from_json(space_json)
    arch = Architecture(teacher_arch_def(space), resolution=space.resolution, num_classes=num_classes(_data(data)),
                        stem_channels=space.stem_channels, head_channels=space.head_channels,
                        extra={"name": f"{space.name}-teacher"})
    arch_uri = storage.join(out, "arch.json")
    arch.save(arch_uri)
    t = time.time()
    m = retrain(RetrainConfig.fast(model=arch_uri, out=out, data=_data(data), device="cpu", **recipe))
    return {"model": arch_uri, "checkpoint": storage.join(out, "model.pt"), "top1": last_mean(m["history"]),
            "top1_final": float(m["top1"]), "params": int(m.get("params", 0)),
            "seconds": float(m.get("train_time_s") or time.time() - t)}


def dna_job(space_uri: str, data: dict, teacher: dict, epochs: int, seed: int, root: str,
            archs: list[list[dict]], calib_batches: int, max_steps: int | None, rate_max_batches: int | None,
            supernets_from: str | None = None) -> dict:
    """One DNA seed: train the block supernets (or take those stored under ``supernets_from``,
    an earlier run's seed folder) and rate them; the architectures' scores."""
    from dna import storage
    from dna.generation import RunConfig, rate_step, supernet_step
    from dna.layout import generation
    from dna.teacher import TeacherConfig
    from dna.train.block import history_uri

    space = get_space(space_uri)
    tcfg = TeacherConfig(model=teacher["model"], checkpoint=teacher["checkpoint"], num_classes=None)
    cfg = RunConfig(root=root, space=space_uri, data=_data(data), teacher=tcfg, block_epochs=epochs,
                    block_max_steps=max_steps, rate_max_batches=rate_max_batches, calib_batches=calib_batches,
                    seed=seed, device="cpu")
    t = time.time()
    if supernets_from is None:
        supernets = None
        metrics = supernet_step(cfg, 0, tcfg)
    else:
        stored = generation(supernets_from, 0)
        supernets = stored.supernets
        metrics = [storage.read_json(history_uri(stored.block(k))) for k in range(len(space.blocks))]
    t_train = time.time() - t
    t = time.time()
    rate_step(cfg, 0, tcfg, supernets=supernets)
    t_rate = time.time() - t
    scores_uri = generation(root, 0).scores
    return {"scores": dna_scores(space, scores_uri, archs), "train_seconds": t_train, "rate_seconds": t_rate,
            "scores_uri": scores_uri, "supernets_from": supernets_from,
            "block_loss": {int(m["block"]): [float(h["loss"]) for h in m["history"]] for m in metrics}}


def dna_root(folder: str | Path, seed: int) -> str:
    """The run root of one DNA seed inside a run's ``--out`` folder."""
    return str(Path(folder) / f"dna-seed{seed}")


def check_supernets_from(folder: str, seeds: list[int], blocks: int) -> None:
    """``--supernets-from``: every DNA seed's block supernets are stored there (checked before any work)."""
    from dna import storage
    from dna.layout import generation
    from dna.train.block import checkpoint_uri, history_uri

    for s in seeds:
        gen = generation(dna_root(folder, s), 0)
        for k in range(blocks):
            for uri in (checkpoint_uri(gen.block(k)), history_uri(gen.block(k))):
                if not storage.exists(uri):
                    raise DnaError(f"--supernets-from {folder}: no trained supernet of seed {s}, block {k} "
                                   f"({uri}); expected the --out folder of an earlier run with these --seeds")


BLOCK_NORMS = ("none", "mean")


def dna_scores(space: MBConvSpace, scores_uri: str, archs: list[list[dict]], norm: str = "none") -> list[float]:
    """DNA's score of each architecture from a rated scores table: the unweighted sum of its block
    losses (the paper's), or with ``norm="mean"`` each block's loss divided by the mean loss of the
    block's rated paths first (a lever, not the method: deeper blocks' larger losses then stop
    dominating the sum)."""
    from dna.rate.scores import read_scores

    if norm not in BLOCK_NORMS:
        raise DnaError(f"block norm {norm!r}: expected one of {', '.join(BLOCK_NORMS)}")
    table, _ = read_scores(scores_uri)
    d = table.to_pydict()
    loss = {(b, c, o, w): v for b, c, o, w, v in
            zip(d["block"], d["cell"], d["ops"], d["in_channels"], d["loss"], strict=True)}
    if norm == "mean":
        per_block: dict[int, list[float]] = {}
        for (b, *_), v in loss.items():
            per_block.setdefault(b, []).append(v)
        scale = {b: statistics.fmean(v) for b, v in per_block.items()}
        loss = {key: v / scale[key[0]] for key, v in loss.items()}
    return [arch_loss(space, loss, a) for a in archs]


def arch_loss(space: MBConvSpace, loss: dict, arch: list[dict]) -> float:
    """The sum of an architecture's rated block losses (Eq. 7 per block, unweighted over blocks)."""
    width, total = space.first_channels, 0.0
    for ch in map(BlockChoice.from_json, arch):
        total += loss[(ch.block, ch.cell, ch.ops_str, width)]
        width = space.cell(ch.block, ch.cell).channels
    return total


def spos_job(space_json: dict, data: dict, epochs: int, seed: int, archs: list[list[dict]],
             calib_batches: int, max_steps: int | None, rate_max_batches: int | None) -> dict:
    from benchmarks.spos import rate_spos, train_spos

    space = space_from_json(space_json)
    t = time.time()
    net, info = train_spos(space, _data(data), epochs, seed=seed, max_steps_per_epoch=max_steps)
    t_train = time.time() - t
    t = time.time()
    preds = rate_spos(net, [[BlockChoice.from_json(c) for c in a] for a in archs], _data(data),
                      calib_batches=calib_batches, max_batches=rate_max_batches)
    return {"scores": preds, "train_seconds": t_train, "rate_seconds": time.time() - t,
            "loss": [float(h["loss"]) for h in info["history"]]}


class _Inline:
    """``--jobs 0``: run every job in this process, in submission order (tests)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        f: cf.Future = cf.Future()
        try:
            f.set_result(fn(*args))
        except Exception as exc:  # surfaced by f.result()
            f.set_exception(exc)
        return f


# ----- plots ------------------------------------------------------------------------------------
def ranks(values, descending: bool) -> list[int]:
    """1 = best."""
    order = sorted(range(len(values)), key=lambda i: -values[i] if descending else values[i])
    out = [0] * len(values)
    for r, i in enumerate(order):
        out[i] = r + 1
    return out


def plot_ranks(path: Path, truth: list[float], goodness: dict[str, dict[int, list[float]]], taus: dict) -> None:
    """Predicted vs true rank per method (every seed), 1 = best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true_rank = ranks(truth, descending=True)
    fig, axes = plt.subplots(1, len(goodness), figsize=(3.6 * len(goodness), 3.8), squeeze=False)
    n = len(truth)
    for ax, (method, by_seed) in zip(axes[0], goodness.items(), strict=True):
        for j, (seed, g) in enumerate(sorted(by_seed.items())):
            ax.scatter(ranks(g, descending=True), true_rank, marker="osD^v"[j % 5], alpha=0.6, s=18,
                       label=f"seed {seed}" if method not in DETERMINISTIC else "deterministic")
        ax.plot([1, n], [1, n], color="grey", lw=0.8, ls="--")
        ax.set_title(f"{method}: tau {taus[method]['tau']:+.2f}")
        ax.set_xlabel("predicted rank (1 = best)")
        ax.set_ylabel("true rank (3-seed mean top-1)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_blocks(path: Path, dna_info: dict[int, dict], spos_info: dict[int, dict]) -> None:
    """Each DNA block supernet's training loss per epoch (every seed), and SPOS's beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = sorted({b for r in dna_info.values() for b in map(int, r["block_loss"])})
    fig, axes = plt.subplots(1, len(blocks) + 1, figsize=(3.4 * (len(blocks) + 1), 3.2), squeeze=False)
    for ax, b in zip(axes[0], blocks, strict=False):
        for s, r in sorted(dna_info.items()):
            curve = r["block_loss"][b] if b in r["block_loss"] else r["block_loss"][str(b)]
            ax.plot(range(1, len(curve) + 1), curve, "o-", ms=3, label=f"seed {s}")
        ax.set_title(f"DNA block {b} (Eq. 6 loss)")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for s, r in sorted(spos_info.items()):
        ax.plot(range(1, len(r["loss"]) + 1), r["loss"], "o-", ms=3, label=f"seed {s}")
    ax.set_title("SPOS supernet (cross-entropy)")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----- main -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=BENCH_SPACE.name, help="space name, space JSON file, or inline JSON")
    p.add_argument("--data", default="builtin:shapes", help="builtin:shapes or an ImageFolder root")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the built-in data's images and splits")
    p.add_argument("--resolution", type=int, default=None, help="default: the space's")
    p.add_argument("--train-size", type=int, default=2000, help="built-in data only")
    p.add_argument("--val-size", type=int, default=2000, help="built-in data only (the ground truth's split)")
    p.add_argument("--rating-size", type=int, default=500, help="DNA/SPOS rating split (held out of train)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--archs", type=int, default=20, help="architectures stratified by params (nested pairs added)")
    p.add_argument("--arch-seed", type=int, default=0, help="seed of the architecture sample")
    p.add_argument("--epochs", type=int, default=20, help="stand-alone training epochs (ground truth, search check)")
    p.add_argument("--gt-seeds", type=int, nargs="+", default=[0, 1, 2], help="ground-truth training seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="DNA/SPOS/random predictor seeds")
    p.add_argument("--supernet-steps", type=int, default=500,
                   help="updates per DNA block supernet and of the SPOS supernet (rounded up to whole epochs)")
    p.add_argument("--block-norm", choices=BLOCK_NORMS, default="none",
                   help="DNA's score: the plain sum of block losses (none, the paper's) or each block's loss "
                        "divided by its block's mean first (mean; a lever to test)")
    p.add_argument("--supernets-from", default=None, metavar="DIR",
                   help="DNA re-rates the block supernets an earlier run stored in DIR (its --out) instead of "
                        "training them: for the rating levers (--rating-size, --rate-max-batches, "
                        "--calib-batches), Algorithm 1 alone")
    p.add_argument("--teacher-epochs", type=int, default=10, help="the teacher's stand-alone epochs")
    p.add_argument("--teacher-train-size", type=int, default=8000,
                   help="built-in data only: the teacher's train images (0: --train-size)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch of every training (smoke)")
    p.add_argument("--rate-max-batches", type=int, default=None)
    p.add_argument("--calib-batches", type=int, default=2)
    p.add_argument("--budget", type=float, default=None,
                   help="params budget of the search-vs-random check (default: the middle of the cost range)")
    p.add_argument("--random-archs", type=int, default=5, help="random architectures within +-10%% of the budget")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of each CI")
    p.add_argument("--only-ground-truth", action="store_true",
                   help="train the teacher and the ground truth (the caches) and stop")
    p.add_argument("--jobs", type=int, default=2, help="processes at once (one thread each); 0: all in this process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", default=None,
                   help="folder for supernets, scores and predictions, reused by reruns (default: CACHE/run)")
    p.add_argument("--cache", default=str(HERE / "cache"), help="ground-truth and teacher cache folder")
    p.add_argument("--stored", default=str(STORED),
                   help="stored ground truth read when the cache lacks a training ('': none; default "
                        "benchmarks/ground_truth, the rows behind RESULTS.md)")
    p.add_argument("--plot", default=str(HERE / "ranking.png"), help="predicted-vs-true rank plot")
    p.add_argument("--block-plot", default=str(HERE / "ranking_blocks.png"), help="supernet loss curves plot")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="", help="a sentence appended to the RESULTS.md section")
    return p


def training_data(data_d: dict) -> dict:
    """The data settings a stand-alone training depends on, the key of its cache. The built-in
    data draw the rating split apart from train (``dna.data.shapes.SPLITS``), so its size changes
    no training there and stays out of the key: a ``--rating-size`` lever reuses the ground truth
    and the teacher. An ImageFolder's rating split is held out of train, so there it stays in."""
    if str(data_d.get("uri", "")).startswith("builtin:"):
        return {k: v for k, v in data_d.items() if k != "rating_size"}
    return data_d


def _settings(args, space):
    """The data, recipes and cache locations of a run (each cache named by what it holds)."""
    from dna.data import DataConfig
    from dna.retrain import FAST_RECIPE

    data = DataConfig(uri=args.data, resolution=args.resolution or space.resolution, batch_size=args.batch_size,
                      train_size=args.train_size, val_size=args.val_size, rating_size=args.rating_size,
                      num_classes=space.num_classes if args.data.startswith("builtin:") else 10, seed=args.data_seed)
    data_d = data.to_dict()
    # Only the scored epochs are evaluated (a quarter of a 16 px training's time went to evaluating
    # 2,000 images after every epoch).
    gt_recipe = {"epochs": args.epochs, "steps_per_epoch": args.max_steps, "eval_epochs": SCORED_EPOCHS}
    t_recipe = {"epochs": args.teacher_epochs, "steps_per_epoch": args.max_steps, "eval_epochs": SCORED_EPOCHS}
    cache = Path(args.cache)
    gt_meta = {"space": space.to_json(), "data": training_data(data_d), "recipe": {**FAST_RECIPE, **gt_recipe}, "score": "last3"}
    gt_dir = cache / f"gt-{digest(gt_meta)}"
    import dataclasses

    # The teacher sees more images of the same distribution (built-in data: --teacher-train-size),
    # as a real teacher is pretrained on more data than the search uses: on 2,000 images a 1.4M
    # teacher overfits to about the best candidate's top-1 and cannot rank the candidates.
    t_data_d = (dataclasses.replace(data, train_size=args.teacher_train_size).to_dict()
                if args.data.startswith("builtin:") and args.teacher_train_size else data_d)
    t_meta = {"space": space.to_json(), "data": training_data(t_data_d), "recipe": {**FAST_RECIPE, **t_recipe},
              "arch_def": teacher_arch_def(space)}
    teacher_dir = cache / f"teacher-{digest(t_meta)}"
    space_uri = str(cache / f"space-{digest(space.to_json())}.json")
    gt_dir.mkdir(parents=True, exist_ok=True)
    (gt_dir / "settings.json").write_text(json.dumps(gt_meta, indent=1, default=str))
    Path(space_uri).write_text(json.dumps(space.to_json()))
    out = Path(args.out) if args.out else cache / "run"
    out.mkdir(parents=True, exist_ok=True)
    return data, data_d, gt_recipe, t_recipe, t_meta, gt_dir, teacher_dir, space_uri, out, t_data_d


def supernet_epochs(data, steps: int, max_steps: int | None) -> int:
    """Whole epochs giving at least ``steps`` updates (the train split minus nothing: rating is
    held out of it already)."""
    from dna.data import make_loader

    per = len(make_loader(data, "train", shuffle=False))
    if max_steps:
        per = min(per, max_steps)
    return max(1, math.ceil(steps / per))


def _gt_table(rows: dict, keys: list[str], seeds: list[int]) -> list[list[float]]:
    return [[rows[(k, s)]["top1"] for k in keys] for s in seeds]


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    t_start = time.time()
    space = load_space(args.space)
    teacher_outside_space(space, teacher_arch_def(space))
    if args.supernets_from:
        check_supernets_from(args.supernets_from, args.seeds, len(space.blocks))
    data, data_d, gt_recipe, t_recipe, t_meta, gt_dir, teacher_dir, space_uri, out, t_data_d = _settings(args, space)
    costs = ArchCosts(space, data.resolution)

    # the architectures: stratified sample, then the nested pairs' members not already in it
    archs = sample_archs(space, args.archs, args.arch_seed, costs)
    keys = [arch_key(a) for a in archs]
    pairs_idx = []
    pairs = nested_pairs(space, costs)
    for name, big, small in pairs:
        for a in (big, small):
            if arch_key(a) not in keys:
                archs.append(a)
                keys.append(arch_key(a))
        pairs_idx.append((name, keys.index(arch_key(big)), keys.index(arch_key(small))))
    archs_j = [[c.to_json() for c in a] for a in archs]
    arch_costs = [costs(a) for a in archs]
    pmin, pmax = min(c["params"] for c in arch_costs), max(c["params"] for c in arch_costs)
    budget = args.budget or (pmin + pmax) / 2
    pool = candidate_pool(space, costs, 4000, args.arch_seed + 1)
    near = [a for a in pool if abs(costs(a)["params"] - budget) <= 0.1 * budget and arch_key(a) not in keys]
    rnd_archs = random.Random(args.arch_seed).sample(near, min(args.random_archs, len(near)))
    rnd_j = [[c.to_json() for c in a] for a in rnd_archs]
    print(f"space {space.name}: {space.count():,} architectures; {len(archs)} in the ground truth "
          f"({args.archs} stratified over {pmin:,}-{pmax:,} params + nested pairs "
          f"{[p[0] for p in pairs_idx]}); {len(rnd_archs)} random ones within +-10% of {budget:,.0f} params; "
          f"cache {gt_dir}", flush=True)

    rows: dict[tuple[str, int], dict] = {}
    stored = Path(args.stored) if args.stored else None
    todo = []
    for a in archs_j + rnd_j:
        for s in args.gt_seeds:
            r = cached_gt_row(gt_dir, stored, a, s)
            if r is not None:
                rows[(json.dumps(a), s)] = r
            else:
                todo.append((a, s))
    gt_cached = len(rows)
    print(f"ground truth: {gt_cached} of {gt_cached + len(todo)} (architecture, seed) trainings cached", flush=True)

    ctx = multiprocessing.get_context("spawn")
    pool_cm = (cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.threads,))
               if args.jobs > 0 else _Inline())
    timings: dict[str, float] = {}
    with pool_cm as ex:
        # phase 1: teacher and ground truth (the caches)
        t0 = time.time()
        fut_teacher = ex.submit(teacher_job, space.to_json(), t_data_d, t_recipe, str(teacher_dir))
        futs = {ex.submit(gt_job, space.to_json(), a, data_d, gt_recipe, s, str(gt_dir)): (a, s) for a, s in todo}
        for i, f in enumerate(cf.as_completed(futs), 1):
            a, s = futs[f]
            r = f.result()
            rows[(json.dumps(a), s)] = r
            print(f"ground truth {i}/{len(todo)}: {r['params']:,} params seed {s}: top-1 {r['top1']:.1f}% "
                  f"(last 3 epochs) in {r['seconds']:.0f} s", flush=True)
        teacher = fut_teacher.result()
        timings["teacher and ground truth"] = time.time() - t0
        print(f"teacher ({teacher['params']:,} params): top-1 {teacher['top1']:.1f}% ({teacher['seconds']:.0f} s)",
              flush=True)
        if args.only_ground_truth:
            return {"status": "ground truth only", "ground_truth_cached": gt_cached, "trained": len(todo),
                    "cache": str(gt_dir)}

        truth_tab = _gt_table(rows, [json.dumps(a) for a in archs_j], args.gt_seeds)
        truth = [statistics.fmean(col) for col in zip(*truth_tab, strict=True)]
        g = rs.gate(truth_tab, pairs_idx)
        print(("ground truth valid: " if g.ok else "ground truth invalid: ") + g.describe(), flush=True)
        best = max(range(len(truth)), key=truth.__getitem__)
        print(f"teacher top-1 {teacher['top1']:.1f}% vs best stand-alone candidate {truth[best]:.1f}% "
              f"({arch_costs[best]['params']:,} params)", flush=True)
        summary = {"space": space.name, "archs": archs_j, "params": [c["params"] for c in arch_costs],
                   "truth": truth, "truth_by_seed": truth_tab, "gate": g.to_json(), "teacher": teacher,
                   "ground_truth_cached": gt_cached, "cache": str(gt_dir), "verdict": None}
        if not g.ok:
            print("ground truth invalid: " + "; ".join(g.reasons) + ". No verdict.", flush=True)
            summary["status"] = "ground truth invalid"
            _finish(args, argv, summary, out, space, data, teacher, g, None, time.time() - t_start)
            return summary
        if not teacher_beats(teacher["top1"], truth[best]):
            print(f"teacher top-1 {teacher['top1']:.1f}% is not above the best candidate's {truth[best]:.1f}%: a "
                  "teacher no better than the students cannot rank them. Train it longer (--teacher-epochs) or make "
                  "it larger. No verdict.", flush=True)
            summary["status"] = "teacher not better"
            return summary

        # phase 2: predictors (cached per (method, seed) in --out)
        epochs_sn = supernet_epochs(data, args.supernet_steps, args.max_steps)
        pred_key = digest({"archs": archs_j, "data": data_d, "epochs": epochs_sn, "max_steps": args.max_steps,
                           "calib": args.calib_batches, "rate_max_batches": args.rate_max_batches, "teacher": t_meta,
                           **({"supernets_from": str(Path(args.supernets_from).resolve())}
                              if args.supernets_from else {})})
        info: dict[str, dict[int, dict]] = {"DNA": {}, "SPOS": {}}
        futs2 = {}
        t0 = time.time()
        for method in ("DNA", "SPOS"):
            for s in args.seeds:
                f = out / f"pred-{method}-seed{s}-{pred_key}.json"
                if f.exists():
                    info[method][s] = json.loads(f.read_text())
                elif method == "DNA":
                    src = dna_root(args.supernets_from, s) if args.supernets_from else None
                    futs2[ex.submit(dna_job, space_uri, data_d, teacher, epochs_sn, s, dna_root(out, s),
                                    archs_j, args.calib_batches, args.max_steps, args.rate_max_batches,
                                    src)] = (method, s, f)
                else:
                    futs2[ex.submit(spos_job, space.to_json(), data_d, epochs_sn, s, archs_j, args.calib_batches,
                                    args.max_steps, args.rate_max_batches)] = (method, s, f)
        for fut in cf.as_completed(futs2):
            method, s, f = futs2[fut]
            r = fut.result()
            info[method][s] = r
            f.write_text(json.dumps(r))
            print(f"{method} seed {s}: trained {r['train_seconds']:.0f} s, rated {r['rate_seconds']:.0f} s", flush=True)
        timings["predictors"] = time.time() - t0

        # phase 3: search vs random search under the budget
        from dna.search.traversal import search

        s0 = args.seeds[0]
        found = search(info["DNA"][s0]["scores_uri"], limits={"params": budget})[0]
        searched = [c.to_json() for c in found.choices]
        t0 = time.time()
        futs3 = {}
        for a in [searched] + rnd_j:
            for s in args.gt_seeds:
                r = cached_gt_row(gt_dir, stored, a, s)
                if r is not None:
                    rows[(json.dumps(a), s)] = r
                else:
                    futs3[ex.submit(gt_job, space.to_json(), a, data_d, gt_recipe, s, str(gt_dir))] = (a, s)
        for fut in cf.as_completed(futs3):
            a, s = futs3[fut]
            rows[(json.dumps(a), s)] = fut.result()
        timings["search vs random"] = time.time() - t0

    n = len(archs)
    goodness: dict[str, dict[int, list[float]]] = {
        "DNA": {s: [-v for v in (info["DNA"][s]["scores"] if args.block_norm == "none" else
                                 dna_scores(space, info["DNA"][s]["scores_uri"], archs_j, args.block_norm))]
                for s in args.seeds},
        "SPOS": {s: [-v for v in info["SPOS"][s]["scores"]] for s in args.seeds},
        "random": {s: random_scores(s, n) for s in args.seeds},
        "params": {0: [float(c["params"]) for c in arch_costs]},
        "FLOPs": {0: [float(c["flops"]) for c in arch_costs]},
    }
    verdict = compare(goodness, truth_tab, truth, args.boot, args.arch_seed)
    svr = search_table([searched] + rnd_j, rows, args.gt_seeds, costs, space)
    summary.update(status="verdict", verdict=verdict, goodness=goodness, search_vs_random=svr, timings=timings,
                   supernet_epochs=epochs_sn, budget=budget, info=info)
    print_verdict(verdict, g, svr)
    if not args.no_plot:
        plot_ranks(Path(args.plot), truth, goodness, verdict["methods"])
        plot_blocks(Path(args.block_plot), info["DNA"], info["SPOS"])
    _finish(args, argv, summary, out, space, data, teacher, g, verdict, time.time() - t_start)
    return summary


def random_scores(seed: int, n: int) -> list[float]:
    """The random predictor: ``n`` seeded uniform scores."""
    rng = random.Random(1000 + seed)
    return [rng.random() for _ in range(n)]


def compare(goodness: dict, truth_tab, truth: list[float], n_boot: int, seed: int) -> dict:
    """Per method and seed tau/rho against the seed-mean ground truth; DNA minus each baseline with
    a bootstrap CI; the ceiling (seed-to-seed tau of the ground truth)."""
    methods = {}
    for m, by_seed in goodness.items():
        per = {s: {"tau": rs.kendall(g, truth), "rho": rs.spearman(g, truth)} for s, g in by_seed.items()}
        taus = [v["tau"] for v in per.values()]
        methods[m] = {"tau": statistics.fmean(taus), "tau_sd": statistics.stdev(taus) if len(taus) > 1 else 0.0,
                      "rho": statistics.fmean(v["rho"] for v in per.values()), "per_seed": per}
    rows = {m: [g for _, g in sorted(by.items())] for m, by in goodness.items()}
    diffs = {b: rs.bootstrap_tau_diff(rows["DNA"], rows[b], truth_tab, n_boot=n_boot, seed=seed)
             for b in goodness if b != "DNA"}
    return {"methods": methods, "dna_minus": diffs, "ceiling": rs.mean_pairwise(truth_tab, rs.kendall)}


def search_table(archs: list[list[dict]], rows: dict, seeds: list[int], costs: ArchCosts, space) -> list[dict]:
    """The searched net (first) and the random ones: params, top-1 per seed and mean, rank (1 = best)."""
    out = []
    for i, a in enumerate(archs):
        per = [rows[(json.dumps(a), s)]["top1"] for s in seeds]
        out.append({"who": "DNA search" if i == 0 else f"random {i}",
                    "params": costs([BlockChoice.from_json(c) for c in a])["params"], "top1": statistics.fmean(per),
                    "per_seed": per, "arch": "; ".join(f"c{c['cell']}:{c['ops']}" for c in a)})
    means = [r["top1"] for r in out]
    for i, r in enumerate(out):
        r["rank"] = rs.rank_among(r["top1"], means[:i] + means[i + 1:])
    return out


def print_verdict(v: dict, g, svr: list[dict]) -> None:
    print(f"\n{'method':8s} {'Kendall tau (mean ± sd over seeds)':>36s} {'Spearman rho':>13s}")
    for m, r in v["methods"].items():
        print(f"{m:8s} {r['tau']:>+27.3f} ± {r['tau_sd']:.3f} {r['rho']:>+13.3f}")
    print(f"ground-truth ceiling (seed-to-seed tau): {v['ceiling']:.3f}")
    for b, d in v["dna_minus"].items():
        print(f"tau(DNA) - tau({b}): {d['diff']:+.3f}  95% CI [{d['lo']:+.3f}, {d['hi']:+.3f}]")
    print(rs.plain_verdict(v["dna_minus"], v["ceiling"]))
    print("\nsearch vs random search (same recipe and seeds):")
    for r in svr:
        print(f"  {r['who']:10s} {r['params']:>9,} params  top-1 {r['top1']:.1f}%  rank {r['rank']}/{len(svr)}")


def _finish(args, argv, summary, out, space, data, teacher, g, verdict, wall) -> None:
    summary["wall_s"] = wall
    (out / "ranking.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"wall time {wall:.0f} s; outputs in {out}")
    if not args.no_record:
        record("Ranking quality", report(args, argv, summary, space, data, teacher, g, verdict, wall))


def _rel(path: str) -> str:
    """``path`` relative to the working directory when under it (RESULTS.md names no home folders)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cmd(argv) -> str:
    a = argv if argv is not None else sys.argv[1:]
    return "python benchmarks/ranking.py" + ("".join(" " + shlex.quote(x) for x in a))


def report(args, argv, summary, space, data, teacher, g, verdict, wall) -> str:
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} at the end"
    except OSError:
        load = ""
    truth, params = summary["truth"], summary["params"]
    lines = [
        f"Machine: {machine()}{load}",
        f"Command: `{_cmd(argv)}`",
        f"Wall time: {wall / 60:.1f} min ({args.jobs} single-threaded processes at once; "
        f"{summary['ground_truth_cached']} ground-truth trainings came from the cache `{_rel(summary['cache'])}`"
        + (f" or the stored rows `{_rel(args.stored)}`" if args.stored else "") + ")",
        "",
        f"Settings: space `{space.name}` ({space.count():,} architectures, cells {BENCH_TABLE if space is BENCH_SPACE else '(see --space)'}"
        f", ops {list(space.ops)}), data `{data.uri}` at {data.resolution} px (train {data.train_size}, val "
        f"{data.val_size}, rating {data.rating_size}, batch {data.batch_size}, data seed {data.seed}). Ground truth: "
        f"{len(truth)} architectures ({args.archs} stratified by params over {min(params):,}-{max(params):,}, sample "
        f"seed {args.arch_seed}, plus nested pairs), each trained with `RetrainConfig.fast` for {args.epochs} epochs "
        f"and training seeds {args.gt_seeds}; score = mean val top-1 of the last 3 epochs, averaged over seeds: "
        f"{min(truth):.1f}-{max(truth):.1f}%. Teacher (outside the space: {teacher_arch_def(space)[1:]}, "
        f"{teacher['params']:,} params, {args.teacher_epochs} epochs): top-1 {teacher['top1']:.1f}% vs the best "
        f"candidate's {max(truth):.1f}%.",
        "",
        f"Validity gate: {'passed' if g.ok else '**failed** (ground truth invalid; no verdict)'}: {g.describe()}.",
    ]
    if verdict is None:
        return "\n".join(lines)
    lines += [
        "",
        f"Predictors (seeds {args.seeds}; params and FLOPs are deterministic, one value): DNA = sum of rated block "
        f"losses{' (each divided by its block mean: --block-norm mean)' if args.block_norm == 'mean' else ''} after {summary['supernet_epochs']} epochs (>= {args.supernet_steps} steps) per block supernet; SPOS "
        f"= rating-split cross-entropy after the same number of steps of one whole-network supernet; random = seeded "
        f"uniform scores. Kendall tau and Spearman rho against the {len(args.gt_seeds)}-seed-mean ground truth:",
        "",
        "| method | Kendall tau (mean ± sd) | Spearman rho | per seed (tau / rho) |",
        "|---|---|---|---|",
    ]
    for m, r in verdict["methods"].items():
        per = "; ".join(f"{s}: {v['tau']:+.2f} / {v['rho']:+.2f}" for s, v in r["per_seed"].items())
        lines.append(f"| {m} | {r['tau']:+.3f} ± {r['tau_sd']:.3f} | {r['rho']:+.3f} | {per} |")
    lines += ["", f"Ground-truth ceiling (mean seed-to-seed tau): {verdict['ceiling']:.3f}.", "",
              f"tau(DNA) - tau(baseline), 95% bootstrap CI ({args.boot} resamples of architectures, predictor seeds "
              "and ground-truth seeds):", "", "| baseline | difference | 95% CI |", "|---|---|---|"]
    for b, d in verdict["dna_minus"].items():
        lines.append(f"| {b} | {d['diff']:+.3f} | [{d['lo']:+.3f}, {d['hi']:+.3f}] |")
    lines += ["", rs.plain_verdict(verdict["dna_minus"], verdict["ceiling"])]
    svr = summary["search_vs_random"]
    lines += ["", f"Search vs random search at {summary['budget']:,.0f} params (DNA seed {args.seeds[0]}'s scores, "
              f"exact search; random: within +-10%; same recipe, seeds {args.gt_seeds}):", "",
              "| net | params | top-1 (mean) | per seed | rank | cells:ops per block |", "|---|---|---|---|---|---|"]
    for r in svr:
        lines.append(f"| {r['who']} | {r['params']:,} | {r['top1']:.1f} | "
                     f"{' / '.join(f'{x:.1f}' for x in r['per_seed'])} | {r['rank']}/{len(svr)} | {r['arch']} |")
    info = summary["info"]
    lines += ["", "Cost: " + "; ".join(
        f"{m} {statistics.fmean(v['train_seconds'] for v in info[m].values()):.0f} s training + "
        f"{statistics.fmean(v['rate_seconds'] for v in info[m].values()):.0f} s rating per seed" for m in ("DNA", "SPOS"))
        + f"; teacher {teacher['seconds']:.0f} s; phases {', '.join(f'{k} {v / 60:.1f} min' for k, v in summary['timings'].items())}.",
        "", f"Plots: predicted vs true rank `{Path(args.plot).name}`, supernet loss curves `{Path(args.block_plot).name}`."]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


def cli() -> int:
    r = main()
    return {"ground truth invalid": EXIT_INVALID_GT, "teacher not better": EXIT_WEAK_TEACHER}.get(r.get("status"), 0)


if __name__ == "__main__":
    sys.exit(cli())
