"""Real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

As a new user would: open each page, change its main controls, upload an image, draw on the canvas;
check that Plotly charts really render (with the expected trace types), that no Streamlit exception
appears, and that the output changes as it should; expected outputs are computed here by the same
models. User text is never rendered as HTML. Screenshots of each page go to a fresh folder (docs/
with --update-screenshots), and the last test checks every page left one.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from analysis import lm
from families import FAMILIES, PAGES, address
from families.bert.runner import encode, folders
from families.captioner.runner import run as run_captioner
from families.gpt import runner as gpt
from families.llm import runner as llama
from tasks.images import load_upload, model_input
from tasks.scenes import generate
from tests.browser_support import (
    BROWSER_TESTS,
    SHOTS,
    VIEW_JS,
    drawn_view,
    no_exception,
    output,
    seq2seq_run,
    seq2seq_shown,
    settle,
    shot,
    type_prompt,
    view_state,
    wait_for_chart,
)
from tests.helpers import shipped
from views.outputs import TEXT_BLOCK
from views.serving import loaded_model

pytestmark = BROWSER_TESTS


def bert_token_count(text_a: str) -> int:
    """The BERT page's "Tokens" metric for a single sentence, with its default (first) checkpoint."""
    return len(encode(loaded_model(FAMILIES["bert"], next(iter(folders()))), text_a, None).tokens)


@pytest.mark.parametrize("family", PAGES.values(), ids=list(PAGES))
def test_every_page_opens_draws_and_is_photographed(server, page, shot_dir, family):
    """Each page's smoke steps (its declaration's ``smoke``: every family's and the start page's): open
    the page at its address with its query, wait for what it draws, no exception shown; the page's
    screenshot."""
    url, _ = server
    smoke = family.smoke
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(url + address(family) + (f"?{urlencode(smoke.query)}" if smoke.query else ""))
    settle(page, charts=smoke.charts)
    no_exception(page)
    if smoke.component is not None:
        assert drawn_view(page, smoke.component)["shown"]  # fails by timing out when it is never drawn
    if smoke.traces:
        wait_for_chart(page, *smoke.traces)
    shot(page, shot_dir, family.url_path)


def test_seq2seq_page(server, page):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    first_text = "saturday, 21 november 2026"
    first, second = seq2seq_shown(first_text), seq2seq_shown("the 4th of july, 1976")
    assert first != second  # else the wait below would not see the page change
    page.goto(f"{url}/seq2seq?input=text&text=" + "saturday, 21 november 2026")
    settle(page)
    no_exception(page)
    assert output(page) == first
    alignment = drawn_view(page, "s2s_heatmap")["shown"]  # the attention component, drawing the model's map
    np.testing.assert_array_equal(np.array(alignment, np.float32), seq2seq_run(first_text).weights.ravel())
    box = page.get_by_label("Source text (at most 80 characters)")
    box.fill("the 4th of july, 1976")
    box.press("Enter")
    page.wait_for_function(
        f"want => document.querySelector('pre.{TEXT_BLOCK}').innerText.trim() === want", arg=second
    )
    settle(page)
    no_exception(page)
    assert "text=the+4th" in page.url or "text=the%204th" in page.url  # the state is in the URL


def test_user_text_is_never_html(server, page):
    url, _ = server
    page.goto(f"{url}/seq2seq?input=text")
    settle(page)
    box = page.get_by_label("Source text (at most 80 characters)")
    box.fill('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> 2026')
    box.press("Enter")
    page.wait_for_timeout(1500)
    settle(page)
    no_exception(page)
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0
    assert "read as <unk>" in page.get_by_test_id("stAlert").first.inner_text()  # the tags were named as text


def test_transformer_page(server, page):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/transformer")
    settle(page, charts=2)
    no_exception(page)
    before = page.get_by_test_id("stMetricValue").nth(2).inner_text()
    page.get_by_text("Scale logits by 1/√d_k").click()
    page.wait_for_function(  # the metric may be briefly absent while the page reruns
        f"[...document.querySelectorAll('[data-testid=\"stMetricValue\"]')][2]?.innerText ?? {before!r}"
        f" !== {before!r}"
    )
    settle(page, charts=2)
    no_exception(page)
    wait_for_chart(page, "heatmap")  # times out (fails) if no heatmap is drawn


def test_bert_page(server, page):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    text = "The bank raised interest rates."
    page.goto(f"{url}/bert?" + urlencode({"a": text, "b": ""}))
    settle(page)
    no_exception(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == str(bert_token_count(text))
    lines = drawn_view(page, "bert_heads")  # the head view: the attention component's lines
    assert lines is not None and lines["shown"] is not None


def test_captioning_page_with_upload(server, page, tmp_path):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/captioning?source=upload")
    page.wait_for_selector("input[type=file]", state="attached", timeout=90_000)
    scene = generate(1, 77)[0]
    path = tmp_path / "scene.png"
    Image.fromarray(scene.image).resize((256, 256), Image.NEAREST).save(path)
    page.locator("input[type=file]").set_input_files(str(path))
    settle(page, charts=3)
    no_exception(page)
    assert output(page)
    wait_for_chart(page, "image", "heatmap")  # the per-word overlay: fails by timing out without it
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"hello")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("text=This is not an image", timeout=60_000)
    no_exception(page)


