"""Real browser: the attention component (views/attention_component.py) on each family's page.

Looking costs no rerun: the map drawn at each layer and head is the model's own float32 map (the
runner's, or — where the page's input is long to reproduce here — what the server sent, which the
AppTest page tests hold equal to the runner's), hover shows its exact value, the arrow keys, a
click on a thumbnail and the head toggles redraw in the browser with the script never started, and
the URL keeps the view. A map not sent exact (a long prompt on SmolLM2) comes on request: one
fragment rerun.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from families.llm import runner as llama
from tests.browser_support import (
    BROWSER_TESTS,
    VIEW_JS,
    count_reruns,
    drawn_view,
    hover_cell,
    no_exception,
    seq2seq_run,
    settle,
    view_state,
)
from tests.helpers import open_app, open_view, sent_maps

pytestmark = BROWSER_TESTS


def wait_view(page, key: str, layer: int, head: int, exact: bool = True) -> dict:
    cond = f"v && v.dataset.layer === '{layer}' && v.dataset.head === '{head}'"
    cond += " && v.shown" if exact else ""
    page.wait_for_function(f"() => {{ const v = ({VIEW_JS})({key!r}); return {cond}; }}", timeout=60_000)
    return view_state(page, key)


def assert_drawn(state: dict, weights: np.ndarray) -> None:
    np.testing.assert_array_equal(np.array(state["shown"], np.float32), weights.ravel())


def assert_hover_is_exact(page, key: str, weights: np.ndarray) -> None:
    """The largest weight's cell (a cell that matters), hovered: its exact float32 value."""
    row, col = np.unravel_index(np.argmax(weights), weights.shape)
    text = hover_cell(page, key, int(row), int(col))
    assert f"{row} " in text and f" {col} " in text, text
    assert np.float32(text.rsplit("= ", 1)[1]) == weights[row, col], text


def look_around(page, key: str, maps: np.ndarray, start: tuple[int, int], moves: list[str]) -> tuple:
    """From ``start``, press each arrow key: every map drawn is ``maps``' own, and no rerun starts."""
    layer, head = start
    assert_drawn(wait_view(page, key, layer, head), maps[layer, head])
    assert_hover_is_exact(page, key, maps[layer, head])
    count_reruns(page)
    page.locator(f".st-key-{key} .ae").focus()
    for move in moves:
        page.keyboard.press(move)
        layer += {"ArrowDown": 1, "ArrowUp": -1}.get(move, 0)
        head += {"ArrowRight": 1, "ArrowLeft": -1}.get(move, 0)
        assert_drawn(wait_view(page, key, layer, head), maps[layer, head])
    assert page.evaluate("window.__reruns") == 0
    return layer, head


def test_transformer_model_view_looks_in_the_browser(server, page, tmp_path):
    url, _ = server
    at = open_view(open_app("families/transformer/page.py"), "Heads")
    maps = sent_maps(at, "tf_model")  # (L, h, T, T): the runner's (tests/test_app_transformer.py)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/transformer?tf_view=Heads")
    settle(page)
    no_exception(page)
    layer, head = look_around(page, "tf_model", maps, (0, 0), ["ArrowRight", "ArrowRight", "ArrowDown"])
    assert f"view_tf_model={layer}.{head}." in page.url  # the view is in the URL …
    grid = page.locator(".st-key-tf_model canvas.grid")  # … a click on a thumbnail zooms, still no rerun
    box, size = grid.bounding_box(), maps.shape[1]
    cell = (box["width"] - 34) / size
    grid.click(position={"x": 34 + cell * 0.5, "y": 18 + 4})  # layer 0, head 0
    assert_drawn(wait_view(page, "tf_model", 0, 0), maps[0, 0])
    assert page.evaluate("window.__reruns") == 0
    with page.expect_download() as download:  # PNG export of what is drawn
        page.locator(".st-key-tf_model button", has_text="PNG").click()
    saved = Path(tmp_path) / "view.png"
    download.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.goto(f"{url}/transformer?tf_view=Heads&view_tf_model=1.3.")  # a shared link opens on its view
    settle(page)
    assert_drawn(wait_view(page, "tf_model", 1, 3), maps[1, 3])
    page.goto(f"{url}/transformer?tf_view=Heads&view_tf_model=99.x.")  # junk: the default view, no error
    settle(page)
    no_exception(page)
    assert_drawn(wait_view(page, "tf_model", 0, 0), maps[0, 0])


def test_bert_head_view_toggles_heads_in_the_browser(server, page):
    url, _ = server
    at = open_view(open_app("families/bert/page.py"), "Head view")
    maps = sent_maps(at, "bert_heads")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/bert?bert_view=Head view")
    settle(page)
    no_exception(page)
    state = wait_view(page, "bert_heads", 0, 0)
    assert_drawn(state, maps[0, 0])
    count_reruns(page)
    chip = page.locator(".st-key-bert_heads .chip", has_text="H0").first
    chip.click()  # H0 off: drawn in the browser
    page.wait_for_function(f"!({VIEW_JS})('bert_heads').querySelector('.chip').classList.contains('on')")
    page.locator(".st-key-bert_heads select.pick-layer").select_option(label="L5")
    assert_drawn(wait_view(page, "bert_heads", 5, 0), maps[5, 0])
    assert page.evaluate("window.__reruns") == 0
    assert "view_bert_heads=5.0." in page.url


def test_seq2seq_alignment_hover_is_the_models_weight(server, page):
    url, _ = server
    text = "saturday, 21 november 2026"
    weights = seq2seq_run(text).weights
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/seq2seq?input=text&text={text}")
    settle(page)
    state = wait_view(page, "s2s_heatmap", 0, 0)
    assert_drawn(state, weights)
    assert_hover_is_exact(page, "s2s_heatmap", weights)


def test_llm_map_looks_in_the_browser_and_asks_for_what_was_not_sent(server, page, smollm2):
    """SmolLM2 with a 96-token prompt: 270 maps are 10 MB of float32, more than a run sends (the shown
    layer and its neighbours go exact, the rest as thumbnails). Heads and near layers: no rerun; a far
    layer: its thumbnail at once, then its exact map after one fragment rerun."""
    url, _ = server
    loaded = llama.loaded_from(*smollm2)
    text = "One two three four five six seven eight nine ten. " * 8
    prompt = llama.prepare(loaded, text)
    assert 64 < len(prompt.ids) <= llama.all_layers_up_to(loaded.model.cfg)
    weights = llama.run(loaded, prompt).maps["self"].weights  # (30, 9, T, T)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/llm?llm_view=Attention&llm_layer=L3&llm_head=H5&llm_prompt=" + text.replace(" ", "+"))
    settle(page)
    no_exception(page)
    look_around(page, "llm_map", weights, (3, 5), ["ArrowRight", "ArrowLeft", "ArrowLeft", "ArrowDown"])
    page.locator(".st-key-llm_map select.pick-layer").select_option(label="L25")
    wait_view(page, "llm_map", 25, 4, exact=False)  # its thumbnail drawn at once
    assert_drawn(drawn_view(page, "llm_map"), weights[25, 4])  # asked for, then sent
    assert page.evaluate("window.__reruns") == 1
    no_exception(page)
