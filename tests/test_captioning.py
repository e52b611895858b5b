"""Scenes, the captioner's traces, the pointing game, and the Captioning page with every source."""

import csv
import io
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from families import load
from families.captioner.runner import DEFAULT, SAMPLES, familiarity, map_similarity, pooled_features, weighed
from families.captioner.runner import run as run_captioner
from models.attention import Interventions
from models.captioner import Captioner, CaptionerConfig, doubly_stochastic, pointing_loss
from models.checkpoints import load_card
from tasks.batching import batch_scenes, region_targets
from tasks.common import BOS, split_of
from tasks.hand import hand_outline, handwriting, ideal_outline, scanned_digit
from tasks.images import load_upload, model_input, to_tensor
from tasks.scenes import (
    COLOURS,
    DIGIT_SOURCES,
    PEN_WIDTHS,
    SHAPES,
    SIZE,
    SUPER,
    compose,
    generate,
    outline_points,
    vocab,
)
from tests.helpers import open_app, open_view, shipped, text_blocks
from training.evaluate import STRICT_SHARE, pointing_hits


def test_scene_captions_match_objects_and_masks():
    scenes = generate(200, 5)
    assert generate(20, 5)[0].caption == scenes[0].caption  # seeded
    for s in scenes:
        named = [o for o in s.word_objects if o >= 0]
        assert sorted(named) == list(range(len(s.masks)))  # every object named exactly once
        assert all(s.masks[o].sum() > 10 for o in named)
        for t, o in enumerate(s.word_objects):
            if o >= 0 and s.caption[0] == "the":
                assert s.caption[t].isdigit()
    left = compose([("circle", "red", "big", 14, 30), ("square", "blue", "small", 50, 34)])
    assert " ".join(left.caption) == "a big red circle left of a small blue square"
    above = compose([("triangle", "green", "small", 40, 50), ("circle", "yellow", "big", 36, 14)])
    assert " ".join(above.caption) == "a big yellow circle above a small green triangle"
    red = left.image[left.masks[0]].mean(0)
    assert np.abs(red - COLOURS["red"]).max() < 30  # the mask covers the drawn object


def test_scenes_include_what_people_draw():
    scenes = generate(600, 11)
    digit_scenes = [s for s in scenes if s.caption[0] == "the"]
    for source, share in DIGIT_SOURCES:  # MNIST and scikit-learn handwriting beside pen strokes
        drawn = [s for s in digit_scenes if s.key.startswith(f"[('{source}'")]
        assert abs(len(drawn) / len(digit_scenes) - share) < 0.12, (source, len(drawn) / len(digit_scenes))
    corners = np.array([s.image[:3, :3].reshape(-1, 3).mean(0) for s in scenes])  # the background
    spread = corners.max(1) - corners.min(1)
    grey = (spread < 12) & (corners.mean(1) < 200)
    tinted = spread > 25
    assert grey.mean() > 0.1 and tinted.mean() > 0.1, (grey.mean(), tinted.mean())
    # Letterboxed pictures: bands of one colour (the content's median border) on two opposite sides.
    boxed = [s for s in scenes if " in (" in s.key]
    assert 0.2 < len(boxed) / len(scenes) < 0.4
    for s in boxed[:20]:
        rows, cols = (s.image == s.image[0, 0]).all(-1).all(1), (s.image == s.image[0, 0]).all(-1).all(0)
        assert rows[[0, -1]].all() or cols[[0, -1]].all()
    # Shapes from small to most of the picture; a pen 1–6% of its side.
    radii = [float(r) for s in scenes if s.caption[0] == "a" for r in re.findall(r"'\), ([\d.]+),", s.key)]
    assert min(radii) < 5 and max(radii) > 20, (min(radii), max(radii))
    assert PEN_WIDTHS[0] / SIZE < 0.012 and PEN_WIDTHS[1] / SIZE > 0.05
    # A triangle at any angle: turned by π it points down (its apex below its centre).
    rng = random.Random(0)
    up, down = (outline_points("triangle", 32, 32, 10, rng, 0.0, angle=a) for a in (0.0, np.pi))
    apex_up, apex_down = up[0][1] / SUPER, down[0][1] / SUPER
    assert apex_up == pytest.approx(22) and apex_down == pytest.approx(42)


