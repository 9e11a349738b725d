"""Timing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int):
    """The median wall time of ``repeats`` calls of ``fn`` and the last call's result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out
