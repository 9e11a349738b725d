"""The ``on_epoch_end`` callback every training loop takes.

A loop calls it once per finished epoch, after that epoch's checkpoint is stored, with one dict:
``epoch`` (1-based) and ``epochs`` (the total), the loop's own metrics of the epoch (a loss, or
accuracies), ``seconds`` (the epoch), ``images_per_s`` (training throughput), ``elapsed_s`` (since
the loop started in this call), ``resumed_from`` (the epoch this call started after: an ETA is
``elapsed_s / (epoch - resumed_from) * (epochs - epoch)``) and, where the loop checkpoints,
``checkpoint`` (its URI). Callers use it to show progress, or, in a Ray worker, to report the
epoch; a callback that raises stops the run after a stored epoch, so a rerun resumes there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

OnEpochEnd = Callable[[dict[str, Any]], Any]


def epoch_end(callback: OnEpochEnd | None, epoch: int, epochs: int, started: float, resumed_from: int,
              **metrics: Any) -> None:
    """Call ``callback`` (if any) with the metrics of ``epoch`` and the run's timing."""
    if callback is not None:
        callback({"epoch": epoch, "epochs": epochs, **metrics,
                  "elapsed_s": round(time.time() - started, 3), "resumed_from": resumed_from})