def test_hand_drawn_outlines_stop_short_or_overshoot_and_bend():
    rng = random.Random(3)
    lengths = []
    for _ in range(40):
        path, ring = hand_outline("square", 32, 32, 12, 0.3, rng, wobble=1.0)
        lengths.append(len(path) / len(ring))
        assert np.allclose(path[0], ring[ring.index(path[0])])  # the pen starts on the outline
    assert min(lengths) < 0.97 and max(lengths) > 1.05  # unclosed strokes and overshoots both happen
    ideal = ideal_outline("circle", 32, 32, 12, 0.0, random.Random(0))
    radius = np.hypot(*(np.array(ideal) - 32).T)
    assert 12 * 0.85 < radius.min() and radius.max() < 12 * 1.15  # a little oval, still a circle


def test_scanned_digits_keep_their_aspect_and_thicken():
    (_, _), (mnist, labels) = handwriting()
    assert mnist.shape == (5000, 28, 28) and set(labels.tolist()) == set(range(10))
    one = mnist[int(np.flatnonzero(labels == 1)[0])]
    glyph = scanned_digit(one, 30, SUPER, random.Random(1))  # random.Random(1): no broader pen

    def aspect(ink: np.ndarray) -> float:
        rows, cols = np.nonzero(ink > 0.3)
        return (np.ptp(rows) + 1) / (np.ptp(cols) + 1)

    # A '1' stays narrow: fitted into the box, not stretched (within the resampling's ±2 pixels).
    assert aspect(one) > 1.2 and aspect(glyph) == pytest.approx(aspect(one), rel=0.15)
    inks = [scanned_digit(one, 30, SUPER, random.Random(seed)).sum() for seed in range(12)]
    assert max(inks) > 1.3 * min(inks)  # some drawn with a broader pen


def test_region_targets_and_the_pointing_loss():
    scene = compose([("square", "red", "big", 20, 20), ("circle", "blue", "small", 48, 44)])
    targets = region_targets([scene], len(scene.caption) + 1)[0]  # (T, 64)
    named = [t for t, o in enumerate(scene.word_objects) if o >= 0]
    assert torch.allclose(targets[named].sum(-1), torch.ones(len(named)))
    assert targets.sum(-1)[[t for t in range(len(targets)) if t not in named]].eq(0).all()
    square = targets[scene.caption.index("square")].view(8, 8)
    assert square[2, 2] > 0 and square[7, 7] == 0  # on the square, not in the far corner
    alphas = torch.full((1, *targets.shape), 1 / 64)
    exact = torch.where(targets.sum(-1, keepdim=True) > 0, targets, alphas[0])[None]
    assert pointing_loss(exact, targets[None]) < pointing_loss(alphas, targets[None])


def test_splits_are_disjoint():
    train = {s.key for s in generate(300, 1, "train")}
    test = {s.key for s in generate(100, 2, "test")}
    assert not train & test and all(split_of(k) == "test" for k in test)


def test_trace_reproduces_the_decoder_and_attention_rows_sum_to_one():
    torch.manual_seed(0)
    v = vocab()
    model = Captioner(CaptionerConfig(vocab=len(v), channels=16, hidden=32, emb_dim=8, attn_dim=8)).eval()
    scenes = generate(4, 3)
    images, tgt_in, tgt_out = batch_scenes(scenes, v, torch.device("cpu"))
    with torch.inference_mode():
        logits, trace = model(images, tgt_in)
        ids, greedy = model.greedy(images, max_len=6)
        _, replay = model(images, torch.cat([tgt_in[:, :1], ids[:, :-1]], 1))
    torch.testing.assert_close(trace.alphas.sum(-1), torch.ones(trace.alphas.shape[:2]))
    torch.testing.assert_close(greedy.alphas, replay.alphas)  # free running = teacher forcing on itself
    torch.testing.assert_close(greedy.logits.argmax(-1), ids)
    assert trace.self_attention.heads.weights.shape == (4, 1, 64, 64)
    assert doubly_stochastic(trace.alphas, tgt_out) > 0
    runs = run_captioner(model, v, images[:1], beam=3)
    assert len(runs) == 3 and all(r.alphas.shape[1:] == (8, 8) for r in runs)


