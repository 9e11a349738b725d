"""Ranking quality against ground truth (SPEC section 10): DNA vs a SPOS baseline vs random.

1. Ground truth: N architectures sampled uniformly from the space (seeded; a block's path is drawn
   uniformly from all its cells' paths) are each trained stand-alone from scratch with
   ``RetrainConfig.fast`` and their top-1 on the val split recorded. Cached as Parquet under
   ``--cache`` (``ground_truth-<hash>.parquet``, the hash covers space, data, recipe and sampling
   seed), filled in per finished architecture, so it is computed once per space and data set.
2. Predictions, for each seed (the seed of supernet training and rating; ground truth is shared):
   DNA: a teacher with the space's stage strides is trained on the data (``retrain``, cached), the
   block supernets are trained and rated with the library (``supernet_step``, ``rate_step``) and
   an architecture's score is the sum of its blocks' rated losses; SPOS: ``benchmarks/spos.py``,
   one whole-network supernet trained with cross-entropy for the same epochs, optimizer and LR
   schedule as a DNA block, rated by rating-split cross-entropy with BN recalibrated per path;
   random: seeded random scores.
3. Kendall tau, Spearman rho and Pearson R (scipy.stats) of each method against the ground truth.
   DNA and SPOS scores are losses (lower is better) and accuracy is higher-is-better, so the
   correlations are computed between ``-score`` and top-1. Table to RESULTS.md (## Ranking
   quality), predicted-vs-true rank scatter to ``--plot``.

The default space (``rank-bench``, defined below as data) is a scaled-down MBConv space with total
stride 8 at 32 px: the stride-32 ``mbconv-tiny`` nets barely learn the built-in 32 px data in a
few epochs, so their accuracies would not spread and the ranking would be noise.

``--gt-repeats K`` trains the first K architectures again with another training seed and reports
how well the two ground-truth runs agree: the ceiling any predictor can reach against one run.

Every job (one stand-alone training, the teacher, one seed of DNA or SPOS) is a single-threaded
process; ``--jobs`` of them run at once.

Usage: python benchmarks/ranking.py [--space rank-bench|NAME|FILE.json|'{json}'] [--data URI]
       [--archs 20] [--seeds 0 1 2] [--epochs 6] [--gt-repeats 0] [--out DIR] [--cache benchmarks/cache]
       [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, record  # noqa: E402
from dna.space import get_space, space_from_json  # noqa: E402
from dna.space.mbconv import OPS4, BlockChoice, MBConvSpace, _blocks  # noqa: E402

HERE = Path(__file__).resolve().parent

# Scaled-down MBConv space for the benchmark: 4 blocks, strides 1, 2, 2, 1 (with the stem: total
# stride 8, 4x4 maps at the head for 32 px), 4 ops, 1-2 layers per cell; 32,000 architectures.
RANK_BENCH = MBConvSpace(
    name="rank-bench",
    ops=OPS4,
    blocks=_blocks([
        (1, [(1, 16), (2, 16)]),
        (2, [(1, 24), (2, 24)]),
        (2, [(1, 40), (2, 48)]),
        (1, [(1, 64)]),
    ]),
    stem_channels=16,
    first_channels=8,
    head_channels=256,
    resolution=32,
    num_classes=10,
)
GT_COLUMNS = ("index", "arch", "top1", "top5", "params", "flops", "seconds")


def load_space(spec: str) -> MBConvSpace:
    """A space of cells (mbconv, uir) by name, JSON text or .json URI."""
    from dna.space import get_family

    if spec == RANK_BENCH.name:
        return RANK_BENCH
    space = space_from_json(json.loads(spec)) if spec.lstrip().startswith("{") else get_space(spec)
    if get_family(space).joint_teacher:
        raise SystemExit(f"space {space.name!r}: DNA++ (ViT) spaces are not supported, only spaces of cells")
    return space


def sample_archs(space: MBConvSpace, n: int, seed: int = 0) -> list[list[BlockChoice]]:
    """``n`` distinct architectures drawn uniformly from the space (seeded)."""
    if n > space.count():
        raise SystemExit(f"--archs {n}: the space has only {space.count()} architectures")
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        arch = []
        for k, b in enumerate(space.blocks):
            weights = [len(space.ops) ** c.layers for c in b.cells]
            c = rng.choices(range(len(b.cells)), weights=weights)[0]
            arch.append(BlockChoice(k, c, tuple(rng.choice(space.ops) for _ in range(b.cells[c].layers))))
        key = arch_key(arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


def arch_key(arch) -> str:
    return json.dumps([c.to_json() for c in arch])


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def teacher_arch_def(space: MBConvSpace) -> list[list[str]]:
    """A teacher with one stage per block at the block's stride (so ``check_strides`` holds):
    the block's deepest cell depth, its widest cell width, k3e6 layers."""
    se = f"_se{space.se_ratio:g}" if space.se_ratio else ""
    stages = [space.first_stage()]
    for b in space.blocks:
        layers = max(c.layers for c in b.cells)
        width = max(c.channels for c in b.cells)
        stages.append([f"ir_r{layers}_k3_s{b.stride}_e6_c{width}{se}"])
    return stages


