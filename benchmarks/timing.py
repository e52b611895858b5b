"""What the benchmarks time with: one call, two calls taken in turns (ratios measured in one run, so a
busy machine slows both alike), and this process's resident memory."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def timed(fn) -> float:
    """Seconds ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(a, b, repeat: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run a, b, a, b … ``repeat`` times after one warm-up each."""
    a(), b()
    times = [(timed(a), timed(b)) for _ in range(repeat)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def rss_mb() -> float:
    """This process's resident memory, MB (Linux)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