def test_drawing_on_the_canvas_is_captioned_by_the_model(server, page):
    """Draw with the mouse on the captioning page's canvas: when the pen lifts, the caption shown is
    the model's caption of exactly the pixels drawn (read back from the canvas); Undo empties it."""
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/captioning?source=draw")
    canvas = page.locator("canvas[aria-label='Drawing canvas']")
    canvas.wait_for(timeout=90_000)
    page.get_by_label("Pen colour red").click()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    for x, y in [(120, 60), (120, 120), (60, 120), (60, 60)]:  # a square outline, stroke by stroke
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()
    settle(page)
    no_exception(page)
    drawn = canvas.evaluate("c => c.toDataURL('image/png')")
    picture = load_upload(base64.b64decode(drawn.split(",", 1)[1]))
    model, _, _, v = shipped("captioner-scenes")
    _, x = model_input(picture)
    assert output(page) == run_captioner(model, v, x)[0].text
    page.get_by_role("button", name="Undo").click()
    page.wait_for_selector("text=Draw something on the canvas.", timeout=60_000)
    no_exception(page)


def test_gpt_page_types_a_prompt_and_draws_the_causal_map(server, page):
    """Type a prompt as a user does; the zoomed map is the new prompt's, with exactly zero weight on
    every future token (the causal mask), and its rows sum to 1."""
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/gpt?gpt_view=Attention")
    settle(page, charts=2)
    no_exception(page)
    text = "for key, value in items.items():\n    print(key, value)\n"
    loaded = gpt.load()
    n = len(gpt.prepare(loaded, text).ids)
    type_prompt(page, text, f"({VIEW_JS})('gpt_model')?.shown?.length === {n * n}")
    weights = np.array(view_state(page, "gpt_model")["shown"]).reshape(n, n)  # the zoomed map drawn
    for i, row in enumerate(weights):
        assert all(w == 0 for w in row[i + 1 :]), i  # the future: exactly zero
        assert abs(sum(row) - 1) < 1e-4, i


METRIC = """label => [...document.querySelectorAll('[data-testid=stMetric]')]
    .filter(m => m.innerText.startsWith(label))
    .map(m => m.querySelector('[data-testid=stMetricValue]').innerText.trim())[0] ?? null"""


def test_llm_page_types_a_prompt_and_draws_a_generated_tokens_attention(server, page, smollm2):
    """Type a prompt into the SmolLM2 page: its next token is the runner's. Generate four tokens
    (greedy): the text and the attention that chose each generated token, in the layer and head picked
    through the URL, are `families.llm.runner.generate`'s, every weight to float32 rounding."""
    url, _ = server
    loaded = llama.loaded_from(*smollm2)
    text, layer, head, new = "The capital of Japan is", 3, 5, 4
    prompt = llama.prepare(loaded, text)
    expected = llama.run(loaded, prompt, layers=()).top_tokens[-1][0]
    assert expected == "␣Tokyo"
    page.set_viewport_size({"width": 1400, "height": 1000})
    picked = {"llm_view": "Attention", "llm_layer": f"L{layer}", "llm_head": f"H{head}"}
    page.goto(f"{url}/llm?" + urlencode(picked))
    settle(page)  # the first load of the page loads the model in the server
    no_exception(page)
    assert page.evaluate(METRIC, "Next token") == "␣Paris"  # the default prompt's
    type_prompt(page, text, f"({METRIC})('Next token') === {expected!r}", charts=1)
    assert page.evaluate(METRIC, "Tokens read") == str(len(prompt.ids))
    assert "llm_prompt=The+capital+of+Japan+is" in page.url
    page.get_by_role("tab", name="Generate", exact=True).click()
    slider = page.locator('[data-testid=stSlider] input[type=range][aria-label="New tokens"]')
    slider.wait_for(state="attached", timeout=90_000)
    slider.focus()
    slider.press("Home")  # 1, then up to `new`: each press a rerun, settled below
    for _ in range(new - 1):
        slider.press("ArrowRight")
    page.wait_for_function(f"document.querySelector('input[aria-label=\"New tokens\"]').value === '{new}'")
    page.wait_for_timeout(1000)
    settle(page, charts=0)  # nothing drawn in this tab before a generation
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function(f"({VIEW_JS})('llm_gen_map')?.shown", timeout=120_000)
    settle(page)
    no_exception(page)
    steps = list(llama.generate(loaded, prompt, new_tokens=new, layers=None))
    assert output(page) == steps[-1].text.strip()
    want = lm.generated_attention([g.weights[:, :, -1] for g in steps], layer, head)  # (new, keys)
    assert want.shape[1] == len(prompt.ids) + new - 1
    drawn = np.array(view_state(page, "llm_gen_map")["shown"], np.float32).reshape(new, -1)
    np.testing.assert_allclose(drawn, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.array(drawn).sum(1), 1, atol=1e-4)  # each row: one softmax over its keys


def test_every_page_was_photographed_this_run(shot_dir):
    # Runs after the page tests: they wrote into this run's folder (a fresh one unless
    # --update-screenshots), so a page test that skipped its screenshot fails here.
    for name in SHOTS:
        with Image.open(shot_dir / f"{name}.png") as picture:
            assert picture.size == (1400, 1900), name
            darkest, lightest = picture.convert("L").getextrema()
            assert lightest - darkest > 100, f"{name}.png is blank"
