"""Benchmark (not a test): memory after 500 reruns, and 8 concurrent sessions' latency.

    python benchmarks/bench_sessions.py

Reruns go through AppTest in this process (the caches and models are process-wide, as in the
server); memory is this process's resident set size.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def reruns(n: int = 500) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.radio(key="input").set_value("text").run()
    texts = [f"{d} nov {1990 + d}" for d in range(1, 29)]
    for i in range(50):  # warm up: models loaded, caches filled to their bounds
        at.text_input(key="text").set_value(texts[i % len(texts)]).run()
    start_mb, times = rss_mb(), []
    for i in range(n):
        began = time.perf_counter()
        at.text_input(key="text").set_value(f"{texts[i % len(texts)]} {i}").run()
        times.append(time.perf_counter() - began)
    assert not at.exception
    print(
        f"{n} reruns (each a new input, cache misses): RSS {start_mb:.0f} MB → {rss_mb():.0f} MB "
        f"(+{rss_mb() - start_mb:.1f} MB); median rerun {statistics.median(times) * 1000:.0f} ms"
    )


def concurrent(n: int = 8) -> None:
    apps = [AppTest.from_file(str(ROOT / "app.py"), default_timeout=300) for _ in range(n)]
    for i, at in enumerate(apps):
        at.query_params.update(
            {
                "input": "text",
                "text": f"{i + 1} march 2001",
                "scoring": ["additive", "dot", "general", "scaled_dot"][i % 4],
            }
        )
    alone = []
    for at in apps:
        start = time.perf_counter()
        at.run()
        alone.append(time.perf_counter() - start)
    done = []

    def work(at):
        start = time.perf_counter()
        at.text_input(key="text").set_value(at.text_input(key="text").value + " ").run()
        done.append(time.perf_counter() - start)

    threads = [threading.Thread(target=work, args=(at,)) for at in apps]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, each, first = time.perf_counter() - start, statistics.median(done), statistics.median(alone)
    print(
        f"{n} sessions at once: wall {wall:.2f} s, per session median {each * 1000:.0f} ms "
        f"(each alone, first run: {first * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    reruns()
    concurrent()
