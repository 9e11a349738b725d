"""Exact top-k under any set of limits with bounded work: threshold enumeration.

The dominance layers of :func:`dna.search.traversal._traverse` keep up to K non-dominated layers
per state, and when the limits prune little, K layers of 2-D fronts hold most prefixes: top-100
under two loose limits took tens of seconds. Here instead every architecture whose objective is at
most a threshold ``T`` is enumerated, block by block, and the K best of them are sorted in the
search's exact order. A prefix is dropped when

* its costs plus the cheapest completion from its state exceed a limit (feasibility), or
* its objective plus a lower bound of its best completion exceeds ``T`` (the exact one-cost suffix
  fronts under the remaining budgets, and the cheapest unconstrained suffix); each row carries
  such a bound of its own too, so a prefix only pairs with the leading rows of a sorted group.

No prefix of an architecture with objective ``<= T`` is ever dropped, so once at least K are found
they are the K best. ``T`` starts just above a lower bound of the best (or between the best and
the K-th best of known architectures) and grows until K are found, or it reaches the sum of the
blocks' largest objectives (then all are found). The work is capped: when more than ``cap``
prefixes survive a block, ``T`` is lowered to keep the ``cap // 2`` most promising (exact as long as
K are still found under it), and ``max_work`` bounds the pairs looked at. When the cap or the work
bound makes the answer unsure, ``top_k`` answers None and the caller falls back to the dominance
traversal, which is exact too.
"""

from __future__ import annotations

import math

import numpy as np

_INF = math.inf
_CHUNK = 1 << 19   # (prefix, row) pairs materialised at once
CAP = 1 << 18      # prefixes kept per block before the threshold is lowered
QUICK = 1 << 20    # pairs a first try from a lower bound may look at (search: before its top-1)
LONG = 8 << 20     # pairs the try from the best architecture's neighbours may look at


def top_k(P, obj: np.ndarray, dims: list[str], budgets: list[float], k: int, upper: float,
          bound=None, known: list[float] | None = None, cap: int | None = None,
          tries: int = 40, max_work: float = math.inf) -> list[tuple[float, list[int]]] | None:
    """The exact ``k`` best as ``[(objective, [row per block]), ...]``, best first, in the order
    of ``_traverse`` (objective, summed costs in registry order, rows in table order); fewer when
    fewer meet the limits. None when the work cap made the answer unsure.

    ``upper``: an upper bound on the ``k``-th best objective (inf when none is known); ``known``:
    objectives of architectures known to meet the limits, the best first (where ``T`` starts);
    ``bound``: the ``_Bound`` of the one-cost suffix fronts under ``budgets`` (None: no limits);
    ``max_work``: (prefix, row) pairs to look at, over all thresholds tried, before giving up.
    """
    if not all(P.groups):
        return []  # a block without rows: no architecture
    e = _Enumeration(P, obj, dims, budgets, bound, cap or CAP)
    e.max_work = max_work
    # no architecture's objective exceeds the sum of the blocks' largest: a T there sees them all
    top = sum(float(obj[np.concatenate(list(g.values()))].max()) for g in P.groups)
    upper = min(upper, top + abs(top) * 1e-12 + e.tol)
    known = sorted(known or [])
    if known:
        best = known[0]
        gap = (known[min(k, len(known)) - 1] - best) / 2  # their k-th best is an upper bound
    else:  # from a lower bound of the best, in steps of the blocks' spread
        best = e.root_bound()
        if math.isinf(best):
            return []
        gap = 0.0
    if gap <= 0:
        spread = sum(float(np.ptp(obj[np.concatenate(list(g.values()))])) for g in P.groups)
        gap = 1e-3 * spread if spread > 0 else 1e-6 * (1.0 + abs(best))
    for _ in range(tries):
        T = best + gap
        if T >= upper:
            return e.run(upper, k, exact_below=upper)
        found = e.run(T, k, exact_below=upper)
        if found is not None:
            return found
        if e.shrunk or e.aborted:  # the cap, not T, stopped it: a larger T cannot help
            return None
        gap *= 2.0 if not e.found else min(4.0, max(1.25, (2.0 * k / e.found) ** (1.0 / P.n_blocks)))
    return None


