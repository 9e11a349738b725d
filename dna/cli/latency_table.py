"""dna latency-table SPACE --device cpu|cuda --out URI: time every candidate layer of a space."""

from __future__ import annotations

import time

from dna.space import SPACES

OUTPUTS = {"out": "file"}  # checked writable before any work (dna.cli._preflight)
HELP = "measure a latency lookup table (ms per candidate layer + fixed stem/head) of a space on a device"


def add_arguments(p) -> None:
    p.add_argument("space", help=f"a space name ({', '.join(sorted(SPACES))}) or a space .json URI")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    p.add_argument("--out", required=True, help="URI of the latency table JSON to write (local or s3://)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input resolution in pixels (default: the space's; must match the rating's)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the timed forward passes")
    p.add_argument("--warmup", type=int, default=5, help="untimed forward passes per layer")
    p.add_argument("--repeats", type=int, default=20, help="timed forward passes per layer (median kept)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads while measuring (default: torch's own setting)")
    p.add_argument("--stat", default="median", choices=("median", "min"),
                   help="statistic of the timed runs (min is more robust on a busy machine)")


def run(args) -> dict:
    from dna.search.latency import LatencyTable

    t0 = time.perf_counter()
    table = LatencyTable.measure(args.space, device=args.device, resolution=args.resolution,
                                 batch_size=args.batch_size, warmup=args.warmup, repeats=args.repeats,
                                 threads=args.threads, stat=args.stat)
    table.save(args.out)
    return {
        "out": args.out,
        "space": table.space["name"],
        "device": table.device,
        "device_name": table.device_name,
        "resolution": table.resolution,
        "batch_size": table.batch_size,
        "stat": table.stat,
        "layers": len(table.layers),
        "fixed_ms": round(table.fixed_ms, 4),
        "torch": table.torch_version,
        "seconds": round(time.perf_counter() - t0, 2),
    }
