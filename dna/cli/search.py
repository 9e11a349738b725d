"""dna search SCORES_URI: exact constrained traversal search, top-k, or the Pareto front."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence

from dna.errors import DnaError
from dna.search.traversal import COSTS

HELP = "exact search of a scores table: best architecture(s) under params/FLOPs/latency limits, or the Pareto front"

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
) -> dict:
    """Search a scores table (URI) and optionally write the best architecture JSON to ``out``.

    Returns ``{"architectures": [{loss, params, flops[, latency_ms], blocks, arch_def}, ...]}``,
    best first (with ``pareto``: the exact loss-vs-``cost`` front, by cost ascending).
    Totals include the fixed stem/head; ``loss`` is the (lambda-weighted) sum of block losses.
    """
    from dna.build.arch import Architecture
    from dna.rate.scores import read_scores
    from dna.search.traversal import Problem, pareto_front, search

    max_params = parse_count(max_params, "max_params")
    max_flops = parse_count(max_flops, "max_flops")
    if max_latency_ms is not None:
        max_latency_ms = parse_count(max_latency_ms, "max_latency_ms")
    lambdas = parse_lambdas(lambdas)
    if pareto:
        if cost not in COSTS:
            raise DnaError(f"cost {cost!r}: expected one of {list(COSTS)}")
        if out is not None:
            raise DnaError("--out writes one architecture; with --pareto choose one point by searching "
                           "under a limit (e.g. --max-params) instead")
        if any(v is not None for v in (max_params, max_flops, max_latency_ms)) or top_k != 1:
            raise DnaError("--pareto gives the whole front: it takes no --max-* limits or --top-k")
    table, meta = read_scores(scores_uri)
    problem = Problem(table, meta)
    if pareto:
        results = pareto_front(problem, cost=cost, lambdas=lambdas)
    else:
        results = search(problem, max_params=max_params, max_flops=max_flops,
                         max_latency_ms=max_latency_ms, top_k=top_k, lambdas=lambdas)
    if out is not None:
        best = results[0]
        extra = {"loss": best.loss, "params": best.params, "flops": best.flops}
        if best.latency_ms is not None:
            extra["latency_ms"] = best.latency_ms
        extra.update(teacher=meta.teacher, generation=meta.generation)
        if getattr(problem.space, "kind", "mbconv") == "vit":
            from dna import storage
            from dna.build.vit import vit_arch_from_result

            vit_extra = {k: v for k, v in extra.items() if k not in ("loss", "params", "flops")}
            storage.write_json(vit_arch_from_result(best, meta, **vit_extra), out)
        else:
            arch = Architecture.from_choices(problem.space, best.choices, **extra)
            if meta.resolution:     # the resolution it was rated (and its FLOPs counted) at
                arch.resolution = int(meta.resolution)
            arch.save(out)
    return {"architectures": [r.to_json() for r in results]}


def add_arguments(p) -> None:
    p.add_argument("scores", help="scores table URI (Parquet file or block-partitioned folder; local or s3://)")
    p.add_argument("--max-params", default=None, help="limit on total params, e.g. 5.3M or 5.3e6")
    p.add_argument("--max-flops", default=None, help="limit on total FLOPs (MACs), e.g. 400M")
    p.add_argument("--max-latency-ms", default=None,
                   help="limit on total latency in ms (needs a latency_ms column, see `dna latency-table`)")
    p.add_argument("--top-k", type=int, default=1, help="return the K best architectures (default 1)")
    p.add_argument("--pareto", action="store_true", help="print the exact loss-vs-cost Pareto front instead")
    p.add_argument("--cost", default="params", choices=COSTS, help="cost axis of --pareto (default params)")
    p.add_argument("--lambdas", default=None, help="per-block loss weights, e.g. 1,1,1,1,1,1 (default all 1)")
    p.add_argument("--out", default=None, help="write the best architecture JSON to this URI")


def run(args) -> dict:
    result = run_search(args.scores, max_params=args.max_params, max_flops=args.max_flops,
                        max_latency_ms=args.max_latency_ms, top_k=args.top_k, pareto=args.pareto,
                        cost=args.cost, lambdas=args.lambdas, out=args.out)
    if args.out and not args.json:
        print(f"wrote {args.out}", file=sys.stderr)
    return result


def format_text(r: dict) -> str:
    archs = r["architectures"]
    lat = any("latency_ms" in a for a in archs)
    head = ["#", "loss", "params", "flops"] + (["latency_ms"] if lat else []) + ["blocks (cell:ops)"]
    rows = []
    for i, a in enumerate(archs, 1):
        row = [str(i), f"{a['loss']:.6g}", f"{a['params']:,}", f"{a['flops']:,}"]
        if lat:
            row.append(f"{a['latency_ms']:.4g}" if "latency_ms" in a else "-")
        row.append("  ".join(f"{b['cell']}:{b['ops']}" for b in a["blocks"]))
        rows.append(row)
    widths = [max(len(x[j]) for x in [head, *rows]) for j in range(len(head))]
    lines = ["  ".join(x[j].rjust(widths[j]) if 0 < j < len(head) - 1 else x[j].ljust(widths[j])
                       for j in range(len(head))).rstrip() for x in [head, *rows]]
    return "\n".join(lines)
