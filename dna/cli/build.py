"""dna build ARCH_URI [--summary] [--out URI]: build the network of an architecture JSON."""

from __future__ import annotations

from dna.errors import DnaError

OUTPUTS = {"out": "file"}  # checked writable before any work (dna.cli._preflight)
HELP = "build the network of an architecture JSON: params, FLOPs, layout; optionally save initial weights"


def add_arguments(p) -> None:
    p.add_argument("arch", help="architecture JSON URI (local path or s3://...); a bare arch_def list works")
    p.add_argument("--summary", action="store_true",
                   help="print params, FLOPs and the layout (the default output; kept for clarity)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input resolution for the FLOP count (default: the architecture's)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier width (default: the architecture's)")
    p.add_argument("--out", default=None,
                   help="save an initialised checkpoint {model, arch, num_classes} to this URI (.pt; default: "
                        "save nothing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights (with --out)")


def run(args) -> dict:
    from dna import storage
    from dna.space import family_of_arch

    if args.num_classes is not None and args.num_classes < 1:
        raise DnaError(f"--num-classes {args.num_classes} must be a positive integer")
    if args.resolution is not None and args.resolution < 1:
        raise DnaError(f"--resolution {args.resolution} must be a positive integer")
    d = storage.read_json(args.arch)
    family = family_of_arch(d)
    result = family.summarize(d, num_classes=args.num_classes, resolution=args.resolution)
    if args.out:
        import torch

        torch.manual_seed(args.seed)
        model = family.build(d, num_classes=args.num_classes)
        storage.save_torch({"model": model.state_dict(), "arch": family.arch_record(d),
                            "num_classes": result["num_classes"]}, args.out)
        result["out"] = args.out
    return result


def format_text(r: dict) -> str:
    from dna.space import get_family

    text = get_family(r["kind"]).format_summary(r)
    if r.get("out"):
        text += f"\nsaved initial weights to {r['out']}"
    return text
