"""Real browser: the ViT page's image overlay (the attention component's "image" view).

A visitor uploads a photo: the overlay draws [CLS]'s row of the model's own float32 numbers; a click on a
patch draws that patch's row with no rerun (the shown layer went whole), hover says the exact weight; a
layer whose rows were not sent asks for the clicked patch's rows (one fragment rerun), and [CLS]'s rows of
every layer need none. The expected numbers are the runner's, on the picture the page's path makes.
"""

from __future__ import annotations

import numpy as np
import pytest

from families.vit import runner
from families.vit.inputs import gallery_picture
from families.vit.preprocess import letterbox
from tasks.images import MAX_PIXELS, load_upload
from tests.browser_support import BROWSER_TESTS, VIEW_JS, count_reruns, no_exception, view_state
from tests.test_vit_page import _save

pytestmark = BROWSER_TESTS
KEY = "vit_overlay"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A JPEG of scikit-learn's china.jpg on disk, and the maps (L, h, T, T) the page's run computes on it."""
    data = _save(gallery_picture("china"), "JPEG")
    path = tmp_path_factory.mktemp("vit") / "china.jpg"
    path.write_bytes(data)
    seen = letterbox(load_upload(data, max_side=MAX_PIXELS))[0]
    return str(path), runner.run(runner.load().model, seen).weights


def wait_drawn(page, layer: int, head: int, query: int) -> dict:
    cond = (f"v && v.shown && v.dataset.layer === '{layer}' && v.dataset.head === '{head}'"
            f" && v.dataset.query === '{query}'")  # fmt: skip
    page.wait_for_function(f"() => {{ const v = ({VIEW_JS})({KEY!r}); return {cond}; }}", timeout=60_000)
    return view_state(page, KEY)


def patch_xy(page, row: int, col: int) -> tuple[float, float]:
    canvas = page.locator(f".st-key-{KEY} canvas.photo")
    canvas.scroll_into_view_if_needed()
    box, cell = canvas.bounding_box(), float(canvas.evaluate("c => c.dataset.cell"))
    return box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell


def assert_row(state: dict, weights: np.ndarray, layer: int, head: int, query: int) -> None:
    np.testing.assert_array_equal(np.array(state["shown"], np.float32), weights[layer, head, query])


def test_an_uploaded_photo_draws_its_rows_and_a_clicked_patch_costs_no_rerun(server, page, photo):
    path, weights = photo
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(f"{url}/vit?vit_source=upload")
    page.locator("input[type=file]").set_input_files(path)
    assert_row(wait_drawn(page, 0, 0, 0), weights, 0, 0, 0)  # [CLS]'s row, the model's own numbers
    no_exception(page)
    count_reruns(page)
    page.mouse.click(*patch_xy(page, 5, 7))  # patch (5, 7): token 1 + 5 · 16 + 7
    query = 1 + 5 * 16 + 7
    assert_row(wait_drawn(page, 0, 0, query), weights, 0, 0, query)
    page.mouse.move(*patch_xy(page, 2, 3))
    said = page.locator(f".st-key-{KEY} .readout").inner_text()
    assert np.float32(said.rsplit("= ", 1)[1]) == weights[0, 0, query, 1 + 2 * 16 + 3], said
    page.locator(f".st-key-{KEY} .ae").focus()
    page.keyboard.press("ArrowRight")  # another head of the shown layer: sent whole
    assert_row(wait_drawn(page, 0, 1, query), weights, 0, 1, query)
    assert page.evaluate("window.__reruns") == 0
    page.keyboard.press("ArrowDown")  # layer 1: the patch's rows were not sent, so they are asked for
    assert_row(wait_drawn(page, 1, 1, query), weights, 1, 1, query)
    assert page.evaluate("window.__reruns") == 1
    page.locator(f".st-key-{KEY} button", has_text="rows of").click()  # back to [CLS], every layer sent
    page.keyboard.press("ArrowDown")
    assert_row(wait_drawn(page, 2, 1, 0), weights, 2, 1, 0)
    assert page.evaluate("window.__reruns") == 1
    assert f"view_{KEY}=2.1.0" in page.url
    no_exception(page)