# ----- jobs (each in its own single-threaded process) ------------------------------------------
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _data(d: dict):
    from dna.data import DataConfig

    return DataConfig.from_dict(d)


def gt_job(space_json: dict, arch: list[dict], data: dict, recipe: dict, out: str) -> dict:
    from dna.model.arch import Architecture
    from dna.retrain import RetrainConfig, retrain

    space = space_from_json(space_json)
    choices = [BlockChoice.from_json(c) for c in arch]
    t = time.time()
    m = retrain(RetrainConfig.fast(out=out, data=_data(data), device="cpu", **recipe),
                model=Architecture.from_choices(space, choices))
    return {"top1": float(m["top1"]), "top5": float(m["top5"]), "params": int(m.get("params", 0)),
            "flops": int(m.get("flops", 0)), "seconds": time.time() - t}


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
    return {"model": arch_uri, "checkpoint": storage.join(out, "model.pt"), "top1": float(m["top1"]),
            "seconds": float(m.get("train_time_s") or time.time() - t)}


def dna_job(space_uri: str, data: dict, teacher: dict, epochs: int, seed: int, root: str,
            archs: list[list[dict]], calib_batches: int, max_steps: int | None, rate_max_batches: int | None) -> dict:
    from dna.generation import RunConfig, rate_step, supernet_step
    from dna.layout import generation
    from dna.rate.scores import read_scores
    from dna.teacher import TeacherConfig

    space = get_space(space_uri)
    tcfg = TeacherConfig(model=teacher["model"], checkpoint=teacher["checkpoint"], num_classes=None)
    cfg = RunConfig(root=root, space=space_uri, data=_data(data), teacher=tcfg, block_epochs=epochs,
                    block_max_steps=max_steps, rate_max_batches=rate_max_batches, calib_batches=calib_batches,
                    seed=seed, device="cpu")
    t = time.time()
    metrics = supernet_step(cfg, 0, tcfg)
    t_train = time.time() - t
    t = time.time()
    rate_step(cfg, 0, tcfg)
    t_rate = time.time() - t
    table, _ = read_scores(generation(root, 0).scores)
    d = table.to_pydict()
    loss = {(b, c, o, w): v for b, c, o, w, v in
            zip(d["block"], d["cell"], d["ops"], d["in_channels"], d["loss"], strict=True)}
    preds = []
    for arch in archs:
        width, total = space.first_channels, 0.0
        for ch in map(BlockChoice.from_json, arch):
            total += loss[(ch.block, ch.cell, ch.ops_str, width)]
            width = space.cell(ch.block, ch.cell).channels
        preds.append(total)
    ips = [h["images_per_s"] for m in metrics for h in m["history"]]
    return {"scores": preds, "train_seconds": t_train, "rate_seconds": t_rate,
            "images_per_s": sum(ips) / len(ips)}


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
    ips = [h["images_per_s"] for h in info["history"]]
    return {"scores": preds, "train_seconds": t_train, "rate_seconds": time.time() - t,
            "images_per_s": sum(ips) / len(ips)}


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


