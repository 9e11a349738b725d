"""Pure statistics of the ranking benchmark (no training, no torch): the ground-truth validity
gate, the stratified sampler's pick, and bootstrap confidence intervals of Kendall-tau differences.

Conventions: every score here is *higher is better* (accuracy, or a negated loss); a table of
scores is a 2-D array ``[seed, architecture]``. Kept apart from ``benchmarks/ranking.py`` so the
verdict's arithmetic is unit-tested on synthetic data in milliseconds.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# The gate's thresholds (issue #11): below them the ground truth is optimisation noise.
MIN_SEED_TAU = 0.5
MIN_RELIABILITY = 0.8
MIN_PAIR_SEEDS = 2


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall tau-b of two score lists (0.0 when either is constant, instead of NaN)."""
    t = stats.kendalltau(np.asarray(a, float), np.asarray(b, float))[0]
    return 0.0 if t is None or math.isnan(t) else float(t)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rho of two score lists (0.0 when either is constant, instead of NaN)."""
    if np.ptp(np.asarray(a, float)) == 0 or np.ptp(np.asarray(b, float)) == 0:
        return 0.0
    return float(stats.spearmanr(a, b)[0])


def _rows(table) -> np.ndarray:
    arr = np.asarray(table, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"expected a [seed, architecture] table with >= 3 architectures, got shape {arr.shape}")
    return arr


def mean_pairwise(table, fn) -> float:
    """Mean of ``fn(row_i, row_j)`` over all pairs of seeds (rows)."""
    rows = _rows(table)
    if len(rows) < 2:
        raise ValueError(f"seed-to-seed agreement needs >= 2 seeds, got {len(rows)}")
    return float(np.mean([fn(a, b) for a, b in itertools.combinations(rows, 2)]))


def spearman_brown(r: float, k: int) -> float:
    """Reliability of the mean of ``k`` runs whose pairwise correlation is ``r``."""
    if k < 1:
        raise ValueError(f"k={k} runs: expected >= 1")
    if r <= -1 / max(k - 1, 1) or k == 1:
        return r
    return k * r / (1 + (k - 1) * r)


@dataclass
class Gate:
    """Figures of the ground-truth validity gate; ``ok`` says whether a verdict may be given."""

    seed_tau: float            # mean pairwise Kendall tau between training seeds
    seed_r: float              # mean pairwise Pearson r between training seeds
    reliability: float         # Spearman-Brown reliability of the seed mean, from ``seed_r``
    seeds: int
    pairs: list[dict]          # per nested pair: indices and in how many seeds its order held
    ok: bool
    reasons: list[str]

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        pairs = ", ".join(f"{p['name']} {p['held']}/{self.seeds}" for p in self.pairs) or "none"
        return (f"seed-to-seed Kendall tau {self.seed_tau:.3f} (need >= {MIN_SEED_TAU}), reliability of the "
                f"{self.seeds}-seed mean {self.reliability:.3f} (Spearman-Brown from mean pairwise r "
                f"{self.seed_r:.3f}; need >= {MIN_RELIABILITY}), nested pairs in order: {pairs} "
                f"(need >= {MIN_PAIR_SEEDS} seeds each)")


def gate(truth, pairs: Sequence[tuple[str, int, int]], min_tau: float = MIN_SEED_TAU,
         min_reliability: float = MIN_RELIABILITY, min_pair_seeds: int = MIN_PAIR_SEEDS) -> Gate:
    """Check a ground truth ``[training seed, architecture]`` of accuracies before any predictor is
    compared with it. ``pairs``: (name, better index, worse index) whose true order is known."""
    rows = _rows(truth)
    k = len(rows)
    tau = mean_pairwise(rows, kendall)
    r = mean_pairwise(rows, lambda a, b: float(np.corrcoef(a, b)[0, 1]) if np.std(a) and np.std(b) else 0.0)
    rel = spearman_brown(r, k)
    held = []
    for name, better, worse in pairs:
        n = int(sum(row[better] > row[worse] for row in rows))
        held.append({"name": name, "better": int(better), "worse": int(worse), "held": n})
    reasons = []
    if not tau >= min_tau:
        reasons.append(f"seed-to-seed tau {tau:.3f} < {min_tau}")
    if not rel >= min_reliability:
        reasons.append(f"reliability {rel:.3f} < {min_reliability}")
    need = min(min_pair_seeds, k)
    reasons += [f"nested pair {p['name']} in order in only {p['held']}/{k} seeds" for p in held if p["held"] < need]
    return Gate(tau, r, rel, k, held, not reasons, reasons)


def stratified_pick(costs: Sequence[float], n: int, seed: int) -> list[int]:
    """Indices of ``n`` distinct items spread evenly over the cost range: the cheapest and the
    dearest item, then one item drawn at random from each of ``n - 2`` equal-width cost bins
    (an empty bin takes the unused item nearest its centre). Seeded, deterministic."""
    costs = [float(c) for c in costs]
    if n < 2:
        raise ValueError(f"n={n}: a stratified sample needs >= 2 items (the cheapest and the dearest)")
    if n > len(costs):
        raise ValueError(f"n={n}: only {len(costs)} candidates to pick from")
    rng = random.Random(seed)
    lo, hi = min(range(len(costs)), key=costs.__getitem__), max(range(len(costs)), key=costs.__getitem__)
    if lo == hi:
        raise ValueError("every candidate has the same cost: nothing to stratify")
    chosen = [lo, hi]
    cmin, cmax = costs[lo], costs[hi]
    width = (cmax - cmin) / (n - 2) if n > 2 else 0.0
    for b in range(n - 2):
        a, z = cmin + b * width, cmin + (b + 1) * width
        inside = [i for i, c in enumerate(costs) if a <= c < z and i not in chosen]
        if inside:
            chosen.append(rng.choice(inside))
        else:
            mid = (a + z) / 2
            chosen.append(min((i for i in range(len(costs)) if i not in chosen), key=lambda i: abs(costs[i] - mid)))
    return chosen


def mean_tau(pred, truth) -> float:
    """Mean over the predictor's seeds (rows of ``pred``) of Kendall tau against ``truth``."""
    return float(np.mean([kendall(p, truth) for p in np.atleast_2d(np.asarray(pred, float))]))


