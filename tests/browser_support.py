"""What the browser tests do with a page: wait for the app to settle, read back its charts and
output, take a screenshot, and compute the output a page should show with the same models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from tasks import TASKS, prepare
from tasks.common import Vocab
from tests.browser_server import CHROMIUM
from views.serving import cached, card

# Every browser test file's pytestmark.
BROWSER_TESTS = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium not installed (apt-get install -y chromium); CI installs it",
    ),
    pytest.mark.slow,  # a server and a browser: about 100 s
]


def settle(page, charts: int = 1, timeout: float = 90_000) -> None:
    """Wait until the app has stopped running and at least ``charts`` Plotly charts are drawn."""
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}", timeout=timeout
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(500)


def trace_types(page) -> list[list[str]]:
    return page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(p => (p.data || []).map(t => t.type))"
    )


def output(page) -> str:
    return page.get_by_test_id("stCode").first.inner_text().strip()


def no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def type_prompt(page, text: str, ready: str) -> None:
    """Type ``text`` into the page's "Prompt" box as a user does (Ctrl+Enter applies it), wait for the
    JavaScript condition ``ready`` and two drawn charts, and check no exception is shown."""
    box = page.get_by_label("Prompt", exact=True)
    box.fill(text)
    box.press("Control+Enter")
    page.wait_for_function(ready, timeout=90_000)
    settle(page, charts=2)
    no_exception(page)


def seq2seq_shown(text: str, scoring: str = SCORINGS[0]) -> str:
    """What the Seq2seq page prints for typed ``text``, computed here as the page computes it: its
    default task (the first) and decoding (greedy), the same checkpoint, tokens and cached run."""
    task = next(iter(TASKS.values()))
    name = checkpoint_name("seq2seq", task.name, scoring)
    tokens = prepare(task, text, Vocab(tuple(card(name)["src_vocab"]))).tokens
    return cached("seq2seq", "runs")(name, tokens, 1, None)[0].text or "(empty output)"


SHOTS = ("seq2seq", "transformer", "bert", "captioning", "gpt", "llm")


def shot(page, folder: Path, name: str) -> None:
    """A tall viewport (Streamlit scrolls inside the page, so a full-page shot would be cut)."""
    page.set_viewport_size({"width": 1400, "height": 1900})
    settle(page)
    page.screenshot(path=str(folder / f"{name}.png"))
