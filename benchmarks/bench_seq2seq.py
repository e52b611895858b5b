"""Benchmark (not a test): seq2seq forward+trace latency and Seq2seq page rerun latency.

    python benchmarks/bench_seq2seq.py

Prints medians over repeated runs on this machine's CPU (or GPU when present).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from families import load  # noqa: E402
from families.seq2seq.runner import run as run_seq2seq  # noqa: E402
from tasks import TASKS  # noqa: E402
from tasks.batching import batch_tensors  # noqa: E402


def median_ms(fn, repeat: int = 20) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


TEXTS = {
    "dates": "on saturday, the 21st of november in the year 2026",
    "translation": "we are eating the big red apples in the garden and they do not see the old dog",
}


def bench_model(task_name: str, scoring: str) -> None:
    task = TASKS[task_name]
    model, _, sv, tv = load(f"seq2seq-{task_name}-{scoring}")
    src = task.tokenize(TEXTS[task_name])
    ids, lens = torch.tensor([sv.encode(src)]), torch.tensor([len(src)])
    ref = task.tokenize(run_seq2seq(model, task, src, sv, tv)[0].text)

    def greedy_plain():
        with torch.inference_mode():
            model.greedy(ids, lens, max_len=task.max_target, return_trace=False)

    print(
        f"{f'seq2seq-{task_name}-{scoring}':34s} {len(src):4d} "
        f"{median_ms(greedy_plain):8.2f}ms "
        f"{median_ms(lambda: run_seq2seq(model, task, src, sv, tv)):12.2f}ms "
        f"{median_ms(lambda: run_seq2seq(model, task, src, sv, tv, beam=4), 5):11.2f}ms "
        f"{median_ms(lambda: run_seq2seq(model, task, src, sv, tv, reference=ref)):13.2f}ms"
    )


def bench_batch(task_name: str) -> None:
    task = TASKS[task_name]
    model, _, sv, tv = load(f"seq2seq-{task_name}-additive")
    src, lens, _, _ = batch_tensors(task.generate(250, 99), sv, tv, next(model.parameters()).device)

    def batched():
        with torch.inference_mode():
            model.greedy(src, lens, max_len=task.max_target, return_trace=True)

    ms = median_ms(batched, 5)
    print(f"  {task_name}: batched greedy+trace, 250 sentences: {ms:.1f} ms ({ms / 250:.2f} ms/sentence)")


def bench_models() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'model':34s} {'len':>4s} {'greedy':>9s} {'greedy+trace':>13s} {'beam4+trace':>12s} "
        f"{'teacher+trace':>14s}"
    )
    for task_name in TASKS:
        for scoring in ("additive", "dot", "general", "scaled_dot", "none"):
            bench_model(task_name, scoring)
    for task_name in TASKS:
        bench_batch(task_name)


def bench_page() -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    start = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    print(f"\npage first run (imports, model load, decode): {(time.perf_counter() - start) * 1000:.0f} ms")
    print(f"page rerun, nothing changed (cache hit): {median_ms(lambda: at.run(), 10):.0f} ms")

    def rerun(widget, values):
        times = []
        for v in values:
            widget().set_value(v)
            start = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    at.session_state["s2s_view"] = "Step inspector"  # the lazy tab that holds the step slider
    cases = [
        ("new example (cache miss)", "selectbox", "example", range(10, 20)),
        ("step slider", "select_slider", "s2s_step", [1, 2, 3, 4, 5]),
        ("scoring switch", "selectbox", "scoring", ["dot", "general", "scaled_dot", "additive"]),
    ]
    for label, kind, key, values in cases:
        ms = rerun(lambda kind=kind, key=key: getattr(at, kind)(key=key), values)
        print(f"page rerun, {label}: {ms:.0f} ms")
    assert not at.exception


if __name__ == "__main__":
    bench_models()
    bench_page()