def bootstrap_tau_diff(pred_a, pred_b, truth, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> dict:
    """Difference in mean Kendall tau (vs the seed-mean ground truth) of predictor A minus B, with
    a percentile bootstrap CI that resamples architectures (the same draw for both predictors),
    each predictor's seeds and the ground truth's training seeds. Tables are ``[seed, arch]``;
    a deterministic predictor is one row."""
    a, b, t = (np.atleast_2d(np.asarray(x, float)) for x in (pred_a, pred_b, truth))
    n = t.shape[1]
    if a.shape[1] != n or b.shape[1] != n:
        raise ValueError(f"predictions cover {a.shape[1]} and {b.shape[1]} architectures, the truth {n}")
    if n < 3:
        raise ValueError(f"{n} architectures: a bootstrap of Kendall tau needs >= 3")
    point = mean_tau(a, t.mean(0)) - mean_tau(b, t.mean(0))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        tm = t[rng.integers(0, len(t), len(t))].mean(0)[idx]
        ra, rb = a[rng.integers(0, len(a), len(a))][:, idx], b[rng.integers(0, len(b), len(b))][:, idx]
        diffs[i] = mean_tau(ra, tm) - mean_tau(rb, tm)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(point), "lo": float(lo), "hi": float(hi), "n_boot": n_boot, "seed": seed}


def rank_among(value: float, others: Sequence[float]) -> int:
    """1-based rank of ``value`` among ``others`` and itself (1 = highest; ties count in its favour)."""
    return 1 + sum(o > value for o in others)


def plain_verdict(dna_minus: dict[str, dict], ceiling: float) -> str:
    """One sentence per baseline from its CI of tau(DNA) - tau(baseline): better, worse, or no
    detectable difference (the CI holds 0), with the ground-truth ceiling beside it."""
    better = [b for b, d in dna_minus.items() if d["lo"] > 0]
    worse = [b for b, d in dna_minus.items() if d["hi"] < 0]
    tie = [b for b in dna_minus if b not in better and b not in worse]
    out = []
    if better:
        out.append(f"DNA ranks better than {', '.join(better)} (95% CI of the tau difference above 0).")
    if worse:
        out.append(f"DNA ranks **worse** than {', '.join(worse)} (95% CI below 0).")
    if tie:
        out.append(f"No detectable difference between DNA and {', '.join(tie)} (95% CI contains 0).")
    out.append(f"Ceiling: the ground truth agrees with itself across training seeds at tau {ceiling:.2f}.")
    return " ".join(out)
