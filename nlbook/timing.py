"""Timing helpers shared by the chapters' measurements and ``python -m nlbook.bench``.

A low module on purpose: it imports only the standard library, so a chapter module (e.g.
``nlbook.memory``) can time itself without depending on the benchmark script, and the
benchmark script can import the chapters without an import cycle.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

__all__ = ["load_average", "time_call"]


def time_call(function: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
              min_seconds: float = 0.0) -> float:
    """Median wall time of ``function()`` in seconds over ``repeats`` runs after ``warmup``.

    Each run loops ``function`` until it has taken at least ``min_seconds`` and reports the
    mean time of one call, so very short calls are not dominated by timer resolution.
    """
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            function()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples)


def load_average() -> tuple[float, float, float]:
    """The machine's 1-, 5- and 15-minute load averages (NaN where the OS has none): printed
    beside every timing, because a shared CPU's load moves absolute times."""
    if hasattr(os, "getloadavg"):
        return os.getloadavg()
    return (float("nan"),) * 3