class _Enumeration:
    """Every architecture under the limits whose objective is at most ``T``, block by block; the
    tables it needs are built once for all the thresholds tried."""

    def __init__(self, P, obj: np.ndarray, dims: list[str], budgets: list[float], bound, cap: int):
        self.P, self.obj, self.budgets, self.bound, self.cap = P, obj, budgets, bound, cap
        self.dims = dims
        nb = P.n_blocks
        self.ties = P.tie_costs()
        names = P.tie_names()
        self.di = [names.index(d) for d in dims]
        self.suf = [P.min_suffix(P.costs[d]) for d in dims]
        pre = [P.min_prefix(P.costs[d]) for d in dims]
        self.hmin = P.min_suffix(obj)  # cheapest objective of blocks k.. from each width, no limits
        # the one-cost bounds sum in another order than the prefixes: allow for rounding
        self.tol = 1e-9 * (1.0 + nb * float(np.abs(obj).max())) if len(obj) else 0.0
        # per block: (w_in, w_out) -> rows that can be part of a feasible architecture, by objective
        self.groups = []
        for b in range(nb):
            g = {}
            for (w_in, w_out), rows in P.groups[b].items():
                if b == 0 and w_in != P.first_width:
                    continue
                if b + 1 < nb and w_out not in self.hmin[b + 1]:
                    continue
                ok = np.ones(len(rows), bool)
                for j, d in enumerate(dims):
                    before = pre[j][b].get(w_in, _INF)
                    after = self.suf[j][b + 1].get(w_out, _INF) if b + 1 < nb else 0
                    ok &= P.costs[d][rows] + before + after <= budgets[j]
                r = rows[ok]
                if len(r):
                    h = self._row_bound(b, w_in, w_out, r, pre)
                    o = np.argsort(h, kind="stable")
                    g[(w_in, w_out)] = (r[o], h[o])
            self.groups.append(g)
        self.shrunk = False
        self.found = 0
        self.work = 0  # (prefix, row) pairs looked at, over all runs
        self.max_work = math.inf
        self.aborted = False

    def root_bound(self) -> float:
        """A lower bound on the best objective under the limits (inf: none meets them)."""
        P = self.P
        w = P.first_width
        if w not in self.hmin[0] or not self.groups[0]:
            return _INF
        lb = self.hmin[0][w]
        if self.bound is not None:
            lb = max(lb, float(self.bound.lower(0, w, [np.array([b]) for b in self.budgets])[0]))
        return lb

    def _row_bound(self, b: int, w_in: int, w_out: int, rows: np.ndarray, pre) -> np.ndarray:
        """Per row, a lower bound on the objective of blocks b.. of any feasible architecture
        through it: its own plus the best completion under what the cheapest prefix leaves."""
        P, obj = self.P, self.obj
        h = obj[rows].copy()
        if b + 1 == P.n_blocks:
            return h
        h += self.hmin[b + 1][w_out]
        if self.bound is not None:
            rem = [self.budgets[j] - pre[j][b][w_in] - P.costs[d][rows] for j, d in enumerate(self.dims)]
            h = np.maximum(h, obj[rows] + self.bound.lower(b + 1, w_out, rem))
        return h

    def run(self, T: float, k: int, exact_below: float) -> list[tuple[float, list[int]]] | None:
        """The ``k`` best if at least ``k`` architectures have objective ``<= T`` (or ``T`` is at
        least ``exact_below``, an upper bound on the ``k``-th best, or inf: then all of them)."""
        P, obj, ties, di, budgets, tol = self.P, self.obj, self.ties, self.di, self.budgets, self.tol
        nb = P.n_blocks
        cut = T + tol
        self.shrunk = False
        self.found = 0
        g_obj = np.zeros(1)
        g_cost = [np.zeros(1, t.dtype) for t in ties]
        g_state = np.array([P.first_width], np.int64)
        parents: list[np.ndarray] = []
        chosen: list[np.ndarray] = []
        for b in range(nb):
            last = b + 1 == nb
            order = np.argsort(g_state, kind="stable")
            states, starts = np.unique(g_state[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            span = {int(w): order[s:e] for w, s, e in zip(states, starts, ends, strict=True)}
            out: list[tuple] = []
            n_out = 0
            for (w_in, w_out), (rows, h) in self.groups[b].items():
                pidx = span.get(w_in)
                if pidx is None:
                    continue
                rest = 0.0 if last else self.hmin[b + 1][w_out]
                # the rows' own bounds first: sorted by them, each prefix takes a leading run
                cnt = np.searchsorted(h, cut - g_obj[pidx] + tol, side="right")
                keep = cnt > 0
                pidx, cnt = pidx[keep], cnt[keep]
                if not len(pidx):
                    continue
                csum = np.cumsum(cnt)
                a = 0
                while a < len(pidx):
                    z = int(np.searchsorted(csum, (csum[a - 1] if a else 0) + _CHUNK, side="right"))
                    z = max(z, a + 1)
                    c = cnt[a:z]
                    pi = np.repeat(pidx[a:z], c)
                    self.work += len(pi)
                    if self.work > self.max_work:
                        self.aborted = True
                        return None
                    off = np.repeat(np.cumsum(c) - c, c)
                    ri = rows[np.arange(len(pi)) - off]
                    a = z
                    new_obj = g_obj[pi] + obj[ri]
                    new_cost = [gc[pi] + t[ri] for gc, t in zip(g_cost, ties, strict=True)]
                    ok = np.ones(len(pi), bool)
                    for j, d in enumerate(di):
                        after = 0 if last else self.suf[j][b + 1].get(w_out, _INF)
                        ok &= new_cost[d] + after <= budgets[j]
                    if last:
                        f = new_obj
                        ok &= f <= T
                    else:
                        f = new_obj + rest
                        if self.bound is not None:
                            idx = np.flatnonzero(ok)
                            rem = [budgets[j] - new_cost[d][idx] for j, d in enumerate(di)]
                            f[idx] = np.maximum(f[idx], new_obj[idx] + self.bound.lower(b + 1, w_out, rem))
                        ok &= f <= cut
                    sel = np.flatnonzero(ok)
                    if not len(sel):
                        continue
                    out.append((new_obj[sel], [c_[sel] for c_ in new_cost], f[sel], pi[sel], ri[sel],
                                np.full(len(sel), w_out, np.int64)))
                    n_out += len(sel)
                    if n_out > self.cap:
                        out, T, cut = _lower(out, self.cap, tol, last)
                        n_out = sum(len(x[0]) for x in out)
                        self.shrunk = True
            if not out:
                return [] if T >= exact_below else None
            keep = np.concatenate([x[0] for x in out]) <= T if last else \
                np.concatenate([x[2] for x in out]) <= cut  # a lowered T applies to all found before
            g_obj = np.concatenate([x[0] for x in out])[keep]
            g_cost = [np.concatenate([x[1][i] for x in out])[keep] for i in range(len(ties))]
            parents.append(np.concatenate([x[3] for x in out])[keep])
            chosen.append(np.concatenate([x[4] for x in out])[keep])
            g_state = np.concatenate([x[5] for x in out])[keep]
        self.found = len(g_obj)
        if len(g_obj) < k and T < exact_below:
            return None  # not all of the k best are known to be under T
        rows = np.empty((len(g_obj), nb), np.int64)
        j = np.arange(len(g_obj))
        for b in reversed(range(nb)):
            rows[:, b] = chosen[b][j]
            j = parents[b][j]
        o = np.lexsort((*[rows[:, b] for b in reversed(range(nb))], *reversed(g_cost), g_obj))[:k]
        return [(float(g_obj[i]), rows[i].tolist()) for i in o]


def _lower(out: list[tuple], cap: int, tol: float, last: bool):
    """Lower the threshold so that at most ``cap // 2`` of the prefixes found so far stay:
    returns them, the new ``T`` and the new cut for prefixes (``T + tol <= cut``)."""
    f = np.concatenate([x[0] if last else x[2] for x in out])
    v = np.partition(f, cap // 2)[cap // 2]
    cut = float(np.nextafter(v, -_INF))  # keep f < v: at most cap // 2 (fewer with ties)
    T = cut if last else cut - 2 * tol
    kept = []
    for x in out:
        s = np.flatnonzero((x[0] if last else x[2]) <= cut)
        if len(s):
            kept.append((x[0][s], [c[s] for c in x[1]], x[2][s], x[3][s], x[4][s], x[5][s]))
    return kept, T, cut