def test_pointing_game_on_known_scenes():
    scene = compose([("circle", "red", "big", 14, 30), ("square", "blue", "small", 50, 34)])
    alphas = np.zeros((len(scene.caption), 64))
    t_circle, t_square = scene.caption.index("circle"), scene.caption.index("square")
    alphas[t_circle, 3 * 8 + 1] = 1.0  # row 3, col 1: pixels 24-31 × 8-15, inside the circle
    alphas[t_square, 0] = 1.0  # top-left corner: not the square
    assert pointing_hits(alphas, scene) == [True, False]
    # A cell that only grazes the circle's edge: a hit by the lenient rule, a miss by the strict one.
    mask = scene.masks[scene.word_objects[t_circle]]
    shares = [mask[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8].mean() for r in range(8) for c in range(8)]
    edge = next(i for i, share in enumerate(shares) if 0 < share < STRICT_SHARE)
    alphas[t_circle] = 0
    alphas[t_circle, edge] = 1.0
    assert pointing_hits(alphas, scene) == [True, False]
    assert pointing_hits(alphas, scene, min_share=STRICT_SHARE) == [False, False]
    same = np.ones((4, 8, 8))
    assert map_similarity(same) == pytest.approx(1.0) and map_similarity(np.eye(4).reshape(4, 2, 2)) == 0.0


DATA = Path(__file__).parent / "data"
# Two drawings sets, both kept out of training. drawings: 40 freehand drawings made with the mouse on
# the page's own canvas (make_drawings.py: a scripted hand along wobbly paths and letterforms that are
# not the generator's; 256×256, a round pen 2–4 px of 64). drawings2: 40 drawn by Pillow straight into
# files (make_drawings2.py: hand-placed corner paths, other letterforms, marker, brush and pencil pens
# 1–5% of the side, pictures 64–2,048 px, square, landscape and portrait; large triangles pointing
# down and sideways, three shapes in a row, thick-stroke digits).
DRAWING_SETS = ("drawings", "drawings2")
# Pictures with every object named, at least: the shipped model's 40/40 on both (issue 24 asks 90% of
# each; the model trained on half the scenes named 35 of drawings2). A retrain that names fewer fails here.
NAMED_BARS = {"drawings": 40, "drawings2": 40}


def named_objects(words) -> list:
    """What a caption names: its (colour, shape) pairs in order, or its digits in order."""
    words = [w for w in words if w != "</s>"]
    if words[:1] == ["the"]:
        return [w for w in words if w.isdigit()]
    return [(words[i - 1], w) for i, w in enumerate(words) if w in ("circle", "square", "triangle")]


def drawings_named(name: str) -> tuple[int, int, list[str]]:
    """(pictures with every object named, pictures, the misses as 'file: true → caption') on one set,
    each picture through the upload path (load_upload, then the letterboxed model input)."""
    model, _, _, v = load("captioner-scenes")
    rows = list(csv.DictReader((DATA / f"{name}.csv").open()))
    misses = []
    for row in rows:
        _, x = model_input(load_upload((DATA / name / row["file"]).read_bytes()))
        (out,) = run_captioner(model, v, x)
        if named_objects(out.output) != named_objects(row["caption"].split()):
            misses.append(f"{row['file']}: {row['caption']} → {out.text}")
    return len(rows) - len(misses), len(rows), misses


def test_both_drawings_sets_are_named(capsys):
    """Both sets reported side by side (printed with -s, and in the failure message)."""
    results = {name: drawings_named(name) for name in DRAWING_SETS}
    report = "; ".join(f"{name}: {ok}/{n} named, misses {miss}" for name, (ok, n, miss) in results.items())
    with capsys.disabled():
        print("\n" + report)
    assert [n for _, n, _ in results.values()] == [40, 40]
    assert all(ok >= NAMED_BARS[name] for name, (ok, _, _) in results.items()), report


