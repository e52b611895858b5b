"""What the browser tests do with a page: wait for the app to settle, read back its charts and
output, take a screenshot, and compute the output a page should show with the same models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from families import FAMILIES, PAGES
from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from tasks import TASKS, prepare
from tasks.common import Vocab
from tests.browser_server import CHROMIUM
from views.outputs import TEXT_BLOCK
from views.serving import cached, card

# Every browser test file's pytestmark.
BROWSER_TESTS = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium not installed (apt-get install -y chromium); CI installs it",
    ),
    pytest.mark.slow,  # a server and a browser: about 100 s
]


# The attention components' roots (views/attention_component.py), inside their shadow roots.
VIEWS_JS = """() => [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
    .map(h => h.shadowRoot && h.shadowRoot.querySelector('.ae')).filter(Boolean)"""
# One attention component's root, by the key its page gave it.
VIEW_JS = """key => document.querySelector(`.st-key-${key} [data-testid=stBidiComponentIsolated]`)
    ?.shadowRoot?.querySelector('.ae') ?? null"""


def settle(page, charts: int = 1, timeout: float = 90_000) -> None:
    """Wait until the app has stopped running and at least ``charts`` charts are drawn: Plotly
    charts and attention components."""
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length"
        f" + ({VIEWS_JS})().filter(v => v.dataset.drawn).length >= {charts}",
        timeout=timeout,
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(500)


def wait_for_chart(page, *types: str, timeout: float = 60_000) -> None:
    """Wait until one Plotly chart on the page holds traces of every one of ``types``. Plotly draws
    each chart after Streamlit has finished the run, so a chart counted by `settle` may still be
    empty on a slow machine: ask for what the test needs, not for what happens to be drawn first."""
    page.wait_for_function(
        "types => [...document.querySelectorAll('.js-plotly-plot')]"
        ".some(p => types.every(t => (p.data || []).some(trace => trace.type === t)))",
        arg=list(types),
        timeout=timeout,
    )


def output(page) -> str:
    return page.locator(f"pre.{TEXT_BLOCK}").first.inner_text().strip()


def no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def type_prompt(page, text: str, ready: str, charts: int = 2) -> None:
    """Type ``text`` into the page's "Prompt" box as a user does (Ctrl+Enter applies it), wait for the
    JavaScript condition ``ready`` and ``charts`` drawn charts, and check no exception is shown."""
    box = page.get_by_label("Prompt", exact=True)
    box.fill(text)
    box.press("Control+Enter")
    page.wait_for_function(ready, timeout=90_000)
    settle(page, charts=charts)
    no_exception(page)


def seq2seq_run(text: str, scoring: str = SCORINGS[0]):
    """The Seq2seq page's run for typed ``text``, computed here as the page computes it: its default
    task (the first) and decoding (greedy), the same checkpoint, tokens and cached run."""
    task = next(iter(TASKS.values()))
    name = checkpoint_name("seq2seq", task.name, scoring)
    tokens = prepare(task, text, Vocab(tuple(card(name)["src_vocab"]))).tokens
    return cached(FAMILIES["seq2seq"], "runs")(name, tokens, 1, None)[0]


def seq2seq_shown(text: str, scoring: str = SCORINGS[0]) -> str:
    """What the Seq2seq page prints for typed ``text``."""
    return seq2seq_run(text, scoring).text or "(empty output)"


SHOTS = tuple(p.url_path for p in PAGES.values())  # each page's screenshot, by its address


def shot(page, folder: Path, name: str) -> None:
    """A tall viewport (Streamlit scrolls inside the page, so a full-page shot would be cut)."""
    page.set_viewport_size({"width": 1400, "height": 1900})
    settle(page)
    page.screenshot(path=str(folder / f"{name}.png"))


def view_state(page, key: str) -> dict:
    """The attention component's view (layer, head, query) and the exact map it draws (None while
    the map shown is a thumbnail's preview)."""
    return page.evaluate(
        f"""key => {{ const v = ({VIEW_JS})(key); return v && {{layer: +v.dataset.layer,
        head: +v.dataset.head, query: v.dataset.query, shown: v.shown ? Array.from(v.shown) : null}}; }}""",
        key,
    )


def drawn_view(page, key: str, timeout: float = 60_000) -> dict:
    """`view_state` once the component ``key`` has drawn its exact map (not a thumbnail's preview)."""
    page.wait_for_function(f"({VIEW_JS})({key!r})?.shown", timeout=timeout)
    return view_state(page, key)


def hover_cell(page, key: str, row: int, col: int) -> str:
    """Move the mouse over the map's cell (row, col) and return what the component says of it."""
    box = page.locator(f".st-key-{key} canvas.map")
    box.scroll_into_view_if_needed()
    geometry = box.evaluate("c => ({...c.dataset})")
    cell, rect = float(geometry["cell"]), box.bounding_box()
    x = rect["x"] + float(geometry["left"]) + (col - float(geometry["x0"]) + 0.5) * cell
    y = rect["y"] + float(geometry["top"]) + (row - float(geometry["y0"]) + 0.5) * cell
    page.mouse.move(x, y)
    return page.locator(f".st-key-{key} .readout").inner_text()


def count_reruns(page) -> None:
    """From now on, count the app's reruns in ``window.__reruns`` (the script state going to running)."""
    page.evaluate(
        """() => { window.__reruns = 0; const app = document.querySelector('[data-testid=stApp]');
        new MutationObserver(() => { if (app.dataset.testScriptState === 'running') window.__reruns++; })
            .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']}); }"""
    )