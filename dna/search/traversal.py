"""Exact traversal search over a scores table (SPEC section 6, Eq. 4, Algorithm 2).

The search is a multiple-choice knapsack with a width chain: pick one row per block (block k's
row must take the width block k-1's row hands over; block 0 takes the fixed first layer's width)
to minimise ``sum_k lambda_k * loss_k`` subject to totals (fixed stem/head included) of the costs
of ``dna.cost_registry`` (params, FLOPs, latency...) under their limits. The answer is the exact
optimum over the whole space (about 2e17 architectures for the 6-op MBConv space), found by
dynamic programming over blocks:

* the state after block k is the width it hands over;
* per state, a set of partial architectures (prefixes) is kept, pruned by *dominance*: a prefix
  with another prefix of the same state that is no worse in every constrained cost and better in
  the order below can never be part of the optimum (swap it in: the completion is still feasible
  and better). For top-K a prefix is dropped only once K others dominate it (K layers are kept);
* prefixes that cannot be completed within a budget (their cost plus the cheapest completion from
  their state exceeds it) are dropped;
* prefixes whose loss plus a lower bound of their best completion (the exact one-cost suffix
  fronts, one per constrained cost) exceeds an upper bound on the K-th best objective are dropped
  as well. The upper bound comes from architectures known to meet the limits: the best points
  of the one-cost fronts (two or more limits), or the best architecture and its one-block
  neighbours (top-K);
* before all this, rows are pruned the same way within each (block, in width, out width) group.

A cost combined by ``max`` (a peak) is not a knapsack dimension: its limit holds exactly when the
fixed part and every chosen row are under it, so it filters rows before the traversal.

With one constraint the sets are 1-D Pareto fronts (one sort and a cumulative minimum); with no
constraint they hold the K best. Back-pointers give the choices of the winners.

Every search (top-1 included) goes first to the threshold enumeration of ``dna.search.topk``
(bounded work, fast when the limits prune little, where K dominance layers are slowest); the
layers above answer only when it cannot vouch for its result, and ``reference_search`` runs them
alone.

Order and ties: architectures are ordered by weighted loss, then the summed costs in registry
order (params, FLOPs, latency), then their rows in table order (block 0 first; rows sorted by
block, cell, ops, in_channels), so results are deterministic. Losses are summed block by block in float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dna.cost_registry import (
    BY_NAME,
    MAX,
    NAMES,
    SUM,
    check_limits,
    get_cost,
    legacy_fields,
    merge_limits,
)
from dna.cost_registry import COSTS as REGISTRY
from dna.errors import DnaError
from dna.rate.scores import ScoresMeta, conform, validate
from dna.search import topk
from dna.space import BlockChoice, get_family, get_space

COSTS = NAMES                                                  # every cost a search can limit
FRONT_COSTS = tuple(c.name for c in REGISTRY if c.combine == SUM)  # the axes of a Pareto front
_INF = math.inf
_CHUNK = 1 << 20  # candidate prefixes materialised at once
MAX_TOP_K = 10_000  # the K best are kept per state: bounded, as `dna search --top-k` is
_EXACT = 2**53    # integer totals above this lose exactness in float comparisons


@legacy_fields("", "costs")
@dataclass(frozen=True)
class SearchResult:
    """One architecture: objective, totals (fixed parts included; ``costs``: cost name -> total,
    read as ``r.params``, ``r.flops``, ``r.latency_ms``... (None when the table has no column))
    and the per-block choice."""

    loss: float
    choices: list[BlockChoice]
    arch_def: list[list[str]] = field(repr=False)
    costs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d: dict = {"loss": self.loss}
        d.update({c: self.costs[c] for c in COSTS if c in self.costs})
        d["blocks"] = [c.to_json() for c in self.choices]
        d["arch_def"] = self.arch_def
        return d


# ------------------------------------------------------------------------------------------
# The table as arrays


class Problem:
    """A validated scores table as numpy arrays, grouped by (block, in width, out width).

    Build once and search many times (e.g. several budgets): ``search``/``pareto_front`` accept
    a ``Problem`` in place of the table.
    """

    def __init__(self, table: pa.Table, meta: ScoresMeta):
        if not isinstance(meta, ScoresMeta):
            raise DnaError(f"expected a ScoresMeta, got {type(meta).__name__}")
        meta.check()
        table = conform(table)  # e.g. dictionary-typed partition columns of a dataset read directly
        validate(table)
        table = table.sort_by([("block", "ascending"), ("cell", "ascending"), ("ops", "ascending"),
                               ("in_channels", "ascending")])
        self.table = table
        self.meta = meta
        self.space = get_space(meta.space)
        self.n_blocks = len(self.space.blocks)
        self.block = _np(table, "block", np.int64)
        self.cell = _np(table, "cell", np.int64)
        self.in_ch = _np(table, "in_channels", np.int64)
        self.out_ch = _np(table, "out_channels", np.int64)
        self.loss = _np(table, "loss", np.float64)
        self.costs: dict[str, np.ndarray] = {
            c.name: _np(table, c.name, np.int64 if c.is_int else np.float64)
            for c in REGISTRY if c.name in table.column_names
        }
        self.has_latency = "latency_ms" in self.costs
        self.fixed: dict[str, float] = {c.name: c.value(meta.fixed.get(c.name) or 0) for c in REGISTRY}
        self.first_width = int(self.space.in_widths(0)[0])
        self._check_space()
        # groups: block -> {(in width, out width): row indices in table order}
        self.groups: list[dict[tuple[int, int], np.ndarray]] = [{} for _ in range(self.n_blocks)]
        order = np.lexsort((np.arange(len(self.block)), self.out_ch, self.in_ch, self.block))
        keys = np.stack([self.block[order], self.in_ch[order], self.out_ch[order]], axis=1)
        cut = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1
        for seg in np.split(order, cut):
            k, w_in, w_out = (int(v) for v in (self.block[seg[0]], self.in_ch[seg[0]], self.out_ch[seg[0]]))
            self.groups[k][(w_in, w_out)] = seg

    def _check_space(self) -> None:
        s, nb = self.space, self.n_blocks
        bad = np.flatnonzero((self.block < 0) | (self.block >= nb))
        if len(bad):
            raise DnaError(f"scores table: row {self._row(bad[0])} names block {self.block[bad[0]]}, "
                           f"but space {s.name!r} has blocks 0..{nb - 1}")
        present = np.bincount(self.block, minlength=nb)
        if not present.all():
            k = int(np.flatnonzero(present == 0)[0])
            raise DnaError(f"scores table has no rows for block {k}; space {s.name!r} has {nb} blocks "
                           f"and every block needs rated paths")
        for k in range(nb):
            widths = np.asarray(s.in_widths(k))
            sel = (self.block == k) & ~np.isin(self.in_ch, widths)
            if sel.any():
                i = int(np.flatnonzero(sel)[0])
                what = ("the fixed first layer's width" if k == 0
                        else f"the widths of block {k - 1}'s cells")
                raise DnaError(f"scores table: row {self._row(i)} has in_channels {self.in_ch[i]}, but "
                               f"block {k} takes {what}: {widths.tolist()}")
        get_family(s).check_rows(s, self.block, self.cell, self.out_ch, self.table.column("ops"), self._row)
        self._check_cells()
        self._check_sums()

    def _check_cells(self) -> None:
        """Every cell the space declares has rated rows: a block missing a cell's rows would be
        searched as if that cell did not exist (a lost rating shard, not a smaller space)."""
        for k, b in enumerate(self.space.blocks):
            n_cells = len(getattr(b, "cells", (None,)))
            present = set(np.unique(self.cell[self.block == k]).tolist())
            missing = [c for c in range(n_cells) if c not in present]
            if missing:
                raise DnaError(f"scores table has no rows for cell {missing[0]} of block {k}; space "
                               f"{self.space.name!r} declares cells 0..{n_cells - 1} in block {k} and every "
                               f"cell needs rated paths (rate block {k} again)")

    def _check_sums(self) -> None:
        """Totals of integer costs must stay exact: the traversal sums them in int64 and compares
        them with float limits, so the largest possible total (fixed part plus every block's
        largest row, in Python ints) must be at most 2**53."""
        for c in REGISTRY:
            if not c.is_int or c.name not in self.costs:
                continue
            col = self.costs[c.name]
            worst = int(self.fixed[c.name])
            for k in range(self.n_blocks):
                rows = col[self.block == k]
                if len(rows):
                    worst = max(worst, int(rows.max())) if c.combine == MAX else worst + int(rows.max())
            if worst > _EXACT:
                i = int(np.argmax(col))
                raise DnaError(f"scores table: {c.name} totals reach {worst:,}, beyond {_EXACT:,} (2**53) where "
                               f"sums and limits stop being exact (largest row {self._row(i)}: {c.name} "
                               f"{int(col[i]):,}); expected realistic {c.name} values")

    def count(self) -> int:
        """Exact number of architectures the table holds (widths chained), in Python ints."""
        ways: dict[int, int] = {self.first_width: 1}
        for k in range(self.n_blocks):
            nxt: dict[int, int] = {}
            for (w_in, w_out), rows in self.groups[k].items():
                if w_in in ways:
                    nxt[w_out] = nxt.get(w_out, 0) + ways[w_in] * len(rows)
            ways = nxt
        return sum(ways.values())

    def _row(self, i: int) -> dict:
        t = self.table
        return {k: t.column(k)[int(i)].as_py() for k in ("block", "cell", "ops", "in_channels")}

    # ----- per-state cheapest prefix / suffix ----------------------------------------------
    def min_prefix(self, cost: np.ndarray, combine: str = SUM) -> list[dict[int, float]]:
        """``out[k][w]``: cheapest cost of blocks 0..k-1 handing width ``w`` to block k (costs
        of blocks summed, or with ``max`` their largest)."""
        op = np.maximum if combine == MAX else np.add
        out: list[dict[int, float]] = [{self.first_width: 0}]
        for k in range(self.n_blocks):
            nxt: dict[int, float] = {}
            for (w_in, w_out), rows in self.groups[k].items():
                if w_in in out[k]:
                    v = op(out[k][w_in], cost[rows].min())
                    nxt[w_out] = min(nxt.get(w_out, _INF), v)
            out.append(nxt)
        return out

    def min_suffix(self, cost: np.ndarray, combine: str = SUM) -> list[dict[int, float]]:
        """``out[k][w]``: cheapest cost of blocks k..N-1 when block k receives width ``w`` (summed,
        or with ``max`` the smallest achievable peak)."""
        op = np.maximum if combine == MAX else np.add
        out: list[dict[int, float]] = [{} for _ in range(self.n_blocks)] + [None]  # type: ignore[list-item]
        for k in reversed(range(self.n_blocks)):
            cur: dict[int, float] = {}
            for (w_in, w_out), rows in self.groups[k].items():
                rest = 0 if k == self.n_blocks - 1 else out[k + 1].get(w_out, _INF)
                cur[w_in] = min(cur.get(w_in, _INF), op(cost[rows].min(), rest))
            out[k] = cur
        return out

    def smallest(self, name: str) -> float:
        """The smallest total (fixed part included) of one cost over all architectures."""
        c = BY_NAME[name]
        rest = self.min_suffix(self.costs[name], c.combine)[0].get(self.first_width, _INF)
        return max(self.fixed[name], rest) if c.combine == MAX else self.fixed[name] + rest

    def tie_names(self) -> list[str]:
        """The summed costs of this table, in registry order: the tie-break after the loss."""
        return [c.name for c in REGISTRY if c.combine == SUM and c.name in self.costs]

    def tie_costs(self) -> list[np.ndarray]:
        return [self.costs[c] for c in self.tie_names()]

    def where(self, ok: np.ndarray) -> Problem:
        """This problem with only the rows where ``ok`` holds (row indices unchanged)."""
        sub = copy.copy(self)
        sub.groups = [{key: rows[ok[rows]] for key, rows in g.items() if ok[rows].any()} for g in self.groups]
        return sub


def _np(table: pa.Table, name: str, dtype) -> np.ndarray:
    return np.ascontiguousarray(table.column(name).to_numpy(), dtype=dtype)


# ------------------------------------------------------------------------------------------
# Dominance


def _key_order(obj: np.ndarray, ties: Sequence[np.ndarray], lex: np.ndarray) -> np.ndarray:
    """Permutation sorting by (obj, *ties, lex); a plain argsort when obj has no ties."""
    o = np.argsort(obj, kind="stable")
    s = obj[o]
    if len(s) > 1 and np.any(s[1:] == s[:-1]):
        o = np.lexsort((lex, *reversed(list(ties)), obj))
    return o


def _nondominated(costs: Sequence[np.ndarray]) -> np.ndarray:
    """Items are in key order; keep those no earlier item matches or beats in every cost."""
    n = len(costs[0]) if costs else 0
    d = len(costs)
    if d == 0:
        raise AssertionError("use _first_k for unconstrained sets")
    if d == 1:
        c = costs[0]
        if n == 0:
            return np.zeros(0, bool)
        prev = np.minimum.accumulate(c)
        keep = np.empty(n, bool)
        keep[0] = True
        keep[1:] = c[1:] < prev[:-1]
        return keep
    if d == 2:
        return _nondominated2(costs[0], costs[1])
    return _nondominated_n(np.stack([np.asarray(c, np.float64) for c in costs], axis=1))


def _nondominated2(p: np.ndarray, f: np.ndarray, chunk: int = 512) -> np.ndarray:
    """2-D version: a staircase of the (p, f) minima seen so far, updated chunk by chunk."""
    n = len(p)
    keep = np.zeros(n, bool)
    sp = p[:0]
    sf = f[:0]
    for start in range(0, n, chunk):
        cp, cf = p[start:start + chunk], f[start:start + chunk]
        if len(sp):
            i = np.searchsorted(sp, cp, side="right") - 1
            dom = (i >= 0) & (sf[np.maximum(i, 0)] <= cf)
        else:
            dom = np.zeros(len(cp), bool)
        idx = np.flatnonzero(~dom)
        if len(idx) > 1:
            qp, qf = cp[idx], cf[idx]
            m = np.triu((qp[:, None] <= qp[None, :]) & (qf[:, None] <= qf[None, :]), 1)
            dom[idx[m.any(axis=0)]] = True
        alive = ~dom
        keep[start:start + len(cp)] = alive
        if alive.any():
            ap = np.concatenate([sp, cp[alive]])
            af = np.concatenate([sf, cf[alive]])
            o = np.lexsort((af, ap))
            ap, af = ap[o], af[o]
            run = np.minimum.accumulate(af)
            s = np.ones(len(af), bool)
            s[1:] = af[1:] < run[:-1]
            sp, sf = ap[s], af[s]
    return keep


def _nondominated_n(c: np.ndarray, chunk: int = 256, cap: int = 8192) -> np.ndarray:
    """d >= 3: compare with earlier survivors (at most ``cap`` of them: a weaker, still exact,
    pruning when more survive) and within each chunk."""
    n = len(c)
    keep = np.zeros(n, bool)
    ref = c[:0]
    for start in range(0, n, chunk):
        q = c[start:start + chunk]
        dom = np.zeros(len(q), bool)
        for r0 in range(0, len(ref), 2048):
            r = ref[r0:r0 + 2048]
            dom |= np.all(r[:, None, :] <= q[None, :, :], axis=2).any(axis=0)
        idx = np.flatnonzero(~dom)
        if len(idx) > 1:
            qq = q[idx]
            m = np.triu(np.all(qq[:, None, :] <= qq[None, :, :], axis=2), 1)
            dom[idx[m.any(axis=0)]] = True
        keep[start:start + len(q)] = ~dom
        if len(ref) < cap:
            ref = np.concatenate([ref, q[~dom][: cap - len(ref)]])
    return keep


def _keep_layers(costs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Items in key order; keep the first ``k`` non-dominated layers (exact for top-k)."""
    n = len(costs[0]) if costs else 0
    keep = np.zeros(n, bool)
    alive = np.arange(n)
    for _ in range(k):
        if not len(alive):
            break
        m = _nondominated([c[alive] for c in costs])
        keep[alive[m]] = True
        alive = alive[~m]
    return keep


