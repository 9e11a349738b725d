"""Checks every `dna` sub-command runs before any work: numeric flags within sane bounds, output
locations writable, an ImageFolder listed and one image of it decoded.

A bad value must fail in the first second with a message naming it, not after a search, a teacher
download or an epoch of training (nor by allocating gigabytes: ``--top-k 10**9``,
``--resolution 100000``). Bounds are keyed by the argparse ``dest``, so a new sub-command's flags
of the same names are checked without touching this module.
"""

from __future__ import annotations

import argparse
import math
import os
import uuid
from dataclasses import dataclass

from dna.errors import DnaError
from dna.space.mbconv import MAX_RESOLUTION


@dataclass(frozen=True)
class Bound:
    """An allowed range; ``open_low``: the low end itself is excluded (``lr`` > 0)."""

    low: float
    high: float
    integer: bool = True
    open_low: bool = False

    def describe(self) -> str:
        if self.integer:
            return f"an integer in {int(self.low)}..{int(self.high)}"
        low = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
        return f"a finite number {low} and <= {self.high:g}"

    def holds(self, v) -> bool:
        if self.integer:
            return isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= self.high
        v = float(v)
        if not math.isfinite(v) or v > self.high:
            return False
        return v > self.low if self.open_low else v >= self.low


def _int(low: int, high: int) -> Bound:
    return Bound(low, high)


def _float(low: float, high: float, open_low: bool = False) -> Bound:
    return Bound(low, high, integer=False, open_low=open_low)


_STEPS = _int(1, 10**9)
_SIZE = _int(1, 10_000_000)   # data set sizes (images)
# dest -> bound. Sizes that allocate memory are bounded from above (resolution, batch, top-k).
BOUNDS: dict[str, Bound] = {
    "resolution": _int(8, MAX_RESOLUTION),
    "batch_size": _int(1, 8192),
    "num_classes": _int(1, 100_000),
    "seed": _int(0, 2**32 - 1),
    "block": _int(0, 1000),
    "generation": _int(0, 1000),
    "calib_batches": _int(0, 10**6),
    "max_batches": _STEPS,
    "max_steps": _STEPS,
    "steps_per_epoch": _STEPS,
    "max_train_batches": _STEPS,
    "max_val_batches": _STEPS,
    "epochs": _int(1, 100_000),
    "train_size": _SIZE,
    "val_size": _SIZE,
    "rating_size": _SIZE,
    "workers": _int(0, 256),
    "num_workers": _int(0, 256),
    "warmup": _int(0, 100_000),
    "repeats": _int(1, 100_000),
    "threads": _int(1, 1024),
    "proj_dim": _int(1, 65_536),
    "proj_hidden": _int(1, 65_536),
    "samples": _int(0, 1000),
    "output_stride": _int(8, 32),
    "min_size": _int(8, 4096),
    "max_size": _int(8, 4096),
    "lr": _float(0, 100, open_low=True),
    "lr_decay": _float(0, 10, open_low=True),
    "weight_decay": _float(0, 10),
    "decay_epochs": _float(0, 1e6, open_low=True),
    "decay_rate": _float(0, 10, open_low=True),
    "warmup_epochs": _float(0, 1e6),
    "label_smoothing": _float(0, 0.999),
    "drop_rate": _float(0, 0.999),
    "drop_path_rate": _float(0, 0.999),
    "ema_decay": _float(0, 0.999999),
    "kd_alpha": _float(0, 1),
    "kd_temperature": _float(0, 1000, open_low=True),
    "trust_coeff": _float(0, 10, open_low=True),
    "lambda_1": _float(0, 1e6),
    "lambda_2": _float(0, 1e6),
    "lambda_3": _float(0, 1e6),
    "gamma": _float(0, 1000, open_low=True),
    "width": _float(0, 16, open_low=True),
    "depth": _float(0, 16, open_low=True),
}


def bounds() -> dict[str, Bound]:
    """:data:`BOUNDS` with ``--top-k``'s, which the search owns (imported here, at check time, as
    it pulls in pyarrow: building a parser stays light)."""
    from dna.search.traversal import MAX_TOP_K

    return {**BOUNDS, "top_k": _int(1, MAX_TOP_K)}


