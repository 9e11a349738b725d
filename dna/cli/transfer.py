"""dna transfer seg|det|cls ARCH --checkpoint URI --out URI: the searched backbone on another task."""

from __future__ import annotations

import json

from dna.cli._common import MAX_STEPS_HELP, add_workers_argument
from dna.errors import DnaError

HELP = ("transfer a trained searched net: segmentation (DeepLabv3+), detection (Faster R-CNN C4/FPN) "
        "or classification fine-tuning; writes metrics.json, model.pt and samples.png")

TASKS = ("seg", "det", "cls")
DATA_SPLITS = None  # only classification reads an ImageFolder: see preflight


def preflight(args) -> None:
    """Before any work: list and decode an ImageFolder --data of the cls task."""
    from dna.cli._preflight import check_data

    if args.task == "cls" and args.data_format in ("auto", "imagefolder"):
        check_data(args.data, ("train", "val"))


def add_arguments(p) -> None:
    p.add_argument("task", choices=TASKS, help="seg (DeepLabv3+), det (Faster R-CNN) or cls (fine-tuning)")
    p.add_argument("arch", help="architecture JSON URI (searched MBConv or ViT net) or a timm model name "
                                "(e.g. vit_tiny_patch16_224 with --model-kwargs)")
    p.add_argument("--checkpoint", default=None,
                   help="URI of the trained weights (e.g. <retrain out>/model.pt); required unless --random-init "
                        "(default: none)")
    p.add_argument("--random-init", action="store_true",
                   help="explicitly start the backbone from random weights (loudly flagged in the metrics)")
    p.add_argument("--out", required=True, help="output folder URI (local or s3://)")
    p.add_argument("--data", default="builtin:shapes",
                   help="'builtin:shapes', or a data set root: seg: Pascal VOC or ADE20K layout; det: COCO "
                        "layout; cls: ImageFolder (train/ and val/)")
    p.add_argument("--data-format", default="auto", help="auto (detect), builtin, voc, ade20k, coco, imagefolder")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size: seg crop, det min_size, cls image size (default 64/64/32)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 (seg, det) or 64 (cls)")
    p.add_argument("--lr", type=float, default=None, help="default per task and optimizer")
    p.add_argument("--optimizer", "--opt", default="sgd", help="sgd (momentum 0.9) or adamw")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay")
    p.add_argument("--model-kwargs", default=None,
                   help='JSON object passed to the model constructor, e.g. \'{"img_size": 32, "patch_size": 4}\' '
                        "(default: none)")
    p.add_argument("--train-size", type=int, default=1000, help="built-in data: training images")
    p.add_argument("--val-size", type=int, default=200, help="built-in data: validation images")
    p.add_argument("--num-classes", type=int, default=10, help="built-in data: object classes")
    add_workers_argument(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (data, weights, sampling)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--samples", type=int, default=8, help="sample predictions drawn into samples.png")
    p.add_argument("--max-steps", "--max-train-batches", dest="max_train_batches", type=int, default=None,
                   help=MAX_STEPS_HELP)
    p.add_argument("--max-val-batches", type=int, default=None,
                   help="cap on validation batches (default: the whole validation split)")
    g = p.add_argument_group("segmentation")
    g.add_argument("--output-stride", type=int, default=16, help="8, 16 or 32 (CNN: dilate beyond it)")
    g.add_argument("--no-decoder", action="store_true", help="plain ASPP segmenter (DeepLabv3) instead of v3+")
    g = p.add_argument_group("detection")
    g.add_argument("--fpn", action="store_true", help="FPN over the multi-scale features instead of C4")
    g.add_argument("--min-size", type=int, default=None, help="Faster R-CNN min_size (default: --resolution)")
    g.add_argument("--max-size", type=int, default=None, help="Faster R-CNN max_size (default: min_size on built-in data, else "
                        "min_size * 1333 / 800)")
    g.add_argument("--anchor-sizes", default=None,
                   help="comma-separated anchor sizes in pixels (default: fractions of min_size)")
    g.add_argument("--freeze-bn", action="store_true", help="freeze the backbone's BatchNorm")


def _model_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DnaError(f"--model-kwargs {text!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DnaError(f"--model-kwargs {text!r} must be a JSON object")
    return value


def _anchor_sizes(text: str | None):
    if not text:
        return None
    try:
        return tuple(float(s) if "." in s else int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise DnaError(f"--anchor-sizes {text!r} must be comma-separated numbers") from exc


def config_from_args(args):
    """The task's config dataclass from parsed arguments (not yet validated)."""
    from dna.transfer import ClsConfig, DetConfig, SegConfig

    common = dict(
        model=args.arch, out=args.out, checkpoint=args.checkpoint, random_init=args.random_init,
        model_kwargs=_model_kwargs(args.model_kwargs), data=args.data, data_format=args.data_format,
        epochs=args.epochs, resolution=args.resolution, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, train_size=args.train_size, val_size=args.val_size,
        num_classes=args.num_classes, num_workers=args.workers, seed=args.seed, device=args.device,
        num_samples=args.samples, max_train_batches=args.max_train_batches,
        max_val_batches=args.max_val_batches,
    )
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    if args.task == "seg":
        return SegConfig(**common, output_stride=args.output_stride, decoder=not args.no_decoder)
    if args.task == "det":
        return DetConfig(**common, fpn=args.fpn, min_size=args.min_size, max_size=args.max_size,
                         anchor_sizes=_anchor_sizes(args.anchor_sizes), freeze_bn=args.freeze_bn)
    return ClsConfig(**common)


def run(args) -> dict:
    from dna.progress import reporter
    from dna.transfer import transfer_cls, transfer_det, transfer_seg

    cfg = config_from_args(args)
    fn = {"seg": transfer_seg, "det": transfer_det, "cls": transfer_cls}[args.task]
    with reporter("transfer") as show:
        return fn(cfg, on_epoch_end=show)


def format_text(r: dict) -> str:
    task = r.get("task")
    if task == "seg":
        head = f"mIoU {r['mIoU']:.4f}  pixel acc {r['pixel_acc']:.4f}"
    elif task == "det":
        head = f"mAP {r['mAP']:.4f}  mAP50 {r['mAP50']:.4f}  mAP75 {r['mAP75']:.4f}"
    else:
        head = f"top-1 {r['top1']:.4f}" + (f"  top-5 {r['top5']:.4f}" if "top5" in r else "")
    lines = [f"{task}: {head}", f"backbone weights: {r.get('backbone')}"]
    if r.get("backbone") == "RANDOM INIT":
        lines.append("WARNING: the backbone started from RANDOM weights (--random-init)")
    lines.append(f"epochs {r.get('epochs')}, {r.get('seconds')} s")
    for k, v in (r.get("outputs") or {}).items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