def test_weighed_words_are_the_models_own_softmax():
    """What the page shows at each object word is the model's softmax at that step: the same numbers
    as the run's own log-probabilities, and as a teacher-forced forward on the caption."""
    model, _, _, v = load("captioner-scenes")
    scene = generate(1, 31)[0]
    x = to_tensor(scene.image[None])
    for beam in (1, 3):
        for run in run_captioner(model, v, x, beam=beam):
            ids = torch.tensor([v.encode(run.output)])
            chosen = run.word_probs[np.arange(len(ids[0])), ids[0].numpy()]
            np.testing.assert_allclose(np.log(chosen), run.token_log_probs, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(run.word_probs.sum(1), 1, rtol=1e-5)
            with torch.inference_mode():
                tgt_in = torch.cat([torch.tensor([v.encode([BOS])]), ids[:, :-1]], 1)
                logits, _ = model(x, tgt_in)
            # Teacher forcing on the run's own words repeats the decoder's steps with the same weights;
            # the tolerance covers float32 sums done in another order (batched vs per-step).
            forced = torch.softmax(logits[0], -1).numpy()
            np.testing.assert_allclose(run.word_probs, forced, atol=1e-5)
            for w in weighed(run):
                assert [word for word, _ in w.rivals][0] == max(w.rivals, key=lambda wp: wp[1])[0]
                for word, p in w.rivals:
                    assert p == run.word_probs[w.step, v.index[word]]
                kind = SHAPES if w.word in SHAPES else tuple(map(str, range(10)))
                assert {word for word, _ in w.rivals} == set(kind) and w.word == run.output[w.step]
                assert w.doubt == max(p for word, p in w.rivals if word != w.word)


def test_the_page_shows_what_the_model_weighed(at):
    model, _, _, v = load("captioner-scenes")
    _, image = model_input(Image.open(SAMPLES[0]).convert("RGB"))  # the page's default picture
    (run,) = run_captioner(model, v, image)
    (shown,) = [e for e in at.expander if e.label.startswith("What the model weighed")]
    text = shown.markdown[0].value
    for w in weighed(run):
        for word, p in w.rivals:
            assert f"{word}\u00a0{p:.0%}" in text
    assert not at.exception


@pytest.fixture
def at():
    return open_app("families/captioner/page.py")


def test_every_image_source(at):
    gallery = text_blocks(at)[0]
    at.select_slider(key="sample").set_value(2).run()
    assert not at.exception and text_blocks(at)[0]
    at.radio(key="source").set_value("random").run()
    first = text_blocks(at)[0]
    at.button(key="cap_new").click().run()
    assert at.number_input(key="seed").value == 1 and not at.exception
    at.radio(key="source").set_value("compose").run()
    at.slider(key="cap_n").set_value(3).run()
    assert not at.exception
    shown = {c.proto.id.split("-")[-1] for c in at.get("plotly_chart")}
    assert {"cap_overlay", "cap_grid", "cap_beta"} <= shown, shown  # the open view's charts, all drawn
    at.slider(key="cap_beam").set_value(3).run()
    assert len(at.radio(key="cap_hyp").options) == 3
    assert gallery and first


def test_upload_caption_is_the_models_own(at):
    from tasks.images import load_upload, model_input
    
    scene = generate(1, 123)[0]

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(scene.image).save(buf, "PNG")
    at.radio(key="source").set_value("upload").run()
    at.file_uploader(key="cap_upload").set_value(("scene.png", buf.getvalue(), "image/png")).run()
    model, _, _, v = shipped("captioner-scenes")
    _, x = model_input(load_upload(buf.getvalue()))
    assert text_blocks(at)[0] == run_captioner(model, v, x)[0].text
    assert to_tensor(scene.image[None]).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("beam", [1, 3])
def test_hidden_regions_get_exactly_zero_attention(beam):
    model, _, _, v = load("captioner-scenes")
    image = to_tensor(generate(1, 11)[0].image[None])  # (1, 3, 64, 64)
    hidden = (0, 9, 18, 27, 36, 45, 54, 63)  # the diagonal
    for r in run_captioner(model, v, image, Interventions(hidden_keys=hidden), beam=beam):
        alphas = r.alphas.reshape(len(r.alphas), -1)  # (T, R)
        assert (alphas[:, list(hidden)] == 0).all()
        np.testing.assert_allclose(alphas.sum(1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one region"):
        run_captioner(model, v, image, Interventions(hidden_keys=tuple(range(64))))
    with pytest.raises(ValueError, match="only hidden_keys"):
        run_captioner(model, v, image, Interventions(temperature=2.0))


def test_hide_regions_view_recaptions_without_them(at):
    open_view(at, "Hide regions")
    assert at.info and not at.exception  # nothing hidden yet
    at.button(key="cap_hide_top").click().run()
    model, _, _, v = load("captioner-scenes")
    _, image = model_input(Image.open(SAMPLES[0]).convert("RGB"))  # the page's default picture
    (before,) = run_captioner(model, v, image)
    hidden = at.multiselect(key="cap_hidden").value
    top = np.argsort(-before.coverage.ravel(), kind="stable")[:8]  # where the caption looked most
    assert sorted(hidden) == sorted(int(r) for r in top)
    (after,) = run_captioner(model, v, image, Interventions(hidden_keys=tuple(sorted(hidden))))
    assert text_blocks(at)[-1] == (after.text or "(empty caption)")
    assert text_blocks(at)[-2] == (before.text or "(empty caption)")


def test_familiarity_tells_training_like_scenes_from_off_domain_pictures():
    model, *_ = load("captioner-scenes")
    fit = familiarity(model)
    rng = np.random.default_rng(0)
    fresh = np.stack([s.image for s in generate(200, 4242, "test")])  # scenes the fit never saw
    off_domain = {
        "noise": rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8),
        "inverted scenes": 255 - fresh[:40],
        # Steep grey gradients (black-to-white spans of 153–255 levels). Gentler ones are not here:
        # the training backgrounds include plain greys (110–230), and a faint gradient is one of them
        # to this encoder (a blank page is too — the score measures the look, not the objects). The
        # shipped encoder's distance falls with the span, and crosses its threshold near 147 levels
        # (the model trained on half the scenes crossed it below 135).
        "steep grey gradients": np.stack(
            [
                np.broadcast_to(np.linspace(i, 255 - i, 64, dtype=np.uint8)[None, :, None], (64, 64, 3))
                for i in range(0, 52, 3)
            ]
        ),
    }
    inside = fit.distances(pooled_features(model, to_tensor(fresh))) <= fit.threshold
    assert inside.mean() >= 0.95, inside.mean()
    for name, images in off_domain.items():
        outside = fit.distances(pooled_features(model, to_tensor(images))) > fit.threshold
        assert outside.mean() >= 0.9, (name, outside.mean())


def test_upload_unlike_the_training_scenes_gets_a_warning(at):

    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    at.radio(key="source").set_value("upload").run()
    at.file_uploader(key="cap_upload").set_value(("noise.png", buf.getvalue(), "image/png")).run()
    model, *_ = load("captioner-scenes")
    distance = familiarity(model).distances(pooled_features(model, to_tensor(noise[None])))[0]
    (warning,) = [w.value for w in at.warning if "unlike the scenes" in w.value]
    assert f"distance {distance:.1f}" in warning


def test_coverage_names_the_regularisation_it_was_trained_with(at):
    open_view(at, "Coverage and CNN self-attention")
    card = load_card(DEFAULT)
    (caption,) = [c.value for c in at.caption if "doubly stochastic" in c.value]
    assert f"λ = {card['doubly_stochastic_lambda']:g}" in caption
    assert f"weight {card['attention_supervision']['weight']:g}" in caption