# ------------------------------------------------------------------------------------------
# The traversal


@dataclass
class _Level:
    obj: np.ndarray
    costs: list[np.ndarray]       # all tie costs (params, flops[, latency]) in COSTS order
    lex: np.ndarray               # rank of the row tuple in table order (ties)
    parent: np.ndarray
    row: np.ndarray
    state: np.ndarray             # width handed to the next block

    def take(self, idx: np.ndarray) -> _Level:
        return _Level(self.obj[idx], [c[idx] for c in self.costs], self.lex[idx], self.parent[idx],
                      self.row[idx], self.state[idx])


def _concat(levels: list[_Level], n_costs: int) -> _Level:
    if not levels:
        e = np.zeros(0, np.int64)
        return _Level(np.zeros(0), [e] * n_costs, e, e, e, e)
    return _Level(
        np.concatenate([lv.obj for lv in levels]),
        [np.concatenate([lv.costs[i] for lv in levels]) for i in range(n_costs)],
        np.concatenate([lv.lex for lv in levels]),
        np.concatenate([lv.parent for lv in levels]),
        np.concatenate([lv.row for lv in levels]),
        np.concatenate([lv.state for lv in levels]),
    )


class _Bound:
    """Lower bound on the objective of the best completion from a state, given remaining budget:
    the max over constrained costs of the exact one-cost suffix front (min objective of blocks
    k..N-1 with that cost <= budget)."""

    def __init__(self, fronts: list[list[dict[int, tuple[np.ndarray, np.ndarray]]]], obj: np.ndarray):
        self.fronts = fronts  # per constrained dim: per block k: state -> (costs asc, min obj)
        # sums are taken in another order than the forward pass: allow for rounding
        self.tol = 1e-9 * (1.0 + len(fronts[0]) * float(np.abs(obj).max())) if fronts else 0.0

    def lower(self, k: int, state: int, rest: list[np.ndarray]) -> np.ndarray:
        lb = np.full(len(rest[0]), -_INF)
        for d, front in enumerate(self.fronts):
            fr = front[k].get(state)
            if fr is None:
                return np.full(len(lb), _INF)
            cost, best = fr
            i = np.searchsorted(cost, rest[d], side="right") - 1
            v = np.where(i >= 0, best[np.maximum(i, 0)], _INF)
            lb = np.maximum(lb, v)
        return lb


