"""The start page (issue 37): the story places exactly the steps the registered families declare; each
step's view is drawn from its runner's own numbers and its question graded against them (a right
answer → "Correct" with the number, a wrong one → the feedback with the number); the step is in the
URL (junk opens the first); the answers are this session's; old "/?input=…" links reach seq2seq; each
step's link opens its page in the step's state.

The maps a view was sent are compared with runs computed here by the runners themselves on the app's
own cached models (`tests.helpers.shipped`), so the floats are the same computation: equal exactly."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis import circuits as C
from families import FAMILIES
from families.bert.runner import encode, folders, projections
from families.captioner import runner as captioner
from families.gpt import runner as gpt
from families.llm import runner as llama
from families.seq2seq import runner as seq2seq
from families.transformer import runner as transformer
from families.vit import measures as vit_measures
from families.vit import runner as vit
from families.vit.inputs import gallery_picture
from families.vit.preprocess import letterbox
from models.attention import Interventions
from models.checkpoints import CheckpointError
from start import START
from tasks import TASKS, prepare
from tasks.images import model_input
from tests.helpers import array, chart, open_app, sent, sent_maps, sent_rows, shipped, text_blocks
from views.serving import held_out_examples, loaded_model

PAGE = START.page
DATES, TRANSLATION = TASKS["dates"], TASKS["translation"]


def misplaced(story, declared: dict[str, set[str]]) -> list[str]:
    """What is wrong between the story and the steps the registered families declare (family → ids)."""
    placed = [(f, s) for f, s in story if f in declared]
    wrong = [f"{f}/{s}: in the story, not declared by {f}" for f, s in placed if s not in declared[f]]
    wrong += [f"{f}/{s}: declared, not in the story" for f in declared for s in declared[f]
              if (f, s) not in story]
    return wrong + [f"{f}/{s}: placed twice" for f, s in set(placed) if placed.count((f, s)) > 1]


def registered() -> list[tuple[object, object]]:
    """(family, step) of the story's steps whose family the app registers, in the story's order."""
    story = [(f, sid) for f, sid in START.story if f in FAMILIES]
    return [(FAMILIES[f], s) for f, sid in story for s in FAMILIES[f].steps if s.id == sid]


STEPS = [pytest.param(f, s, id=s.id) for f, s in registered()]


def test_the_story_places_exactly_the_declared_steps():
    """Every step a registered family declares is in the story once, and the story names no step a
    registered family lacks; a family the app does not register is skipped without error."""
    declared = {name: {s.id for s in f.steps} for name, f in FAMILIES.items()}
    assert misplaced(START.story, declared) == []
    assert len(STEPS) == sum(f in FAMILIES for f, _ in START.story)
    # The check above can fail: an undeclared step, an unplaced one, a step placed twice.
    assert misplaced((("a", "x"), ("a", "y")), {"a": {"x"}}) == ["a/y: in the story, not declared by a"]
    assert misplaced((("a", "x"),), {"a": {"x", "z"}}) == ["a/z: declared, not in the story"]
    assert misplaced((("a", "x"), ("a", "x")), {"a": {"x"}}) == ["a/x: placed twice"]
    assert misplaced((("b", "x"),), {"a": set()}) == []  # b not registered: skipped


IDEAS = (  # the story, in its order, by the step that tells each idea
    "bottleneck", "alignment", "scaling", "self-attention", "masks", "multi-head", "positions", "block",
    "cross-attention", "induction", "sinks", "name-movers", "hide-regions", "patches",
)  # fmt: skip


def test_the_path_tells_every_idea_in_order():
    assert tuple(s for _, s in START.story) == IDEAS
    assert ("vit", "patches") in START.story  # attention over images: the vision transformer's to declare


@pytest.fixture(scope="module", autouse=True)
def llm(app_llm):
    """The app's SmolLM2 is the session's (`tests.conftest.app_llm`)."""
    return app_llm


# --- What each step's view was sent, recomputed by the runners ------------------------------------
def s2s(name: str, src: tuple[str, ...]):
    model, card, src_vocab, tgt_vocab = shipped(name)
    return seq2seq.run(model, TASKS[card["task"]], src, src_vocab, tgt_vocab)[0]


PLAIN = Interventions()


def tf(variant: str, text: str, iv=PLAIN, reference=None):
    model, _, src_vocab, tgt_vocab = shipped(f"transformer-dates-{variant}")
    src = prepare(DATES, text, src_vocab).tokens
    return transformer.run(model, DATES, src, src_vocab, tgt_vocab, iv, reference=reference)


def example(task, text: str):
    (found,) = [e for e in held_out_examples(task.name) if task.joiner.join(e.src) == text]
    return found


def exact(at, key: str) -> np.ndarray:
    """The one map a single-map view was sent, at the layer and head it opened on."""
    header, maps, _ = sent(at, key)
    return maps[header["state"]["layer"], header["state"]["head"]]


def interleaved(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([w for pair in zip(a, b, strict=True) for w in pair])


def drawn_bottleneck(at, step):
    src = example(TRANSLATION, step.query["example"]).src
    run = s2s("seq2seq-translation-additive", src)
    np.testing.assert_array_equal(exact(at, "path_bottleneck_map"), run.weights)
    assert s2s("seq2seq-translation-none", src).text in text_blocks(at)[0]


def drawn_alignment(at, step):
    _, _, src_vocab, _ = shipped("seq2seq-dates-additive")
    run = s2s("seq2seq-dates-additive", prepare(DATES, step.query["text"], src_vocab).tokens)
    np.testing.assert_array_equal(exact(at, "path_alignment_map"), run.weights)


def drawn_scaling(at, step):
    on, off = (tf("h4", step.query["text"], Interventions(scaled=s)) for s in (True, False))
    want = interleaved(on.maps["encoder"].weights, off.maps["encoder"].weights)
    np.testing.assert_array_equal(sent_maps(at, "path_scaling_model"), want)


def drawn_self_attention(at, step):
    loaded = loaded_model(FAMILIES["bert"], next(iter(folders())))
    layer = projections(loaded, encode(loaded, step.query["a"]))[0]
    want = np.stack([layer.raw, layer.raw_scaled, layer.learned[0]])[:, None]
    np.testing.assert_array_equal(sent_maps(at, "path_self-attention_model"), want)


def drawn_masks(at, step):
    reference = DATES.tokenize(step.query["ref"])
    run = tf("h4", step.query["text"], Interventions(causal=False), reference)
    np.testing.assert_array_equal(sent_maps(at, "path_masks_model"), run.maps["decoder_self"].weights)
    assert np.triu(run.maps["decoder_self"].weights, 1).max() > 0  # the future is read: the mask is off


def drawn_heads(at, step):
    run = tf(step.query["model"], step.query["text"])
    np.testing.assert_array_equal(sent_maps(at, "path_multi-head_model"), run.maps["encoder"].weights)


def drawn_positions(at, step):
    header, maps, _ = sent(at, "path_positions_map")
    run = tf("h4", step.query["text"], Interventions(positional=False))
    layer, head = header["state"]["layer"], header["state"]["head"]
    np.testing.assert_array_equal(maps[layer, head], run.maps["encoder"].weights[layer, head])


def drawn_block(at, step):
    figure = chart(at, "path_block_stream")
    for trace, variant in zip(figure["data"], ("h4", "h4-post"), strict=True):
        layers = tf(variant, step.query["text"]).layers["encoder"]
        rows = [layers[0].self_attention.x_in]
        rows += [x for layer in layers for x in (layer.self_attention.x_out, layer.feed_forward.x_out)]
        want = [np.linalg.norm(x, axis=-1).mean() for x in rows]
        np.testing.assert_allclose(array(trace["y"]), want, rtol=1e-6)  # the figure's floats, from float32


def drawn_cross(at, step):
    header, maps, _ = sent(at, "path_cross-attention_map")
    weights = tf("h4", step.query["text"]).maps["cross"].weights
    layer, head = header["state"]["layer"], header["state"]["head"]
    assert layer == len(weights) - 1
    np.testing.assert_array_equal(maps[layer, head], weights[layer, head])


def drawn_induction(at, step):
    loaded = loaded_model(FAMILIES["gpt"], gpt.DEFAULT)
    prompt = gpt.random_repeat(gpt.REPEAT, int(step.query["gpt_seed"]), loaded.model.cfg.vocab)
    want = gpt.run(loaded, prompt).maps["self"].weights
    np.testing.assert_array_equal(sent_maps(at, "path_induction_model"), want)


def drawn_sinks(at, step, model):
    run = llama.run(model, llama.prepare(model, step.query["llm_prompt"]))
    np.testing.assert_array_equal(sent_maps(at, "path_sinks_model"), run.maps["self"].weights)


def drawn_movers(at, step, model):
    ids = llama.prepare(model, step.query["llm_prompt"]).ids
    pair = C.Pair(model.vocabulary.word(" Mary"), model.vocabulary.word(" John"))
    direct = C.direct_attribution(model.model, C.forward(model.model, ids, pair), pair)
    grid = array(chart(at, "path_name-movers_grid")["data"][0]["z"])
    np.testing.assert_array_equal(grid, direct.heads)  # the same forward and sums, on the same model


def drawn_regions(at, step):
    model, _, _, vocabulary = shipped(captioner.DEFAULT)
    (path,) = [p for p in captioner.SAMPLES if p.stem == step.query["sample"]]
    _, x = model_input(Image.open(path).convert("RGB"))
    run = captioner.run(model, vocabulary, x)[0]
    figure = chart(at, "path_hide-regions_overlay")
    word = figure["layout"]["sliders"][0]["active"]
    drawn = array(figure["data"][1]["z"]).reshape(run.alphas[word].shape)
    np.testing.assert_array_equal(drawn, run.alphas[word])
    assert run.output[word] == "circle"


def drawn_patches(at, step):
    seen = letterbox(gallery_picture(step.query["vit_photo"]), vit.SIDE)[0]
    run = vit.run(loaded_model(FAMILIES["vit"], vit.NAME).model, seen)
    last = run.n_layers - 1
    header, exact, _ = sent(at, "path_patches_overlay")
    assert set(exact) == {(0, h) for h in range(run.weights.shape[1])}  # the last layer, every head exact
    for (_, head), w in exact.items():
        np.testing.assert_array_equal(w, run.weights[last, head])
    np.testing.assert_array_equal(sent_rows(at, "path_patches_overlay")[0][0], run.weights[last, :, 0])
    masks = vit_measures.dino_mask(vit_measures.cls_to_patches(run.weights[last]))  # (h, N)
    outline = {head: keys for _, head, keys in header["image"]["outline"]["cells"]}
    assert outline == {h: [1 + int(i) for i in np.flatnonzero(m)] for h, m in enumerate(masks)}


DRAWN = {
    "bottleneck": drawn_bottleneck, "alignment": drawn_alignment, "scaling": drawn_scaling,
    "self-attention": drawn_self_attention, "masks": drawn_masks, "multi-head": drawn_heads,
    "positions": drawn_positions, "block": drawn_block, "cross-attention": drawn_cross,
    "induction": drawn_induction, "sinks": drawn_sinks, "name-movers": drawn_movers,
    "hide-regions": drawn_regions, "patches": drawn_patches,
}  # fmt: skip
NEEDS_LLM = {"sinks", "name-movers"}


def test_every_step_of_the_story_has_its_drawing_checked_here():
    """A family that brings a step brings its check here (what its view must be sent) too."""
    assert set(DRAWN) == set(STEPS_IDS)


def answer_widget(at, step_id: str):
    key = f"path_{step_id}_answer"
    found = [w for kind in ("radio", "selectbox", "number_input") for w in at.get(kind) if w.key == key]
    assert len(found) == 1, key
    return found[0]


def wrong_answer(quiz):
    return next(o for o in quiz.options if o != quiz.answer) if quiz.options else float(quiz.answer) + 0.5


NUMBER = re.compile(r"\d\.\d\d")  # a measured number the feedback quotes (two decimals or more)


def quotes_the_numbers(quiz) -> bool:
    """The feedback shows the numbers: a number asked is quoted as the view shows it (to 2, 3 or 4
    decimals, or whole), a choice is backed by a measured number."""
    if quiz.options:
        return bool(NUMBER.search(quiz.feedback))
    shown = {f"{quiz.answer:.{n}f}" for n in (2, 3, 4)} | {f"{quiz.answer:g}"}
    return any(re.search(rf"(?<![\d.]){re.escape(x)}(?![\d])", quiz.feedback) for x in shown)
STEPS_IDS = [s.id for _, s in registered()]


@pytest.mark.slow  # a page load and two answers per step; the LLM's steps run the 135M model
@pytest.mark.parametrize("family, step", STEPS)
def test_each_step_draws_the_models_numbers_and_grades_against_them(family, step, llm):
    at = open_app(PAGE, step=step.idea)
    assert at.session_state["step"] == step.id
    DRAWN[step.id](at, step, llm) if step.id in NEEDS_LLM else DRAWN[step.id](at, step)
    quiz = step.quiz(step.measure(family, step.query))  # the key: tests/test_path_keys.py recomputes each
    assert quotes_the_numbers(quiz), quiz.feedback
    widget = answer_widget(at, step.id)
    widget.set_value(wrong_answer(quiz)).run()
    at.button(key=f"path_{step.id}_check").click().run()
    assert not at.exception and not at.success
    assert [e.value for e in at.error] == [f"**Not quite.** {quiz.feedback}"]
    assert at.session_state["path_answers"] == {step.id: False}
    answer_widget(at, step.id).set_value(quiz.answer).run()
    at.button(key=f"path_{step.id}_check").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [f"**Correct.** {quiz.feedback}"]
    assert at.session_state["path_answers"] == {step.id: True}
    assert at.radio(key="step").proto.captions[STEPS_IDS.index(step.id)].endswith("✓ answered")


def test_the_first_step_shows_a_live_attention_map_where_the_app_opens():
    at = open_app()  # "/": the start page
    assert at.session_state["step"] == STEPS_IDS[0]
    header, maps, _ = sent(at, START.smoke.component)
    assert maps and header["rows"] > 1 and header["cols"] > 1


def test_junk_in_the_url_opens_the_first_step():
    for junk in ("", "9999", "<script>", "Masks ", "masks"):  # "masks" is an id, not the URL's idea label
        at = open_app(PAGE, step=junk)
        assert at.session_state["step"] == STEPS_IDS[0], junk
        assert not at.exception and at.metric


def test_a_shared_step_opens_on_that_step_and_answers_are_per_session():
    step = FAMILIES["transformer"].steps[2]  # multi-head: a number is asked
    at = open_app(PAGE, step=step.idea)
    quiz = step.quiz(step.measure(FAMILIES["transformer"], step.query))
    answer_widget(at, step.id).set_value(quiz.answer).run()
    at.button(key=f"path_{step.id}_check").click().run()
    assert at.session_state["path_answers"] == {step.id: True}
    assert at.metric[0].value == f"1 of {len(STEPS_IDS)}"
    other = open_app(PAGE, step=step.idea)  # another visitor, same link: nothing answered there
    assert "path_answers" not in other.session_state or other.session_state["path_answers"] == {}
    assert other.metric[0].value == f"0 of {len(STEPS_IDS)}" and not other.success


def test_an_old_link_to_the_first_page_opens_seq2seq_with_its_parameters():
    """Before the start page, "/" was the seq2seq page: "/?input=text&text=…" still opens it, there."""
    at = open_app(None, input="text", text="11/17/2026")
    assert at.title[0].value == "Seq2seq alignment"
    assert text_blocks(at)[0] == s2s("seq2seq-dates-additive", tuple("11/17/2026")).text
    assert open_app(None, step="Masks").session_state["step"] == "masks"  # the start page's own: stays


@pytest.mark.slow  # every family page once, in the step's state
@pytest.mark.parametrize("family, step", STEPS)
def test_each_steps_link_opens_its_page_in_that_state(family, step):
    at = open_app(family.page, **step.query)
    assert at.session_state[family.tab_key] == step.query[family.tab_key]
    for param, value in step.query.items():
        held = at.session_state[param]
        assert held == value or not isinstance(held, str), (param, held, value)
    ran = text_blocks(at) or at.metric or at.get("plotly_chart")
    assert not at.error and ran, step.id  # it ran, no message


def test_a_step_whose_model_is_missing_says_so_and_the_path_goes_on(monkeypatch):
    """A model that is not installed (a wheel missing) is a message naming the file and the fix, no
    traceback, and the path and the other steps still work."""
    family = FAMILIES["seq2seq"]
    first, *rest = family.steps

    def missing(family, query):
        fix = "python -m training --family seq2seq --task translation --variant none"
        raise CheckpointError(Path("/srv/assets/seq2seq-translation-none.safetensors"), "no such file", fix)

    monkeypatch.setitem(FAMILIES, "seq2seq", replace(family, steps=(replace(first, measure=missing), *rest)))
    at = open_app(PAGE)
    assert not at.exception
    (error,) = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # as it reads: Markdown escapes dropped
    assert "seq2seq-translation-none.safetensors: no such file. To fix: python -m training" in error
    assert "/srv" not in error  # no server path reaches the visitor
    assert at.radio(key="step").value == first.id and at.button(key="path_next")
