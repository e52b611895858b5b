"""Benchmark (not a test): transformer forward with/without trace, and Transformer page reruns.

python benchmarks/bench_transformer.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_seq2seq import TEXTS, median_ms  # noqa: E402
from families import load  # noqa: E402
from families.transformer.runner import run  # noqa: E402
from models.attention import Interventions  # noqa: E402
from models.checkpoints import checkpoint_name  # noqa: E402
from models.transformer import PRESETS  # noqa: E402
from tasks import TASKS  # noqa: E402


def bench_model(task_name: str, variant: str) -> None:
    name = checkpoint_name("transformer", task_name, variant)
    if not (ROOT / "assets" / f"{name}.json").exists():
        return
    task = TASKS[task_name]
    model, _, sv, tv = load(name)
    src = task.tokenize(TEXTS[task_name])
    ids, lens = torch.tensor([sv.encode(src)]), torch.tensor([len(src)])
    ref = tuple(run(model, task, src, sv, tv).output[:-1])
    tgt = torch.tensor([tv.encode(("<s>", *ref))])

    def forward(trace: bool):
        with torch.inference_mode():
            model(ids, lens, tgt, return_trace=trace)

    hot = Interventions(scaled=False, temperature=2.0)
    cols = [
        median_ms(lambda: forward(False)),
        median_ms(lambda: forward(True)),
        median_ms(lambda: run(model, task, src, sv, tv)),
        median_ms(lambda: run(model, task, src, sv, tv, hot)),
    ]
    print(f"{name:32s} {len(src):4d} " + " ".join(f"{ms:10.2f}ms" for ms in cols))


def bench_page() -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    start = time.perf_counter()
    at.switch_page("families/transformer/page.py").run()
    print(
        f"\ntransformer page first run (model load, decode, 100-example accuracy): "
        f"{(time.perf_counter() - start) * 1000:.0f} ms"
    )
    toggles = [
        ("causal mask off", lambda: at.sidebar.checkbox(key="tf_causal").uncheck()),
        ("padding mask off", lambda: at.sidebar.checkbox(key="tf_padding").uncheck()),
        ("scaling off", lambda: at.sidebar.checkbox(key="tf_scaled").uncheck()),
        ("temperature 2.0", lambda: at.sidebar.slider(key="tf_temp").set_value(2.0)),
        ("PE off", lambda: at.sidebar.checkbox(key="tf_pe").uncheck()),
        ("ablate a head", lambda: at.sidebar.multiselect(key="tf_ablate_h4").set_value([("cross", 1, 0)])),
        ("switch to h8", lambda: at.selectbox(key="model").set_value("h8")),
    ]
    for label, action in toggles:
        action()
        start = time.perf_counter()
        at.run()
        print(f"rerun after {label:18s}: {(time.perf_counter() - start) * 1000:6.0f} ms (cache miss)")
    assert not at.exception, [e.value for e in at.exception]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - start) * 1000)
    print(f"rerun, nothing changed (cache hit): {statistics.median(times):.0f} ms")


if __name__ == "__main__":
    print(f"{'model':32s} {'len':>4s} {'fwd':>11s} {'fwd+trace':>11s} {'greedy+tr':>12s} {'+interv.':>12s}")
    for task_name in TASKS:
        for variant in PRESETS:
            bench_model(task_name, variant)
    bench_page()
