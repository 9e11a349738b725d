"""What a checkpoint carries besides weights so that resuming is exact, and what it must match.

A resumed run equals an uninterrupted one only if every random stream continues where it stopped:
the global torch (and CUDA), numpy and python ``random`` generators (flip augmentation, dropout and
drop-path, timm's RandAugment, Mixup and random erasing draw from these) and the loop's own
generators (op sampling, the loader's shuffle). :func:`capture_rng_state` snapshots all of them
into plain tensors, ints and lists (``torch.load(weights_only=True)`` reads them back) and
:func:`restore_rng_state` puts them back; :func:`seed_all` seeds the global ones.
:func:`check_resume_config` refuses a checkpoint written with other training settings, and
:func:`check_count` rejects a step or epoch count below one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from dna.errors import DnaError
from dna.train.config import check_count  # noqa: F401 (re-exported: the torch-free check)


def capture_rng_state(generators: Mapping[str, torch.Generator | None] | None = None) -> dict[str, Any]:
    """Every random stream's state now: torch, CUDA (when initialised), numpy, python, and the
    named ``generators`` (None entries are skipped: e.g. a loader without its own generator)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items() if g is not None},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator | None] | None = None,
                      where: str = "the checkpoint") -> None:
    """Put back what :func:`capture_rng_state` stored; every named generator must be in it."""
    stored = state.get("generators", {})
    wanted = {name: g for name, g in (generators or {}).items() if g is not None}
    missing = sorted(set(wanted) - set(stored))
    if missing:
        raise DnaError(f"{where} holds no state of the random generators {missing}; use a fresh out folder")
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["cached_gaussian"])))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in wanted.items():
        g.set_state(stored[name].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def seed_all(seed: int) -> None:
    """Seed the global torch (and CUDA), numpy and python generators: a fixed seed fixes also what
    timm's RandAugment, Mixup and random erasing draw."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _canonical(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str, sort_keys=True))


def check_resume_config(stored: Mapping[str, Any] | None, current: Mapping[str, Any], where: str,
                        ignore: Iterable[str] = ()) -> None:
    """Refuse to resume from the checkpoint at ``where`` when its stored training settings differ
    from ``current`` (nested keys compared as ``data.seed`` ...), naming every differing key.

    ``ignore``: keys (or key prefixes) that may change between attempts, e.g. ``epochs`` (a longer
    run continues a shorter one) or ``device``. A key the stored config lacks (a checkpoint written
    before the key existed) is not compared."""
    if stored is None:
        return
    skip = tuple(ignore)
    old, new = _flatten(_canonical(stored)), _flatten(_canonical(current))
    diff = sorted(k for k in new if k in old and old[k] != new[k]
                  and not any(k == s or k.startswith(s + ".") for s in skip))
    if diff:
        shown = ", ".join(f"{k} (stored {old[k]!r}, now {new[k]!r})" for k in diff)
        raise DnaError(f"{where} was written with other training settings: {shown}; rerun with the stored "
                       "settings to resume, or use a fresh out folder")
