"""dna scale ARCH_URI (--to b1 | --width W --depth D --resolution R) --out URI: compound scaling."""

from __future__ import annotations

from dna.errors import DnaError

OUTPUTS = {"out": "file"}  # checked writable before any work (dna.cli._preflight)
HELP = "compound-scale an architecture as EfficientNet does (DNA+): --to b1..b8 or explicit coefficients"


def add_arguments(p) -> None:
    from dna.scale import COEFFICIENTS

    p.add_argument("arch", help="architecture JSON URI (local path or s3://...)")
    p.add_argument("--to", default=None,
                   help=f"named EfficientNet scale: {', '.join(COEFFICIENTS)} (resolution scaled by R/224; default: "
                        "none, give the coefficients)")
    p.add_argument("--width", type=float, default=None, help="channel (width) multiplier (default: 1, unscaled; not with --to)")
    p.add_argument("--depth", type=float, default=None, help="depth multiplier (layers per stage, ceil; default: 1, unscaled; not with --to)")
    p.add_argument("--resolution", type=int, default=None, help="input resolution in pixels (default: the architecture's; not with --to)")
    p.add_argument("--keep-multipliers", action="store_true",
                   help="write the unscaled arch_def plus multipliers instead of the explicit scaled arch_def")
    p.add_argument("--out", default=None, help="where to write the scaled architecture JSON (default: print it only)")


def run(args) -> dict:
    from dna import storage
    from dna.model.summary import summarize
    from dna.scale import scale

    if args.to is None and all(v is None for v in (args.width, args.depth, args.resolution)):
        raise DnaError("give --to NAME or at least one of --width, --depth, --resolution")
    scaled = scale(args.arch, args.to, width=args.width, depth=args.depth,
                   resolution=args.resolution, expand_arch=not args.keep_multipliers)
    if args.out:
        storage.write_json(scaled.to_json(), args.out)
    s = summarize(scaled)
    return {
        "out": args.out,
        "scale": scaled.extra.get("scale"),
        "params": s["params"],
        "flops": s["flops"],
        "resolution": scaled.resolution,
        "num_layers": s["num_layers"],
        "stem_channels": s["stem_channels"],
        "head_channels": s["head_channels"],
        "arch_def": scaled.arch_def,
        "architecture": scaled.to_json() if not args.out else None,
    }


def format_text(r: dict) -> str:
    sc = r["scale"] or {}
    lines = [
        f"scaled {('to ' + sc['to'] + ' ') if sc.get('to') else ''}(width {sc.get('width')}, depth "
        f"{sc.get('depth')}, resolution {r['resolution']})",
        f"params: {r['params']:,}  flops: {r['flops']:,} MACs  layers: {r['num_layers']}",
    ]
    lines += [f"  {' '.join(stage)}" for stage in r["arch_def"]]
    if r.get("out"):
        lines.append(f"wrote {r['out']}")
    return "\n".join(lines)
