"""Fault injection for tests and chaos drills: ``DNA_FAULT_BLOCK=<k>:<epoch>``.

Read where the fan-out starts and forwarded to the job, it makes block ``k``'s rank-0 worker die
with ``os._exit(1)`` right after the checkpoint of epoch ``<epoch>`` (1-based) is stored, on its
first attempt only: before dying it writes the marker ``<gen>/supernet/block<k>/fault-epoch<epoch>.json``
(the epochs that attempt trained), and an attempt that finds the marker carries on. Ray Train
then restarts the block's worker group, which resumes from the stored checkpoint. Training only;
rating ignores it.
"""

from __future__ import annotations

import os
import sys
import time

from dna import storage
from dna.errors import DnaError
from dna.layout import fault_marker

FAULT_ENV = "DNA_FAULT_BLOCK"


def parse_fault(spec: str | None) -> tuple[int, int] | None:
    """``"k:epoch"`` -> (block, 1-based epoch); None or empty -> None."""
    if not spec:
        return None
    try:
        k, e = (int(x) for x in spec.split(":"))
    except ValueError:
        raise DnaError(f"{FAULT_ENV}={spec!r}: expected '<block>:<epoch>', e.g. '1:1'") from None
    if k < 0 or e < 1:
        raise DnaError(f"{FAULT_ENV}={spec!r}: expected block >= 0 and epoch >= 1")
    return k, e


def inject_fault(fault: tuple[int, int] | None, name: str, block_out: str, epoch_metrics: dict,
                 trained: list[int]) -> None:
    """Die like a lost worker when ``fault`` names this block and stored epoch (its first attempt).

    ``epoch_metrics``: ``train_block``'s ``on_epoch_end`` metrics; ``trained``: the epochs this
    attempt trained, recorded in the marker with the epoch it resumed from."""
    k, epoch = epoch_metrics["block"], epoch_metrics["epoch"]
    if fault != (k, epoch):
        return
    marker = fault_marker(block_out, epoch)
    if storage.exists(marker):
        return
    storage.write_json({"block": k, "epoch": epoch, "trained_epochs": list(trained),
                        "resumed_from_epoch": epoch_metrics["resumed_from"], "time": time.time(),
                        "pid": os.getpid()}, marker)
    print(f"[{name}] {FAULT_ENV}: block {k} worker exits after epoch {epoch}", flush=True)
    sys.stderr.flush()
    os._exit(1)
