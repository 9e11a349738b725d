"""Search a stored scores table and write the chosen architecture: what ``dna search``, the DNA+
steps and the pipeline reports call (the command line only parses flags and prints)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from dna.cost_registry import BY_NAME, check_limits, merge_limits
from dna.errors import DnaError

_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "b": 1e9, "B": 1e9}
_NUM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*$")


def parse_count(value, name: str = "value") -> float | int | None:
    """``5e6``, ``5M``, ``400M``, ``1.2G``, ``5300000`` or a number -> a number (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise DnaError(f"{name}={value!r}: expected a number such as 5e6, 5.3M or 400M")
    if isinstance(value, (int, float)):
        v = value
    else:
        m = _NUM_RE.match(str(value).replace("_", "").replace(",", ""))
        if not m:
            raise DnaError(f"{name}={value!r}: expected a number such as 5e6, 5.3M or 400M")
        v = float(m.group(1)) * _SUFFIX[m.group(2)]
    if not math.isfinite(v) or v <= 0:
        raise DnaError(f"{name}={value!r}: expected a positive finite number")
    return int(v) if float(v).is_integer() else v


def parse_lambdas(value) -> list[float] | None:
    """``"1,1,0.5,1,1,1"`` or a list -> floats (one per block)."""
    if value is None or isinstance(value, (list, tuple)):
        return None if value is None else [float(x) for x in value]
    try:
        return [float(x) for x in str(value).split(",")]
    except ValueError as exc:
        raise DnaError(f"lambdas {value!r}: expected comma-separated numbers, one per block, "
                       "e.g. 1,1,1,1,1,1") from exc


def parse_limits(limits: Mapping | None) -> dict:
    """Cost name -> limit, each parsed with :func:`parse_count` (``"5.3M"``); unknown names and
    bad numbers are errors naming them."""
    limits = dict(limits or {})
    check_limits({k: None for k in limits})  # unknown names first, with the known ones
    parsed = {k: parse_count(v, BY_NAME[k].limit_key) for k, v in limits.items()}
    return {k: v for k, v in parsed.items() if v is not None}


def run_search(
    scores_uri: str,
    max_params=None,
    max_flops=None,
    max_latency_ms=None,
    top_k: int = 1,
    pareto: bool = False,
    cost: str = "params",
    lambdas: Sequence[float] | str | None = None,
    out: str | None = None,
    limits: Mapping | None = None,
) -> dict:
    """Search a scores table (URI) and optionally write the best architecture JSON to ``out``.

    ``limits``: cost name -> limit (numbers or strings such as ``"5.3M"``); ``max_params=`` etc.
    are the same limits by their old keywords.
    Returns ``{"architectures": [{loss, params, flops[, latency_ms...], blocks, arch_def}, ...]}``,
    best first (with ``pareto``: the exact loss-vs-``cost`` front, by cost ascending).
    Totals include the fixed stem/head; ``loss`` is the (lambda-weighted) sum of block losses.
    """
    from dna.rate.scores import read_scores
    from dna.search.traversal import Problem, check_front_cost, pareto_front, search

    legacy = {"params": max_params, "flops": max_flops, "latency_ms": max_latency_ms}
    limits = parse_limits(merge_limits(parse_limits(limits), parse_limits(legacy)))
    lambdas = parse_lambdas(lambdas)
    if pareto:
        check_front_cost(cost)
        if out is not None:
            raise DnaError("--out writes one architecture; with --pareto choose one point by searching "
                           "under a limit (e.g. --max-params) instead")
        if limits or top_k != 1:
            raise DnaError("--pareto gives the whole front: it takes no --max-* limits or --top-k")
    table, meta = read_scores(scores_uri)
    problem = Problem(table, meta)
    if pareto:
        results = pareto_front(problem, cost=cost, lambdas=lambdas)
    else:
        results = search(problem, limits=limits, top_k=top_k, lambdas=lambdas)
    if out is not None:
        write_architecture(problem, results[0], out)
    return {"architectures": [r.to_json() for r in results]}


def write_architecture(problem, best, out: str) -> str:
    """The architecture JSON of one search result (the space family's ``arch_json``: MBConv/UIR timm
    arch_def, ViT its own form), with the resolution the table was rated (and its FLOPs counted) at."""
    meta = problem.meta
    extra = {"loss": best.loss, "params": best.params, "flops": best.flops}
    if best.latency_ms is not None:
        extra["latency_ms"] = best.latency_ms
    extra.update(teacher=meta.teacher, generation=meta.generation)
    from dna import storage
    from dna.space import get_family

    storage.write_json(get_family(problem.space).arch_json(problem.space, best, meta, extra), out)
    return out
