"""dna search SCORES_URI: exact constrained traversal search, top-k, or the Pareto front."""

from __future__ import annotations

import sys

from dna.cost_registry import COSTS, SUM

# The axes of a Pareto front, as dna.search.traversal.FRONT_COSTS defines them (that module pulls
# in pyarrow and numpy; the parser stays light and the search checks the axis itself).
FRONT_COSTS = tuple(c.name for c in COSTS if c.combine == SUM)

OUTPUTS = {"out": "file"}  # checked writable before any work (dna.cli._preflight)
HELP = (f"exact search of a scores table: best architecture(s) under limits on {', '.join(c.name for c in COSTS)}, "
        "or the Pareto front")


def add_arguments(p) -> None:
    p.add_argument("scores", help="scores table URI (Parquet file or block-partitioned folder; local or s3://)")
    for c in COSTS:
        p.add_argument(c.flag, default=None, help=f"{c.help} (default: no limit)")
    p.add_argument("--top-k", type=int, default=1, help="return the K best architectures")
    p.add_argument("--pareto", action="store_true", help="print the exact loss-vs-cost Pareto front instead")
    p.add_argument("--cost", default="params", choices=FRONT_COSTS, help="cost axis of --pareto")
    p.add_argument("--lambdas", default=None, help="per-block loss weights, e.g. 1,1,1,1,1,1 (default all 1)")
    p.add_argument("--out", default=None, help="write the best architecture JSON to this URI (default: print only)")


def run(args) -> dict:
    from dna.search.run import run_search

    limits = {c.name: getattr(args, c.limit_key) for c in COSTS if getattr(args, c.limit_key) is not None}
    result = run_search(args.scores, limits=limits, top_k=args.top_k, pareto=args.pareto,
                        cost=args.cost, lambdas=args.lambdas, out=args.out)
    if args.out and not args.json:
        print(f"wrote {args.out}", file=sys.stderr)
    return result


def format_text(r: dict) -> str:
    archs = r["architectures"]
    costs = [c for c in COSTS if any(c.name in a for a in archs)]
    head = ["#", "loss", *[c.name for c in costs], "blocks (cell:ops)"]
    rows = []
    for i, a in enumerate(archs, 1):
        row = [str(i), f"{a['loss']:.6g}"]
        row += [("-" if c.name not in a else f"{a[c.name]:,}" if c.is_int else f"{a[c.name]:.4g}") for c in costs]
        row.append("  ".join(f"{b['cell']}:{b['ops']}" for b in a["blocks"]))
        rows.append(row)
    widths = [max(len(x[j]) for x in [head, *rows]) for j in range(len(head))]
    lines = ["  ".join(x[j].rjust(widths[j]) if 0 < j < len(head) - 1 else x[j].ljust(widths[j])
                       for j in range(len(head))).rstrip() for x in [head, *rows]]
    return "\n".join(lines)
