"""Real browser, a user's model: on a server offering tiny checkpoints (tests/browser_server.py's
``lm_server``), pick a model with the page's picker as a visitor does; the URL names it, its next token is
the runner's and the attention component draws its exact maps — float32 for float32 — head after head."""

from __future__ import annotations

import numpy as np

from families.llm import runner
from tests import lm_offered
from tests.browser_support import BROWSER_TESTS, VIEW_JS, drawn_view, no_exception, settle, view_state

pytestmark = BROWSER_TESTS

METRIC = """label => [...document.querySelectorAll('[data-testid=stMetric]')]
    .filter(m => m.innerText.startsWith(label))
    .map(m => m.querySelector('[data-testid=stMetricValue]').innerText.trim())[0] ?? null"""


def test_a_picked_user_model_draws_its_own_exact_maps(lm_server, page):
    url, _, folder = lm_server
    with lm_offered.offered(folder):  # this process lists and opens the same checkpoints
        loaded = runner.open_lm("tiny-qwen2")
        run = runner.run(loaded, runner.prepare(loaded, runner.EXAMPLE))
    weights = run.maps["self"].weights  # (L, h, T, T)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/llm?llm_view=Attention")
    settle(page)  # the default, tiny-llama (ATTENTION_EXPLORER_LM)
    no_exception(page)
    picker = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Model", exact=True))
    picker.click()
    page.get_by_role("option", name="tiny-qwen2", exact=True).click()
    page.wait_for_function(f"({METRIC})('Next token') === {run.top_tokens[-1][0]!r}", timeout=90_000)
    settle(page)
    no_exception(page)
    assert "llm_checkpoint=tiny-qwen2" in page.url  # the pick is in the URL: a shared link opens it
    state = drawn_view(page, "llm_map")
    assert (state["layer"], state["head"]) == (0, 0)
    np.testing.assert_array_equal(np.array(state["shown"], np.float32), weights[0, 0].ravel())
    page.locator(".st-key-llm_map .ae").focus()  # the component takes the keys: another head, no rerun
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"({VIEW_JS})('llm_map')?.dataset.head === '1' && ({VIEW_JS})('llm_map').shown")
    shown = np.array(view_state(page, "llm_map")["shown"], np.float32)
    np.testing.assert_array_equal(shown, weights[0, 1].ravel())
