"""Shared by the page tests: open the app on a page, read Plotly figures and the attention component's
data back from AppTest."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.testing.v1 import AppTest

from families import FAMILIES
from models.checkpoints import load_card
from views.attention_component import unpack, unpack_rows
from views.outputs import TEXT_BLOCK
from views.serving import loaded_model

APP = Path(__file__).resolve().parent.parent / "app.py"


def open_app(page: str | None = None, **query) -> AppTest:
    """A fresh app (caches cleared) on ``page``, with optional URL query parameters."""
    st.cache_data.clear()
    app = AppTest.from_file(str(APP), default_timeout=300)
    app.query_params.update(query)
    app.run()
    if page is not None:
        app.switch_page(page).run()
        if query:  # the first run on the page binds its widgets; the second draws what the URL asked for
            app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def shipped(name: str):
    """The app's one cached copy of shipped checkpoint ``name`` (model, card, vocabularies): what the
    pages compute with, so a test that recomputes a page's numbers runs the same model object."""
    return loaded_model(FAMILIES[load_card(name)["kind"]], name)


def text_blocks(app: AppTest) -> list[str]:
    """The text of every `views.outputs.text_block` on the page, in order, as the visitor reads it."""
    block = re.compile(f'<pre class="{TEXT_BLOCK}"[^>]*>(.*)</pre>', re.S)
    return [html.unescape(m.group(1)) for e in app.get("html") if (m := block.fullmatch(e.value))]


def chart(app: AppTest, key: str) -> dict:
    """The Plotly figure JSON of the chart whose widget key contains ``key``."""
    (c,) = [c for c in app.get("plotly_chart") if key in c.proto.id]
    return json.loads(c.proto.spec)


def array(value) -> np.ndarray:
    """A Plotly array as numpy, whether sent as a list or as a base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value, dtype=float)


def open_view(app: AppTest, label: str) -> AppTest:
    """Open one of the page's lazy tabs (`views.layout.lazy_tabs`): only the open tab's view runs."""
    (key,) = [f.tab_key for f in FAMILIES.values() if f.tab_key in app.session_state]
    app.session_state[key] = label
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def sent(app: AppTest, key: str) -> tuple[dict, dict, np.ndarray | None]:
    """What the attention component whose key ends with ``key`` was sent: its header, its exact maps
    by (layer, head) and its thumbnails (`views.attention_component.unpack`)."""
    return unpack(sent_bytes(app, key))


def sent_bytes(app: AppTest, key: str) -> bytes:
    """The payload the attention component whose key ends with ``key`` was sent, as it went."""
    (c,) = [c for c in app.get("bidi_component") if c.proto.id.endswith(key)]
    return c.proto.bytes


def sent_rows(app: AppTest, key: str) -> dict[int, np.ndarray]:
    """The rows an image overlay was sent: query → its (L, h, Tk) row of every layer and head."""
    return unpack_rows(sent_bytes(app, key))


def sent_maps(app: AppTest, key: str) -> np.ndarray:
    """Every map the component was sent, (L, h, Tq, Tk): all of them must have been sent exact."""
    header, exact, _ = sent(app, key)
    layers, heads = range(header["layers"]), range(header["heads"])
    return np.stack([np.stack([exact[i, h] for h in heads]) for i in layers])


def run_together(work, n: int) -> None:
    """``work(i)`` for i in 0..n-1 on n threads that a barrier releases at once, so the runs overlap
    (the way sessions share one cached model); returns when all are done."""
    start = threading.Barrier(n)

    def body(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


NEAR_TIE_SWAPS = 3  # swaps of near-equal values a recomputation on another CPU may make in a card's check


def assert_spearman_means_recompute(stored: dict, recomputed: dict, positions: int) -> None:
    """A card's held-out Spearman means (measure → {"mean", "n"}) against the same means recomputed
    on this machine. ``n`` (comparisons with a non-constant ranking) must match exactly; the means
    within a float bound, not to the last digit: near-equal values (an ablation that barely matters,
    two almost equal attention weights) are ordered by float32 rounding, and that differs between
    CPUs, thread counts and batch shapes. Swapping two adjacent ranks among n positions changes Σd²
    by at most 2n, so one comparison's ρ = 1 − 6Σd²/(n(n² − 1)) by at most 12/(n² − 1), and a mean
    of ``n_kept`` comparisons by that / n_kept. `NEAR_TIE_SWAPS` such swaps are allowed, at the
    fewest ``positions`` any comparison in the check ranks (the largest jump)."""
    for name, values in stored.items():
        assert recomputed[name]["n"] == values["n"], name
        bound = NEAR_TIE_SWAPS * 12 / (positions**2 - 1) / max(1, values["n"])
        got = recomputed[name]["mean"]
        assert abs(got - values["mean"]) <= bound, (name, got, values["mean"], bound)


def forget_app_llm() -> None:
    """Nothing loaded on the language-model page: the app's loader cache and the pinned shipped model."""
    from families import FAMILIES
    from families.llm import runner
    from views.serving import _once

    _once(FAMILIES["llm"], None).clear()
    runner.shipped_model.cache_clear()
