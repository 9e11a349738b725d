"""The ``on_epoch_end`` callback every training loop takes, and the one progress display.

A loop calls it once per finished epoch, after that epoch's checkpoint is stored, with one dict:
``epoch`` (1-based) and ``epochs`` (the total), the loop's own metrics of the epoch (a loss, or
accuracies), ``seconds`` (the epoch), ``images_per_s`` (training throughput), ``elapsed_s`` (since
the loop started in this call), ``resumed_from`` (the epoch this call started after: an ETA is
``elapsed_s / (epoch - resumed_from) * (epochs - epoch)``) and, where the loop checkpoints,
``checkpoint`` (its URI). Callers use it to show progress, or, in a Ray worker, to report the
epoch; a callback that raises stops the run after a stored epoch, so a rerun resumes there.

:func:`reporter` is the callback every command and component passes, so that every stage shows
progress in one format: a tqdm bar when stderr is a terminal, else one plain line per epoch
(KFP and Ray logs, pipes), e.g. ``[gen 0] retrain  epoch 3/20  loss 1.234  top-1 41.2%  612 img/s
ETA 4m12s``.
"""

from __future__ import annotations

import sys
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


def chain(*callbacks: OnEpochEnd | None) -> OnEpochEnd:
    """One callback calling each given one (``None`` skipped) in order."""
    todo = [c for c in callbacks if c is not None]

    def call(m: dict[str, Any]) -> None:
        for c in todo:
            c(m)
    return call


# ----- the line ---------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """``42s``, ``4m12s`` or ``2h05m``: short enough for a log line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_s(m: dict[str, Any]) -> float | None:
    """Seconds left after this epoch, from the epochs this call trained (a resumed run's earlier
    epochs took no time here); ``None`` when the dict lacks the timing."""
    try:
        done = int(m["epoch"]) - int(m.get("resumed_from", 0))
        left = int(m["epochs"]) - int(m["epoch"])
        elapsed = float(m["elapsed_s"])
    except (KeyError, TypeError, ValueError):
        return None
    if done <= 0:
        return None
    return elapsed / done * max(0, left)


def _top1(m: dict[str, Any]) -> float | None:
    """The epoch's top-1 in percent: the EMA net's where it has one (what the run keeps)."""
    for key in ("ema_top1", "val_top1", "top1"):
        if isinstance(m.get(key), (int, float)):
            return float(m[key])
    return None


def _rate(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def stats(m: dict[str, Any]) -> str:
    """The epoch's figures: loss, top-1 (where the loop evaluates), images/s, ETA (or, after the
    last epoch, the time this call took)."""
    parts = []
    if isinstance(m.get("loss"), (int, float)):
        parts.append(f"loss {m['loss']:#.4g}")
    top1 = _top1(m)
    if top1 is not None:
        parts.append(f"top-1 {top1:.1f}%")
    if isinstance(m.get("images_per_s"), (int, float)):
        parts.append(f"{_rate(m['images_per_s'])} img/s")
    eta = eta_s(m)
    if eta is not None:
        last = int(m["epoch"]) >= int(m["epochs"])
        parts.append(f"done in {duration(float(m['elapsed_s']))}" if last else f"ETA {duration(eta)}")
    return "  ".join(parts)


def name(label: str, m: dict[str, Any]) -> str:
    """``label`` plus what the loop's dict says it trains: a transfer ``task``, a ``block``."""
    out = label
    if m.get("task") is not None:
        out += f" {m['task']}"
    if m.get("block") is not None:
        out += f" block {m['block']}"
    return out


def line(label: str, m: dict[str, Any]) -> str:
    """The plain progress line of one epoch."""
    return f"{name(label, m)}  epoch {m['epoch']}/{m['epochs']}  {stats(m)}".rstrip()


def _stderr_line(text: str) -> None:
    # A write, not print(): Ray Train's workers patch print() to log each message twice over.
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _main_rank() -> bool:
    """False on the other ranks of a torch.distributed job: one line per epoch, not per rank."""
    dist = sys.modules.get("torch.distributed")
    try:
        return dist is None or not dist.is_initialized() or dist.get_rank() == 0
    except (AttributeError, RuntimeError):
        return True


# ----- the reporter -----------------------------------------------------------------------------
class Reporter:
    """An ``on_epoch_end`` callback that shows each epoch (see :func:`reporter`); ``close()``
    ends a tqdm bar. A new bar starts when a new loop reports (another task or block, or an
    epoch not after the last one), so one reporter serves the stages of a step in turn."""

    def __init__(self, label: str, log: Callable[[str], Any] = _stderr_line, tty: bool | None = None) -> None:
        self.label = label
        self.log = log
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar: Any = None
        self._key: tuple | None = None

    def __call__(self, m: dict[str, Any]) -> None:
        if not _main_rank():
            return
        if not self.tty:
            self.log(line(self.label, m))
            return
        key = (m.get("task"), m.get("block"), m["epochs"])
        if self._bar is not None and (key != self._key or m["epoch"] <= self._bar.n):
            self.close()
        if self._bar is None:
            self._bar = self._new_bar(name(self.label, m), int(m["epochs"]), int(m.get("resumed_from", 0)))
            self._key = key
        self._bar.set_postfix_str(stats(m), refresh=False)
        self._bar.update(int(m["epoch"]) - self._bar.n)
        if m["epoch"] >= m["epochs"]:     # the loop is done: leave the finished bar
            self.close()

    @staticmethod
    def _new_bar(desc: str, total: int, initial: int):
        from tqdm import tqdm

        # Our own ETA in the postfix (from the loop's timing), not tqdm's: the bar starts before the
        # loop does (data, model), and a resumed run's first epochs took no time here.
        return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True,
                    bar_format="{desc}  epoch {n_fmt}/{total_fmt} |{bar}| {postfix}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._key = None, None

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reporter(label: str, log: Callable[[str], Any] | None = None, tty: bool | None = None) -> Reporter:
    """The progress callback of a stage named ``label`` (e.g. ``[gen 0] retrain``): a tqdm bar on
    stderr when ``tty`` (default: stderr is a terminal), else one line per epoch through ``log``
    (default: stderr, so a command's stdout stays its result). Use it as a context manager, or
    call ``close()``, to end the bar."""
    return Reporter(label, log=log or _stderr_line, tty=tty)
