"""One terminal line per block event of a fan-out: started, epoch, resumed, finished, failed.

The lines come from the driver (a Tune callback), not from the Ray workers: in quiet mode
(:mod:`components.fanout.quiet`) worker output stays in Ray's session logs. Epochs reach the
driver through Ray's own ``TuneReportCallback`` (Ray Train reports -> Tune results). A failure
is one line with its cause and the file holding the full log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dna.progress import eta_s


def cause_line(text: str) -> str:
    """The one line of an error text (a traceback, a Ray error) that says what went wrong: its
    last non-empty line, e.g. ``ValueError: boom``."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


class BlockEvents:
    """Formats and logs the events of one fan-out (``prefix``: e.g. ``[gen 0] train``)."""

    def __init__(self, prefix: str, log: Callable[[str], Any], total: int):
        self.prefix, self.log, self.total = prefix, log, total
        self.started: dict[int, float] = {}
        self.attempts: dict[int, int] = {}
        self.finished = 0

    def _line(self, k: int, text: str) -> None:
        self.log(f"{self.prefix} block {k}: {text}")

    def start(self, k: int) -> None:
        self.attempts[k] = self.attempts.get(k, 0) + 1
        self.started.setdefault(k, time.time())
        again = f" (attempt {self.attempts[k]})" if self.attempts[k] > 1 else ""
        self._line(k, f"started{again}")

    def result(self, k: int, result: dict) -> None:
        """A Tune result of block ``k``'s trial: an epoch (from Ray Train), its end, or its failure."""
        if "dna_error" in result:
            self.fail(k, result["dna_error"], result.get("dna_log"))
        elif "dna_json" in result:
            self.finished += 1
            secs = time.time() - self.started.get(k, time.time())
            self._line(k, f"finished in {secs:.1f} s ({self.finished}/{self.total} blocks done)")
        elif "epoch" in result:
            self.epoch(k, result)

    def epoch(self, k: int, m: dict) -> None:
        epoch, epochs, resumed = int(m["epoch"]), int(m.get("epochs", 0)), int(m.get("resumed_from") or 0)
        if resumed and epoch == resumed + 1:
            self._line(k, f"resumed from its checkpoint of epoch {resumed}")
        parts = [f"epoch {epoch}/{epochs}"]
        if "loss" in m:
            parts.append(f"loss {float(m['loss']):.4f}")
        if m.get("images_per_s"):
            parts.append(f"{float(m['images_per_s']):.0f} img/s")
        eta = eta_s(m)
        if eta is not None and epochs > epoch:
            parts.append(f"ETA {eta:.0f} s")
        self._line(k, ", ".join(parts))

    def fail(self, k: int, error: str, log_uri: str | None = None) -> None:
        where = f" (full log: {log_uri})" if log_uri else ""
        self._line(k, f"failed: {cause_line(error)}{where}")

    def retry(self, k: int, error: str | None, log_uri: str | None) -> None:
        where = f" (full log: {log_uri})" if log_uri else ""
        self._line(k, f"lost its trial, retrying: {cause_line(error or 'trial process ended')}{where}")


def tune_callback(events: BlockEvents):
    """A :class:`ray.tune.Callback` feeding ``events`` from Tune's trial events on the driver."""
    from ray import tune

    def block(trial) -> int:
        return int(trial.config["block"])

    def error_text(trial) -> tuple[str | None, str | None]:
        path = getattr(trial, "error_file", None)
        try:
            with open(path) as f:
                return f.read(), path
        except (OSError, TypeError):
            return None, path

    class _BlockEventsCallback(tune.Callback):
        # Tune pickles its callbacks with the experiment (tuner.pkl); the log function need not be
        # picklable (Ray Train patches ``print``), and a restored experiment logs nothing.
        def __getstate__(self):
            return {}

        def __setstate__(self, state):
            self.events = None

        def __init__(self, events: BlockEvents):
            self.events = events

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.events:
                self.events.start(block(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.events:
                self.events.result(block(trial), result)

        def on_trial_recover(self, iteration, trials, trial, **info):
            if self.events:
                self.events.retry(block(trial), *error_text(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.events:
                text, path = error_text(trial)
                self.events.fail(block(trial), text or "the trial failed", path)

    return _BlockEventsCallback(events)
