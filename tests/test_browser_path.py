"""Real browser: a learner walks the whole path on the start page, as a learner does — from "/", step
by step with "Next step →" (one session): each step's view is drawn, its question is answered wrong
(the feedback shows the numbers) and then right ("Correct."), and the path marks it answered. The
first step's map is the model's own alignment; old "/?input=…" links reach the seq2seq page. The
path's screenshot (path.png, the README's) is taken on the first step, answered."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

from families import FAMILIES
from start import START
from tests.browser_support import BROWSER_TESTS, drawn_view, no_exception, output, seq2seq_shown, settle, shot
from tests.test_path import registered

pytestmark = BROWSER_TESTS

# A step's view is drawn: a Plotly chart painted, or an attention component that has drawn, inside an
# element whose key starts with the step's ("path_<id>_…").
VIEW_DRAWN = """id => [...document.querySelectorAll(`[class*="st-key-path_${id}_"]`)].some(el =>
    el.querySelector('.js-plotly-plot .main-svg') || el.querySelector('[data-testid=stBidiComponentIsolated]')
        ?.shadowRoot?.querySelector('.ae')?.dataset.drawn)"""
ALERT = "w => [...document.querySelectorAll('[data-testid=stAlert]')].some(a => a.innerText.includes(w))"


TO_TOP = "() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })"
IDLE = "() => document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"


def answer(page, quiz, given) -> None:
    """Give ``given`` in the step's answer widget, as a learner does, and press the check button."""
    page.wait_for_function(IDLE, timeout=120_000)
    page.get_by_role("button", name="Check my answer").wait_for(timeout=120_000)  # the question is drawn
    if not quiz.options:
        box = page.get_by_label("Your answer (a number)")
        box.fill(f"{given}")
        box.press("Enter")
        page.wait_for_timeout(300)
        settle(page, charts=0)
    elif page.locator('[data-testid=stSelectbox] input[aria-label="Your answer"]').count():
        box = page.locator('[data-testid=stSelectbox] input[aria-label="Your answer"]')
        box.click()
        box.fill(given)  # the list is filtered to it (270 heads are not all drawn at once)
        page.get_by_role("option", name=given, exact=True).click()
        settle(page, charts=0)
    else:
        radio = page.get_by_test_id("stRadio").filter(has_text="Your answer")
        radio.get_by_test_id("stRadioOption").filter(has_text=re.compile(f"^{re.escape(given)}$")).click()
        settle(page, charts=0)
    page.get_by_role("button", name="Check my answer").click()


def rendered(markdown: str) -> str:
    """What Markdown text reads as on the page: escapes dropped, white space folded."""
    return " ".join(re.sub(r"\\(.)", r"\1", markdown).split())


def test_a_learner_walks_the_whole_path(server, page, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(url + "/")
    steps = registered()
    for i, (family, step) in enumerate(steps):
        page.wait_for_function(VIEW_DRAWN, arg=step.id, timeout=180_000)
        settle(page, charts=1)
        no_exception(page)
        in_url = parse_qs(urlsplit(page.url).query).get("step")
        assert in_url == ([step.idea] if i else None), in_url  # the step is in the URL (not the default)
        quiz = step.quiz(step.measure(family, step.query))  # the app's served calls: the same numbers
        options = [o for o in quiz.options if o != quiz.answer]
        wrong = options[0] if quiz.options else float(quiz.answer) + 0.5
        answer(page, quiz, wrong)
        page.wait_for_function(ALERT, arg="Not quite.", timeout=60_000)
        shown = page.get_by_test_id("stAlert").filter(has_text="Not quite.").inner_text()
        assert " ".join(shown.split()) == f"Not quite. {rendered(quiz.feedback)}"  # with the model's numbers
        answer(page, quiz, f"{quiz.answer:.4f}" if not quiz.options else quiz.answer)
        page.wait_for_function(ALERT, arg="Correct.", timeout=60_000)
        settle(page, charts=1)
        no_exception(page)
        marks = page.get_by_test_id("stRadio").filter(has_text="The path").inner_text()
        assert f"Step {i + 1} of {len(steps)} · ✓ answered" in marks
        if i == 0:
            key = START.smoke.component  # the first step's map: the seq2seq model's own alignment
            drawn = np.array(drawn_view(page, key)["shown"], np.float32)
            want = step.measure(family, step.query).attention.weights
            np.testing.assert_array_equal(drawn, want.ravel())
            page.evaluate(TO_TOP)
            shot(page, shot_dir, "path")
            page.set_viewport_size({"width": 1400, "height": 1000})
        if i + 1 < len(steps):
            page.get_by_role("button", name="Next step →").click()
    metric = page.get_by_test_id("stMetricValue").first.inner_text()
    assert metric == f"{len(steps)} of {len(steps)}"
    assert (shot_dir / "path.png").is_file()


def test_an_old_link_to_the_first_page_opens_seq2seq(server, page):
    url, _ = server
    text = "the 4th of july, 1976"
    page.goto(f"{url}/?" + urlencode({"input": "text", "text": text}))
    page.wait_for_url(f"**/{FAMILIES['seq2seq'].url_path}?*", timeout=90_000)
    settle(page)
    no_exception(page)
    assert output(page) == seq2seq_shown(text)