# ----- ground-truth cache -----------------------------------------------------------------------
def read_gt(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    d = pq.read_table(path).to_pylist()
    return {int(r["index"]): r for r in d}


def write_gt(path: Path, rows: dict[int, dict], meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([rows[i] for i in sorted(rows)])
    table = table.replace_schema_metadata({"settings": json.dumps(meta, default=str)})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


# ----- correlations and plot --------------------------------------------------------------------
def correlations(scores, top1) -> dict:
    """tau, rho, R between -score (loss: lower is better) and top-1 (higher is better)."""
    from scipy import stats

    neg = [-s for s in scores]
    return {"tau": float(stats.kendalltau(neg, top1)[0]), "rho": float(stats.spearmanr(neg, top1)[0]),
            "R": float(stats.pearsonr(neg, top1)[0])}


def ranks(values, descending: bool) -> list[int]:
    """1 = best."""
    order = sorted(range(len(values)), key=lambda i: -values[i] if descending else values[i])
    out = [0] * len(values)
    for r, i in enumerate(order):
        out[i] = r + 1
    return out


def plot(path: Path, top1, preds: dict[str, dict[int, list[float]]], stats_: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true_rank = ranks(top1, descending=True)
    fig, axes = plt.subplots(1, len(preds), figsize=(4.2 * len(preds), 4.2), squeeze=False)
    markers = "osD^v<>"
    for ax, (method, by_seed) in zip(axes[0], preds.items(), strict=True):
        for j, (seed, scores) in enumerate(sorted(by_seed.items())):
            ax.scatter(ranks(scores, descending=False), true_rank, marker=markers[j % len(markers)], alpha=0.6,
                       label=f"seed {seed}")
        n = len(top1)
        ax.plot([1, n], [1, n], color="grey", lw=0.8, ls="--")
        m = stats_[method]
        ax.set_title(f"{method}: tau {m['tau'][0]:.2f}, rho {m['rho'][0]:.2f}")
        ax.set_xlabel("predicted rank (1 = best)")
        ax.set_ylabel("true rank (stand-alone top-1)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_std(xs):
    import statistics

    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


# ----- main -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=RANK_BENCH.name, help="space name, space JSON file, or inline JSON")
    p.add_argument("--data", default="builtin:shapes", help="builtin:shapes or an ImageFolder root")
    p.add_argument("--resolution", type=int, default=None, help="default: the space's")
    p.add_argument("--train-size", type=int, default=2000, help="built-in data only")
    p.add_argument("--val-size", type=int, default=500, help="built-in data only")
    p.add_argument("--rating-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--archs", type=int, default=20, help="architectures in the ground truth")
    p.add_argument("--arch-seed", type=int, default=0, help="seed of the architecture sample")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="supernet training/rating seeds")
    p.add_argument("--epochs", type=int, default=6, help="stand-alone training epochs (ground truth)")
    p.add_argument("--supernet-epochs", type=int, default=None,
                   help="epochs of each DNA block supernet and of the SPOS supernet (default: --epochs)")
    p.add_argument("--teacher-epochs", type=int, default=None, help="default: 2 x --epochs")
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch (smoke tests)")
    p.add_argument("--rate-max-batches", type=int, default=None)
    p.add_argument("--calib-batches", type=int, default=2)
    p.add_argument("--gt-repeats", type=int, default=0,
                   help="train the first K architectures again with training seed 1 (ground-truth noise ceiling)")
    p.add_argument("--jobs", type=int, default=2, help="processes at once (one thread each); 0: all in this process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", default=None, help="folder for supernets, scores and predictions (default: temp)")
    p.add_argument("--cache", default=str(HERE / "cache"), help="ground-truth and teacher cache folder")
    p.add_argument("--plot", default=str(HERE / "ranking.png"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="", help="a sentence appended to the RESULTS.md section")
    return p


def correlation_table(preds: dict[str, dict[int, list[float]]], top1: list[float], seeds) -> dict[str, dict]:
    """Per method: mean/std of tau, rho and R over seeds against ``top1``, per seed, and how well
    the seeds' predictions agree with each other; adds the ``random`` baseline to ``preds``."""
    preds["random"] = {}
    for s in seeds:
        rng = random.Random(1000 + s)
        preds["random"][s] = [rng.random() for _ in top1]
    table: dict[str, dict] = {}
    for method, by_seed in preds.items():
        per = {s: correlations(by_seed[s], top1) for s in seeds}
        table[method] = {k: mean_std([per[s][k] for s in seeds]) for k in ("tau", "rho", "R")}
        table[method]["per_seed"] = per
        pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
        table[method]["seed_agreement"] = (
            mean_std([correlations([-x for x in by_seed[a]], by_seed[b])["tau"] for a, b in pairs])[0]
            if pairs else None)
    return table


def noise_ceiling(gt: dict, gt2: dict, n_repeat: int) -> dict | None:
    """Agreement of the ground truth with itself under another training seed (3+ repeats)."""
    if n_repeat < 3:
        return None
    a, b = [gt[i]["top1"] for i in range(n_repeat)], [gt2[i]["top1"] for i in range(n_repeat)]
    ceiling = {**correlations([-x for x in a], b), "n": n_repeat,
               "mean_abs_diff": sum(abs(x - y) for x, y in zip(a, b, strict=True)) / n_repeat}
    print(f"ground-truth noise (training seed 0 vs 1 on {n_repeat} archs): tau {ceiling['tau']:.3f}, "
          f"rho {ceiling['rho']:.3f}, R {ceiling['R']:.3f}, mean |diff| {ceiling['mean_abs_diff']:.1f} points")
    return ceiling


def print_table(top1: list[float], table: dict[str, dict]) -> None:
    import statistics

    print(f"\ntop-1 over {len(top1)} archs: {min(top1):.1f} - {max(top1):.1f} % (mean {statistics.fmean(top1):.1f},"
          f" std {statistics.pstdev(top1):.1f})")
    print(f"{'method':8s} {'Kendall tau':>16s} {'Spearman rho':>16s} {'Pearson R':>16s}")
    for method, m in table.items():
        print(f"{method:8s} " + " ".join(f"{m[k][0]:>+9.3f} ± {m[k][1]:.3f}" for k in ("tau", "rho", "R")))


def _settings(args, space):
    """The data, recipes and cache locations of a run (each cache file named by what it holds)."""
    from dna.data import DataConfig

    data = DataConfig(uri=args.data, resolution=args.resolution or space.resolution, batch_size=args.batch_size,
                      train_size=args.train_size, val_size=args.val_size, rating_size=args.rating_size,
                      num_classes=space.num_classes if args.data.startswith("builtin:") else 10)
    data_d = data.to_dict()
    sn_epochs = args.supernet_epochs or args.epochs
    gt_recipe = {"epochs": args.epochs, "steps_per_epoch": args.max_steps}
    t_recipe = {"epochs": args.teacher_epochs or 2 * args.epochs, "steps_per_epoch": args.max_steps}
    from dna.retrain import FAST_RECIPE

    cache = Path(args.cache)
    gt_meta = {"space": space.to_json(), "data": data_d, "recipe": {**FAST_RECIPE, **gt_recipe},
               "arch_seed": args.arch_seed}
    gt_path = cache / f"ground_truth-{digest(gt_meta)}.parquet"
    # --gt-repeats: the first K architectures trained again with another training seed (noise ceiling)
    gt2_recipe = {**gt_recipe, "seed": 1}
    gt2_meta = {**gt_meta, "recipe": {**FAST_RECIPE, **gt2_recipe}}
    gt2_path = cache / f"ground_truth-{digest(gt2_meta)}.parquet"
    t_meta = {"space": space.to_json(), "data": data_d, "recipe": {**FAST_RECIPE, **t_recipe},
              "arch_def": teacher_arch_def(space)}
    teacher_dir = cache / f"teacher-{digest(t_meta)}"
    space_uri = str(cache / f"space-{digest(space.to_json())}.json")
    cache.mkdir(parents=True, exist_ok=True)
    Path(space_uri).write_text(json.dumps(space.to_json()))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dna-ranking-"))
    out.mkdir(parents=True, exist_ok=True)

    return (data, data_d, sn_epochs, gt_recipe, gt2_recipe, t_recipe, gt_meta, gt2_meta, t_meta, gt_path,
            gt2_path, teacher_dir, space_uri, out)


def _collect(futs: dict, args, archs, gt_store: tuple, gt2_store: tuple, preds: dict, info: dict, pred_file) -> None:
    """Store every finished job as it ends: ground truth per architecture (so a run cut short
    resumes it), predictions per (method, seed)."""
    gt, gt_path, gt_meta = gt_store
    gt2, gt2_path, gt2_meta, n_repeat = gt2_store
    for f in cf.as_completed(futs):
        kind, key = futs[f]
        r = f.result()
        if kind == "gt":
            gt[key] = {"index": key, "arch": arch_key(archs[key]), **r}
            write_gt(gt_path, gt, gt_meta)
            print(f"ground truth {len(gt)}/{args.archs}: arch {key} top-1 {r['top1']:.1f}% "
                  f"({r['seconds']:.0f} s)", flush=True)
        elif kind == "gt2":
            gt2[key] = {"index": key, "arch": arch_key(archs[key]), **r}
            write_gt(gt2_path, gt2, gt2_meta)
            print(f"ground truth (training seed 1) {len(gt2)}/{n_repeat}: arch {key} top-1 {r['top1']:.1f}%",
                  flush=True)
        else:
            preds[kind][key] = r["scores"]
            info[kind][key] = r
            pred_file(kind, key).write_text(json.dumps(r))
            print(f"{kind} seed {key}: trained {r['train_seconds']:.0f} s, rated {r['rate_seconds']:.0f} s",
                  flush=True)


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    t_start = time.time()
    space = load_space(args.space)
    (data, data_d, sn_epochs, gt_recipe, gt2_recipe, t_recipe, gt_meta, gt2_meta, t_meta, gt_path, gt2_path,
     teacher_dir, space_uri, out) = _settings(args, space)

    archs = sample_archs(space, args.archs, args.arch_seed)
    archs_j = [[c.to_json() for c in a] for a in archs]
    gt = {i: r for i, r in read_gt(gt_path).items() if i < args.archs and r["arch"] == arch_key(archs[i])}
    n_repeat = min(args.gt_repeats, args.archs)
    gt2 = {i: r for i, r in read_gt(gt2_path).items() if i < n_repeat and r["arch"] == arch_key(archs[i])}
    gt_cached = len(gt)
    print(f"space {space.name}: {space.count():,} architectures; {args.archs} sampled, {len(gt)} cached in {gt_path}",
          flush=True)

    ctx = multiprocessing.get_context("spawn")
    timings: dict[str, float] = {}
    preds: dict[str, dict[int, list[float]]] = {"DNA": {}, "SPOS": {}}
    info: dict[str, dict[int, dict]] = {"DNA": {}, "SPOS": {}}
    pool_cm = (cf.ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.threads,))
               if args.jobs > 0 else _Inline())
    with pool_cm as pool:
        t0 = time.time()
        futs: dict[cf.Future, tuple] = {}
        pred_key = digest({"archs": archs_j, "data": data_d, "epochs": sn_epochs, "max_steps": args.max_steps,
                           "calib": args.calib_batches, "rate_max_batches": args.rate_max_batches,
                           "teacher": t_meta})

        def pred_file(method: str, s: int) -> Path:
            return out / f"pred-{method}-seed{s}-{pred_key}.json"

        def cached(method: str, s: int) -> bool:
            if pred_file(method, s).exists():
                r = json.loads(pred_file(method, s).read_text())
                preds[method][s], info[method][s] = r["scores"], r
                return True
            return False

        # Predictions first, ground truth last: ground truth is cached per architecture, so a run
        # cut short resumes it; predictions are cached per (method, seed) in --out.
        fut_teacher = pool.submit(teacher_job, space.to_json(), data_d, t_recipe, str(teacher_dir))
        for s in args.seeds:
            if not cached("SPOS", s):
                futs[pool.submit(spos_job, space.to_json(), data_d, sn_epochs, s, archs_j, args.calib_batches,
                                 args.max_steps, args.rate_max_batches)] = ("SPOS", s)
        teacher = fut_teacher.result()
        timings["teacher"] = teacher["seconds"]
        print(f"teacher: top-1 {teacher['top1']:.1f}% ({teacher['seconds']:.0f} s)", flush=True)
        for s in args.seeds:
            if not cached("DNA", s):
                futs[pool.submit(dna_job, space_uri, data_d, teacher, sn_epochs, s, str(out / f"dna-seed{s}"),
                                 archs_j, args.calib_batches, args.max_steps, args.rate_max_batches)] = ("DNA", s)
        for kind, done, recipe, n in (("gt", gt, gt_recipe, len(archs)), ("gt2", gt2, gt2_recipe, n_repeat)):
            for i in (i for i in range(n) if i not in done):
                folder = out / ("ground_truth" if kind == "gt" else "ground_truth_seed1") / f"arch{i:03d}"
                futs[pool.submit(gt_job, space.to_json(), archs_j[i], data_d, recipe, str(folder))] = (kind, i)
        _collect(futs, args, archs, (gt, gt_path, gt_meta), (gt2, gt2_path, gt2_meta, n_repeat), preds, info,
                 pred_file)
        timings["all jobs"] = time.time() - t0

    top1 = [gt[i]["top1"] for i in range(args.archs)]
    table = correlation_table(preds, top1, args.seeds)
    ceiling = noise_ceiling(gt, gt2, n_repeat)
    wall = time.time() - t_start

    gt_secs = [gt[i]["seconds"] for i in range(args.archs)]
    summary = {"space": space.name, "archs": args.archs, "seeds": args.seeds, "top1": top1, "correlations": table,
               "predictions": preds, "teacher_top1": teacher["top1"], "wall_s": wall, "timings": timings,
               "ground_truth": str(gt_path), "ground_truth_cached": gt_cached, "ground_truth_noise": ceiling}
    (out / "ranking.json").write_text(json.dumps(summary, indent=1, default=str))
    print_table(top1, table)
    print(f"wall time {wall:.0f} s; outputs in {out}")
    if not args.no_plot:
        plot(Path(args.plot), top1, preds, table)
    if not args.no_record:
        record("Ranking quality", report(args, argv, space, data, sn_epochs, t_recipe, teacher, top1, gt_secs,
                                         table, info, wall, gt_path, gt_cached, ceiling))
    return summary


def conclusion(table: dict, ceiling: dict | None = None) -> str:
    """A plain statement of who ranks better, judged against the seed-to-seed spread."""
    (dna, dna_sd), (spos, spos_sd) = table["DNA"]["tau"], table["SPOS"]["tau"]
    chance = table["random"]["tau"][1]          # how far random scores stray from 0 across seeds
    out = [f"Kendall tau: DNA {dna:+.2f} ± {dna_sd:.2f}, SPOS {spos:+.2f} ± {spos_sd:.2f}; random scores "
           f"scatter by ± {chance:.2f} across seeds."]
    above = [m for m, t in (("DNA", dna), ("SPOS", spos)) if t > chance]
    if not above:
        out.append("Neither DNA nor SPOS ranks these architectures better than chance here.")
    if dna - spos > max(dna_sd, spos_sd) and dna > chance:
        out.append("DNA ranks better than SPOS here.")
    else:
        out.append("DNA does **not** beat SPOS here by more than the seed-to-seed spread.")
    if ceiling and ceiling["tau"] < 0.5:
        out.append(f"The ground truth itself is noisy (tau {ceiling['tau']:.2f} between two training seeds), so these "
                   "figures say more about the short stand-alone training than about the predictors; train the "
                   "ground truth longer (`--epochs`) where CPU time allows.")
    return " ".join(out)


def report(args, argv, space, data, sn_epochs, t_recipe, teacher, top1, gt_secs, table, info, wall, gt_path,
           gt_cached=0, ceiling=None) -> str:
    import statistics

    cmd = "python benchmarks/ranking.py" + ("" if argv is None and len(sys.argv) < 2 else " " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} at the end"
    except OSError:
        load = ""
    lines = [
        f"Machine: {machine()}{load}",
        f"Command: `{cmd}`",
        f"Wall time: {wall / 60:.1f} min ({args.jobs} single-threaded processes at once; the ground truth is "
        f"cached in `{gt_path.relative_to(Path.cwd()) if gt_path.is_relative_to(Path.cwd()) else gt_path}`, "
        f"so a rerun with the same settings skips it; {gt_cached} of {args.archs} came from the cache in this run)",
        "",
        f"Settings: space `{space.name}` ({space.count():,} architectures, {len(space.blocks)} blocks, strides "
        f"{[b.stride for b in space.blocks]}, ops {list(space.ops)}), data `{data.uri}` at {data.resolution} px "
        f"(train {data.train_size}, val {data.val_size}, rating {data.rating_size}, batch {data.batch_size}). "
        f"Ground truth: {args.archs} architectures (sample seed {args.arch_seed}) trained stand-alone with "
        f"`RetrainConfig.fast` for {args.epochs} epochs, top-1 on val {min(top1):.1f}-{max(top1):.1f}% (mean "
        f"{statistics.fmean(top1):.1f}, std {statistics.pstdev(top1):.1f}), {statistics.fmean(gt_secs):.0f} s "
        f"per training. DNA: teacher (stride-matched `{space.name}` teacher, {t_recipe['epochs']} epochs, top-1 "
        f"{teacher['top1']:.1f}%), block supernets {sn_epochs} epochs each (library defaults: Adam, LR 0.002/"
        f"0.005, x0.9 per epoch), rated on the rating split (Eq. 7, BN recalibrated on {args.calib_batches} "
        f"batches); score = sum of block losses. SPOS: one whole-network supernet (final widths), "
        f"{sn_epochs} epochs of cross-entropy with one uniformly sampled path per step (same optimizer and "
        f"schedule as a DNA block), score = rating-split cross-entropy with inherited weights after per-path "
        f"BN recalibration. Random: seeded uniform scores. Seeds {args.seeds} (supernet training and rating).",
        "",
        "Correlation of -score (DNA block loss sum, SPOS val loss: lower is better) and of the random score "
        "with stand-alone top-1 (higher is better); mean ± std over seeds, then each seed:",
        "",
        "| method | Kendall tau | Spearman rho | Pearson R | per seed (tau / rho / R) |",
        "|---|---|---|---|---|",
    ]
    for method, m in table.items():
        per = "; ".join(f"{s}: {v['tau']:.2f} / {v['rho']:.2f} / {v['R']:.2f}" for s, v in m["per_seed"].items())
        lines.append(f"| {method} | {m['tau'][0]:+.3f} ± {m['tau'][1]:.3f} | {m['rho'][0]:+.3f} ± "
                     f"{m['rho'][1]:.3f} | {m['R'][0]:+.3f} ± {m['R'][1]:.3f} | {per} |")
    agree = [f"{m} {v['seed_agreement']:.2f}" for m, v in table.items() if v.get("seed_agreement") is not None]
    if agree:
        lines += ["", "Agreement of the predictions between seeds (mean pairwise Kendall tau): " + ", ".join(agree)
                  + "."]
    if ceiling:
        lines += ["", f"Ground-truth noise: the first {ceiling['n']} architectures trained again with another "
                  f"training seed agree with the first run by tau {ceiling['tau']:.2f}, rho {ceiling['rho']:.2f}, "
                  f"R {ceiling['R']:.2f} (mean |top-1 difference| {ceiling['mean_abs_diff']:.1f} points): no "
                  "predictor can be expected to beat that against a single training run."]
    costs = []
    for method in ("DNA", "SPOS"):
        if info[method]:
            tr = statistics.fmean(v["train_seconds"] for v in info[method].values())
            ra = statistics.fmean(v["rate_seconds"] for v in info[method].values())
            costs.append(f"{method} {tr:.0f} s training + {ra:.0f} s rating per seed")
    lines += ["", "Cost: " + "; ".join(costs) + f"; teacher {teacher['seconds']:.0f} s (once).",
              "", f"Scatter of predicted vs true rank: `{Path(args.plot).name}`."]
    lines += ["", conclusion(table, ceiling)]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
