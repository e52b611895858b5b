"""Hostile text into every text input of every page: a message or correct handling, never a
traceback or hang. And every page runs with outbound connections refused."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import open_app, open_view


def corpus() -> dict[str, str]:
    return {
        "empty": "",
        "whitespace": " \t\n  \r\n ",
        "huge": "saturday 21 november 2026 " * 4000,  # 100 000+ characters
        "control": "21\x00nov\x07\x1b[31m2026\x7f\u200b",
        "emoji": "🎉🍕 21 nov 2026 😀👍🏽",
        "korean": "2026년 11월 21일 토요일",
        "rtl": "‏السبت ٢١ نوفمبر ٢٠٢٦ שבת",
        "html": "<script>alert(1)</script><img src=x onerror=alert(2)> <b>b</b> **md** [a](javascript:x)",
        "punctuation": "?!.,;:-/()[]{}'\"…",
        "unknown": "qqq zzzz xyzzy plugh",
    }


TEXT_INPUTS = [  # (page, how to reach the widget, widget kind, key)
    ("families/seq2seq/page.py", {"input": "text"}, "text_input", "text"),
    ("families/seq2seq/page.py", {"input": "text"}, "text_input", "ref"),
    ("families/seq2seq/page.py", {"task": "translation", "input": "text"}, "text_input", "text"),
    ("families/transformer/page.py", {"input": "text"}, "text_input", "text"),
    ("families/transformer/page.py", {"input": "text"}, "text_input", "ref"),
    ("families/transformer/page.py", {"view": "Playground"}, "text_input", "tf_pg_text"),
    ("families/bert/page.py", {}, "text_area", "a"),
    ("families/bert/page.py", {}, "text_input", "b"),
    ("families/llm/page.py", {}, "text_area", "llm_prompt"),
]
IDS = [f"{page.split('/')[-1][:-3]}-{key}-{'-'.join(setup.values())}" for page, setup, _, key in TEXT_INPUTS]


def open_page(page: str, setup: dict) -> AppTest:
    at = open_app(page)
    for key, value in setup.items():
        if key == "view":  # a lazy tab
            open_view(at, value)
        else:
            widget = at.selectbox(key=key) if key == "task" else at.radio(key=key)
            widget.set_value(value).run()
    return at


@pytest.mark.parametrize("page, setup, kind, key", TEXT_INPUTS, ids=IDS)
def test_every_hostile_text_in_every_input(page, setup, kind, key):
    at = open_page(page, setup)
    for name, text in corpus().items():
        getattr(at, kind)(key=key).set_value(text).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
        for value in shown:  # user text reaches Markdown only escaped
            assert "<script>" not in value, (name, value)
        # Something useful is on screen: an output, or a message saying what to do.
        assert at.code or at.metric or at.error or at.info or at.warning, name


# The circuit tabs' prompt inputs: their keys carry the input they follow (a new clean source is a new
# corrupted-source box), so each is found by a part of its key. The GPT stands for SmolLM2 here: both
# pages draw the same tab (views/circuits.py).
CIRCUIT_INPUTS = [  # (page, tab, widget kind, a part of the key, the tab's first result chart)
    ("families/gpt/page.py", "Circuits", "text_area", "circ_clean", "gpt_circ_lens_grid"),
    ("families/gpt/page.py", "Circuits", "text_area", "circ_corrupt", "gpt_circ_lens_grid"),
    ("families/transformer/page.py", "Circuits", "text_input", "circ_corrupt", "tf_circ_lens_grid"),
    ("families/bert/page.py", "Patching", "text_input", "bert_patch_corrupt", "bert_patch_positions"),
    ("families/seq2seq/page.py", "Causal alignment", "text_input", "s2s_patch_corrupt", "s2s_causal_grid"),
]


CIRCUIT_IDS = [f"{page.split('/')[-1][:-3]}-{part}" for page, _, _, part, _ in CIRCUIT_INPUTS]


@pytest.mark.parametrize("page, view, kind, part, result", CIRCUIT_INPUTS, ids=CIRCUIT_IDS)
def test_every_hostile_text_in_every_circuit_input(page, view, kind, part, result):
    at = open_view(open_app(page), view)
    for name, text in corpus().items():
        (box,) = [w for w in getattr(at, kind) if part in w.key]
        box.set_value(text).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = [m.value for m in at.markdown] + [i.value for i in at.info] + [w.value for w in at.warning]
        assert not any("<script>" in value for value in shown), name
        # The tab answers: a message saying what to do, or its result over the pair.
        drawn = [c for c in at.get("plotly_chart") if result in c.proto.id]
        assert at.info or at.warning or at.error or drawn, name


@pytest.fixture
def no_network(monkeypatch):
    """Refuse (and record) every connection to a non-loopback address in this process."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            attempts.append(address)
            raise OSError(f"test: outbound connection to {address} refused")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_every_page_works_offline(no_network):
    at = open_page("families/seq2seq/page.py", {"input": "text"})
    assert at.code and not at.exception
    for page in ("families/transformer/page.py", "families/bert/page.py", "families/captioner/page.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.code or at.metric, page
    assert no_network == []
