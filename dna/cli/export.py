"""dna export ARCH_URI --checkpoint URI --format torchscript|onnx --out URI."""

from __future__ import annotations

OUTPUTS = {"out": "file"}  # checked writable before any work (dna.cli._preflight)
HELP = "export a network (architecture JSON or timm name, with a checkpoint's weights) to TorchScript or ONNX"


def add_arguments(p) -> None:
    from dna.model.export_formats import FORMATS, ONNX_OPSET

    p.add_argument("arch", nargs="?", default=None,
                   help="architecture JSON URI or timm model name (default: the 'arch' stored in --checkpoint)")
    p.add_argument("--checkpoint", default=None,
                   help="weights: a state dict or a `dna retrain` model.pt/checkpoint.pt (default: random init)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="torchscript", help="output format")
    p.add_argument("--out", required=True, help="output URI (.pt for TorchScript, .onnx for ONNX)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the example input")
    p.add_argument("--resolution", type=int, default=None, help="input resolution (default: the architecture's)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier width (default: the checkpoint's, else the architecture's)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset version")
    p.add_argument("--no-verify", action="store_true", help="skip comparing the export with the eager model")


def run(args) -> dict:
    from dna.errors import DnaError
    from dna.model.export import export_model

    if args.arch is None and not args.checkpoint:
        raise DnaError("give an architecture (JSON URI or timm name) or a --checkpoint that names one")
    return export_model(
        args.arch, args.checkpoint, args.fmt, args.out,
        batch_size=args.batch_size, resolution=args.resolution, num_classes=args.num_classes,
        opset=args.opset, verify=not args.no_verify,
    )


def format_text(r: dict) -> str:
    line = f"wrote {r['format']} ({r['method']}, {r['bytes']:,} bytes) to {r['out']}, input {r['input_shape']}"
    if r.get("max_abs_diff") is not None:
        line += f"\nmax |export - eager| = {r['max_abs_diff']:.3g}"
    return line