def _flags(parser: argparse.ArgumentParser, argv=None) -> dict[str, str]:
    """dest -> the flag to name in a message: the spelling the user typed in ``argv`` (an alias
    such as ``--workers`` included), else the canonical (first) one; positionals by their name."""
    typed = {str(a).split("=", 1)[0] for a in (argv or ()) if str(a).startswith("--")}
    out = {}
    for a in parser._actions:
        if a.option_strings:
            out[a.dest] = next((o for o in a.option_strings if o in typed), a.option_strings[0])
        else:
            out[a.dest] = a.dest
    return out


def check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace, argv=None) -> None:
    """Every numeric flag of ``args`` with a :data:`BOUNDS` entry lies inside it."""
    flags = _flags(parser, argv)
    for dest, bound in bounds().items():
        v = getattr(args, dest, None)
        if v is None or dest not in flags or isinstance(v, str):
            continue
        if not bound.holds(v):
            raise DnaError(f"{flags[dest]} {v!r}: expected {bound.describe()}")


# ------------------------------------------------------------------------------------------
# Output locations


def check_writable(uri: str, flag: str = "--out", kind: str = "folder") -> None:
    """Fail now, naming ``uri``, when nothing can be written there: a local folder that is
    read-only or is a file, an output ``kind`` ("file" or "folder") where the other exists, or an
    S3 bucket that does not exist."""
    from dna import storage

    if storage.is_s3(uri):
        storage.ensure_bucket(uri)
        return
    path = storage.local_path(uri)
    if path is None:
        return
    path = os.path.abspath(os.path.expanduser(path))
    if kind == "file" and os.path.isdir(path):
        raise DnaError(f"{flag} {uri!r} is a folder, expected a file name to write")
    if kind == "folder" and os.path.exists(path) and not os.path.isdir(path):
        raise DnaError(f"{flag} {uri!r} is a file, expected a folder to write into")
    probe_dir = path if os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(probe_dir):
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir:
            break
        probe_dir = parent
    if not os.path.isdir(probe_dir):
        raise DnaError(f"{flag} {uri!r}: {probe_dir!r} is a file, expected a folder to write under")
    probe = os.path.join(probe_dir, f".dna-write-probe-{uuid.uuid4().hex[:12]}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DnaError(f"{flag} {uri!r}: cannot write under folder {probe_dir!r} ({exc.strerror or exc}); "
                       "expected a writable location") from None
    os.close(fd)
    os.unlink(probe)


def check_outputs(args: argparse.Namespace, outputs, parser: argparse.ArgumentParser, argv=None) -> None:
    """``outputs``: dests of output folders, or a mapping dest -> "file" | "folder"."""
    flags = _flags(parser, argv)
    kinds = dict(outputs) if isinstance(outputs, dict) else dict.fromkeys(outputs, "folder")
    for dest, kind in kinds.items():
        uri = getattr(args, dest, None)
        if isinstance(uri, str) and uri:
            check_writable(uri, flags.get(dest, dest), kind)


# ------------------------------------------------------------------------------------------
# Data


def check_data(uri: str | None, splits: tuple[str, ...] = ("train",), rating_size: int | None = None) -> None:
    """An ImageFolder root (not ``builtin:``) is listed and one image per split decoded; with
    ``rating_size``, its train split must hold that many images out for rating."""
    if not isinstance(uri, str) or not uri or uri.startswith("builtin:"):
        return
    from dna.data.imagefolder import check_folder

    check_folder(uri, splits, rating_size)


def run_checks(module, parser: argparse.ArgumentParser, args: argparse.Namespace, argv=None) -> None:
    """All checks of one sub-command: bounds, its own ``preflight(args)`` if it has one, its
    outputs (module ``OUTPUTS``: folder dests or dest -> "file"/"folder"; default the folder
    ``--out``) and its data (module ``DATA_SPLITS``,
    default ``("train",)``; None: the command checks its data itself). ``argv``: the command line,
    so that a message names the spelling of a flag the user typed."""
    check_bounds(parser, args, argv)
    own = getattr(module, "preflight", None)
    if own is not None:
        own(args)
    check_outputs(args, getattr(module, "OUTPUTS", ("out",)), parser, argv)
    splits = getattr(module, "DATA_SPLITS", ("train",))
    if splits is not None and hasattr(args, "data"):
        rating = getattr(args, "rating_size", None)
        if rating is None and hasattr(args, "rating_size"):
            from dna.data import DataConfig

            rating = DataConfig.rating_size  # what the stage will hold out of an ImageFolder
        check_data(args.data, splits, rating)