def _traverse(P: Problem, obj: np.ndarray, dims: list[str], budgets: list[float], top_k: int,
              front: bool = False, upper: float = _INF, bound: _Bound | None = None) -> list[tuple]:
    """The exact best ``top_k`` (or, with ``front``, the exact objective-vs-dims[0] front).

    ``budgets`` exclude the fixed part. Returns [(objective, [row per block]), ...] best first
    (front: by cost ascending).
    """
    ties = P.tie_costs()
    names = P.tie_names()
    di = [names.index(d) for d in dims]
    n_rows = len(obj)
    suf = [P.min_suffix(P.costs[d]) for d in dims]
    pre = [P.min_prefix(P.costs[d]) for d in dims]
    nb = P.n_blocks

    def prune(lv: _Level, k: int, w_out: int) -> _Level:
        if not len(lv.obj):
            return lv
        ok = np.ones(len(lv.obj), bool)
        for j, d in enumerate(di):
            rest = suf[j][k + 1].get(w_out, _INF) if k + 1 < nb else 0
            ok &= lv.costs[d] + rest <= budgets[j]
        if bound is not None and upper < _INF:
            idx = np.flatnonzero(ok)
            if k + 1 < nb:
                rem = [budgets[j] - lv.costs[d][idx] for j, d in enumerate(di)]
                lb = bound.lower(k + 1, w_out, rem)
            else:
                lb = 0.0
            ok[idx[lv.obj[idx] + lb > upper + bound.tol]] = False
        lv = lv.take(np.flatnonzero(ok))
        o = _key_order(lv.obj, lv.costs, lv.lex)
        lv = lv.take(o)
        if di:
            keep = _keep_layers([lv.costs[d] for d in di], top_k)
        else:
            keep = np.zeros(len(lv.obj), bool)
            keep[:top_k] = True
        return lv.take(np.flatnonzero(keep))

    # rows pruned within their group
    groups: list[dict[tuple[int, int], np.ndarray]] = []
    for k in range(nb):
        g = {}
        for (w_in, w_out), rows in P.groups[k].items():
            if k == 0 and w_in != P.first_width:
                continue
            ok = np.ones(len(rows), bool)
            for j, d in enumerate(dims):
                before = pre[j][k].get(w_in, _INF)
                after = suf[j][k + 1].get(w_out, _INF) if k + 1 < nb else 0
                ok &= P.costs[d][rows] + before + after <= budgets[j]
            r = rows[ok]
            if not len(r):
                continue
            o = _key_order(obj[r], [t[r] for t in ties], r)
            r = r[o]
            if di:
                r = r[_keep_layers([ties[d][r] for d in di], top_k)]
            else:
                r = r[:top_k]
            g[(w_in, w_out)] = r
        groups.append(g)

    levels: list[_Level] = []
    prev: _Level | None = None
    for k in range(nb):
        by_state: dict[int, list[_Level]] = {}
        for (w_in, w_out), rows in groups[k].items():
            if prev is None:
                pidx = np.array([-1])
                base_obj = np.zeros(1)
                base_costs = [np.zeros(1, t.dtype) for t in ties]
                base_lex = np.zeros(1, np.int64)
            else:
                pidx = np.flatnonzero(prev.state == w_in)
                if not len(pidx):
                    continue
                base_obj = prev.obj[pidx]
                base_costs = [c[pidx] for c in prev.costs]
                base_lex = prev.lex[pidx]
            nr = len(rows)
            step = max(1, _CHUNK // nr)
            for a in range(0, len(pidx), step):
                pi = np.repeat(np.arange(a, min(a + step, len(pidx))), nr)
                ri = np.tile(rows, len(pi) // nr)
                cand = _Level(
                    base_obj[pi] + obj[ri],
                    [bc[pi] + t[ri] for bc, t in zip(base_costs, ties, strict=True)],
                    base_lex[pi] * n_rows + ri,
                    pidx[pi],
                    ri,
                    np.full(len(ri), w_out, np.int64),
                )
                # pruning a piece first is exact: what survives the whole survives its piece
                pieces = by_state.setdefault(w_out, [])
                pieces.append(prune(cand, k, w_out))
                if len(pieces) > 1 and sum(len(x.obj) for x in pieces) > _CHUNK:
                    by_state[w_out] = [prune(_concat(pieces, len(ties)), k, w_out)]
        cur = []
        for w_out in sorted(by_state):
            pieces = by_state[w_out]
            cur.append(pieces[0] if len(pieces) == 1 else prune(_concat(pieces, len(ties)), k, w_out))
        lv = _concat(cur, len(ties))
        # lex: rank of the (parent tuple, row) order, comparable across states
        o = np.argsort(lv.lex, kind="stable")
        rank = np.empty(len(o), np.int64)
        rank[o] = np.arange(len(o))
        lv.lex = rank
        levels.append(lv)
        prev = lv
        if not len(lv.obj):
            return []

    last = levels[-1]
    o = _key_order(last.obj, last.costs, last.lex)
    if front:
        keep = o[_nondominated([last.costs[di[0]][o]])]
        sel = keep[np.lexsort((last.obj[keep], last.costs[di[0]][keep]))]
    else:
        sel = o[:top_k]
    out = []
    for i in sel:
        rows = []
        j = int(i)
        for k in reversed(range(nb)):
            rows.append(int(levels[k].row[j]))
            j = int(levels[k].parent[j])
        out.append((float(last.obj[i]), rows[::-1]))
    return out


def _suffix_fronts(P: Problem, obj: np.ndarray, dim: str, budget: float) -> list[dict]:
    """Per block k and width w entering it: the exact front (cost asc, min objective) of the
    blocks k..N-1 under one cost."""
    cost = P.costs[dim]
    nb = P.n_blocks
    pre = P.min_prefix(cost)
    fronts: list[dict] = [{} for _ in range(nb)]
    for k in reversed(range(nb)):
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for (w_in, w_out), rows in P.groups[k].items():
            before = pre[k].get(w_in)
            if before is None:
                continue
            rows = rows[_front1(cost[rows], obj[rows])]
            if k == nb - 1:
                c, v = cost[rows], obj[rows]
            else:
                nxt = fronts[k + 1].get(w_out)
                if nxt is None:
                    continue
                c = (cost[rows][:, None] + nxt[0][None, :]).ravel()
                v = (obj[rows][:, None] + nxt[1][None, :]).ravel()
            ok = c + before <= budget
            parts.setdefault(w_in, []).append((c[ok], v[ok]))
        for w_in, lst in parts.items():
            c = np.concatenate([x[0] for x in lst])
            v = np.concatenate([x[1] for x in lst])
            if not len(c):
                continue
            keep = _front1(c, v)
            c, v = c[keep], v[keep]
            o = np.argsort(c, kind="stable")
            fronts[k][w_in] = (c[o], v[o])
    return fronts


def _front1(cost: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Indices of the (cost, obj) front (no tie-break needed: used for bounds only)."""
    o = np.lexsort((cost, obj))
    return o[_nondominated([cost[o]])]


# ------------------------------------------------------------------------------------------
# Public API


def _fmt(name: str, v: float) -> str:
    return get_cost(name).show(v)


def _limits(P: Problem, limits: Mapping) -> dict[str, float]:
    """Checked limits (cost name -> limit) this table can answer: it needs each cost's column."""
    out = check_limits(limits)
    for name, v in out.items():
        if name not in P.costs:
            c = BY_NAME[name]
            raise DnaError(f"{c.limit_key}={v!r} needs {c.column}, and this scores table has none: "
                           f"{c.missing}")
    return out


def _objective(P: Problem, lambdas) -> np.ndarray:
    if lambdas is None:
        return P.loss
    try:
        lam = [float(x) for x in lambdas]
    except (TypeError, ValueError) as exc:
        raise DnaError(f"lambdas={lambdas!r}: expected one number per block") from exc
    if len(lam) != P.n_blocks:
        raise DnaError(f"lambdas has {len(lam)} values {lam}, but space {P.space.name!r} has "
                       f"{P.n_blocks} blocks: give one weight per block")
    for i, x in enumerate(lam):
        if not math.isfinite(x) or x < 0:
            raise DnaError(f"lambdas[{i}]={x}: expected a finite number >= 0")
    return np.asarray(lam, np.float64)[P.block] * P.loss


def _check_top_k(top_k) -> int:
    """An integer in 1..MAX_TOP_K: the traversal keeps ``top_k`` layers per state, so an unbounded
    one allocates without limit."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= MAX_TOP_K:
        raise DnaError(f"top_k={top_k!r}: expected an integer in 1..{MAX_TOP_K}")
    return int(top_k)


def _problem(table, meta) -> Problem:
    if isinstance(table, Problem):
        return table
    if isinstance(table, str):
        from dna.rate.scores import read_scores

        table, meta = read_scores(table)
    if meta is None:
        meta = ScoresMeta.from_metadata(table.schema.metadata)
    return Problem(table, meta)


def _result(P: Problem, obj: float, rows: list[int]) -> SearchResult:
    ops = P.table.column("ops")
    choices = [BlockChoice(k, int(P.cell[r]), tuple(ops[r].as_py().split("-"))) for k, r in enumerate(rows)]
    idx = np.asarray(rows)
    # numpy's sum (pairwise for floats) of the chosen rows, then the fixed part by the cost's rule
    totals = {c.name: c.total(P.fixed[c.name], [P.costs[c.name][idx].sum() if c.combine == SUM
                                                 else P.costs[c.name][idx].max()])
              for c in REGISTRY if c.name in P.costs}
    return SearchResult(loss=float(obj), choices=choices, arch_def=P.space.arch_def(choices), costs=totals)


def _front_upper(P: Problem, obj: np.ndarray, dims: list[str], budgets: list[float]) -> float:
    """An upper bound on the optimum: the best architecture that meets every limit among those on
    the exact one-cost fronts (one per constrained cost)."""
    best = _INF
    for j, d in enumerate(dims):
        for value, rows in _traverse(P, obj, [d], [budgets[j]], 1, front=True):
            idx = np.asarray(rows)
            if value < best and all(P.costs[e][idx].sum() <= budgets[i] for i, e in enumerate(dims)):
                best = value
    return best


def _neighbour_values(P: Problem, obj: np.ndarray, dims: list[str], budgets: list[float],
                      rows: list[int]) -> list[float]:
    """Objectives (ascending) of the given architecture and those differing from it in one block
    (same widths) that meet the limits."""
    rows_a = np.asarray(rows)
    values = [float(sum(obj[r] for r in rows))]
    for k, r in enumerate(rows):
        key = (int(P.in_ch[r]), int(P.out_ch[r]))
        g = P.groups[k][key]
        g = g[g != r]
        ok = np.ones(len(g), bool)
        for j, d in enumerate(dims):
            c = P.costs[d]
            ok &= c[rows_a].sum() - c[r] + c[g] <= budgets[j]
        g = g[ok]
        acc = np.zeros(len(g))
        for j in range(P.n_blocks):
            acc = acc + (obj[g] if j == k else obj[rows[j]])
        values.extend(acc.tolist())
    values.sort()
    return values


def _bound(P: Problem, obj: np.ndarray, dims: list[str], budgets: list[float]) -> _Bound:
    return _Bound([_suffix_fronts(P, obj, d, budgets[j]) for j, d in enumerate(dims)], obj)


def search(
    table: pa.Table | Problem | str,
    meta: ScoresMeta | None = None,
    max_params: float | None = None,
    max_flops: float | None = None,
    max_latency_ms: float | None = None,
    top_k: int = 1,
    lambdas: Sequence[float] | None = None,
    limits: Mapping[str, float] | None = None,
    _reference: bool = False,
) -> list[SearchResult]:
    """The exact ``top_k`` architectures (best first) of minimal ``sum_k lambda_k * loss_k``
    whose totals (fixed parts included) meet every given limit. No limit: the min-loss ones.

    ``table`` is a scores table (with ``meta``; None reads it from the schema metadata), a
    ``Problem`` built from one (reuse it for many queries), or a scores URI. ``limits``: cost
    name -> limit, e.g. ``{"params": 5e6, "flops": 4e8}`` (names from ``dna.cost_registry``);
    ``max_params=`` etc. are the same limits by their old keywords.

    Raises DnaError when no architecture meets the limits, naming the smallest achievable cost.
    """
    P = _problem(table, meta)
    legacy = {"params": max_params, "flops": max_flops, "latency_ms": max_latency_ms}
    limits = _limits(P, merge_limits(limits, legacy))
    top_k = _check_top_k(top_k)
    if top_k > 1 and top_k > (n := P.count()):
        raise DnaError(f"top_k={top_k}: the scores table holds only {n:,} architectures; expected "
                       f"1..{n:,}")
    obj = _objective(P, lambdas)
    for d in limits:
        smallest = P.smallest(d)
        if smallest > limits[d]:
            raise DnaError(f"no architecture has {d} <= {_fmt(d, limits[d])}: the smallest achievable "
                           f"is {_fmt(d, smallest)}")
    peaks = [d for d in limits if BY_NAME[d].combine == MAX]
    if peaks:  # a peak limit is exact as a row filter: every chosen row must be under it
        P = P.where(np.logical_and.reduce([P.costs[d] <= limits[d] for d in peaks]))
    dims = [d for d in limits if d not in peaks]
    budgets = [limits[d] - P.fixed[d] for d in dims]
    # threshold enumeration (dna.search.topk), from a lower bound with little work, then from
    # the exact best and its neighbours; the dominance layers when it cannot vouch for its answer
    bound = _bound(P, obj, dims, budgets) if dims and not _reference else None
    if not _reference:
        fast = topk.top_k(P, obj, dims, budgets, top_k, _INF, bound, max_work=topk.QUICK)
        if fast:
            return [_result(P, v, rows) for v, rows in fast]
    upper = _INF
    if len(dims) >= 2:
        upper = _front_upper(P, obj, dims, budgets)
        if upper < _INF and bound is None:
            bound = _bound(P, obj, dims, budgets)
    found = _traverse(P, obj, dims, budgets, 1, upper=upper, bound=bound if upper < _INF else None)
    if not found:
        raise DnaError(_joint_infeasible(P, dims, limits, budgets))
    if top_k > 1:
        known = _neighbour_values(P, obj, dims, budgets, found[0][1])
        upper = known[top_k - 1] if len(known) >= top_k else _INF
        if bound is None and dims and (upper < _INF or not _reference):
            bound = _bound(P, obj, dims, budgets)
        fast = None if _reference else topk.top_k(P, obj, dims, budgets, top_k, upper, bound, known,
                                                  max_work=topk.LONG)
        found = fast if fast is not None else _traverse(P, obj, dims, budgets, top_k, upper=upper, bound=bound)
    return [_result(P, v, rows) for v, rows in found]


def reference_search(*args, **kwargs) -> list[SearchResult]:
    """:func:`search` with top-k by the dominance layers alone (no threshold enumeration): slower
    when limits prune little, and what the tests compare the fast path with."""
    return search(*args, _reference=True, **kwargs)


def _joint_infeasible(P: Problem, dims: list[str], limits: dict, budgets: list[float]) -> str:
    """Why no architecture meets all ``limits`` (``P``: rows already under the peak limits;
    ``dims``: the summed ones): per summed cost, its smallest total under the other limits."""
    both = " and ".join(f"{d} <= {_fmt(d, v)}" for d, v in limits.items())
    notes = []
    for d in dims:
        others = [e for e in dims if e != d]
        ob = [budgets[i] for i, e in enumerate(dims) if e != d]
        best = _traverse(P, P.costs[d].astype(np.float64), others, ob, 1)
        if best:
            cond = " and ".join(f"{e} <= {_fmt(e, v)}" for e, v in limits.items() if e != d)
            notes.append(f"with {cond} the smallest {d} is {_fmt(d, best[0][0] + P.fixed[d])}")
    return f"no architecture satisfies {both} together" + (": " + "; ".join(notes) if notes else "")


def pareto_front(
    table: pa.Table | Problem | str,
    meta: ScoresMeta | None = None,
    cost: str = "params",
    lambdas: Sequence[float] | None = None,
) -> list[SearchResult]:
    """The exact loss-vs-``cost`` Pareto front of the whole space, sorted by cost (ascending):
    every architecture on it has a lower loss than every architecture of smaller or equal cost."""
    P = _problem(table, meta)
    check_front_cost(cost)
    if cost not in P.costs:
        raise DnaError(f"cost {cost!r} needs {BY_NAME[cost].column}, and this scores table has none: "
                       f"{BY_NAME[cost].missing}")
    obj = _objective(P, lambdas)
    found = _traverse(P, obj, [cost], [_INF], 1, front=True)
    return [_result(P, v, rows) for v, rows in found]


def check_front_cost(cost: str) -> str:
    """A cost a Pareto front can be drawn along: a summed one (a peak is searched under a limit)."""
    c = get_cost(cost)
    if c.name not in FRONT_COSTS:
        raise DnaError(f"cost {cost!r} is a peak (combined by max), not an axis of the exact front: "
                       f"search under {c.flag} instead; fronts are along {list(FRONT_COSTS)}")
    return c.name
