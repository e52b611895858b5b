"""The Transformer lab page through AppTest: every toggle reruns and changes what it should."""

from dataclasses import replace

import numpy as np
import pytest

from families.transformer.lesson_runs import random_attention
from families.transformer.runner import run
from models.attention import Interventions
from tasks import TASKS
from tests.helpers import open_app, open_view, sent_maps, shipped, text_blocks
from views.serving import held_out_examples

NAME = "transformer-dates-h4"
PLAIN = Interventions()


@pytest.fixture
def at():
    return open_app("families/transformer/page.py")


def model_run(iv=PLAIN, **kw):
    model, _, sv, tv = shipped(NAME)
    return run(model, TASKS["dates"], held_out_examples("dates")[0].src, sv, tv, iv, **kw)


def focus_weights(app):
    open_view(app, "Heads")
    return sent_maps(app, "tf_model")[0, 0]  # layer 0, head 0


def metric(app, label):
    (m,) = [m for m in app.metric if m.label.startswith(label)]
    return m


def test_page_shows_the_models_output_and_passes_its_own_checks(at):
    assert text_blocks(at)[0] == model_run().text
    at.session_state["tf_wt_step_pre"] = "Σ w·v, heads, W_O"
    at.run()
    assert any(s.value.startswith("Check: concat @ W_Oᵀ") for s in at.success)
    weights = focus_weights(at).reshape(model_run().blocks["encoder"][0].weights[0].shape)
    np.testing.assert_array_equal(weights, model_run().blocks["encoder"][0].weights[0].astype(np.float32))


def test_scaling_and_temperature_change_the_attention(at):
    before = float(metric(at, "Mean encoder attention entropy").value)
    at.sidebar.slider(key="tf_temp").set_value(4.0).run()
    hot = float(metric(at, "Mean encoder attention entropy").value)
    assert hot > before
    at.sidebar.slider(key="tf_temp").set_value(1.0).run()
    at.sidebar.checkbox(key="tf_scaled").uncheck().run()
    expected = model_run(replace(PLAIN, scaled=False)).blocks["encoder"][0].weights[0]
    np.testing.assert_allclose(focus_weights(at).reshape(expected.shape), expected, atol=1e-6)
    assert text_blocks(at)[0] == model_run(replace(PLAIN, scaled=False)).text


def test_padding_hidden_keys_and_ablation(at):
    at.sidebar.checkbox(key="tf_padded").check().run()
    n = len(held_out_examples("dates")[0].src)
    assert (focus_weights(at)[:, n:] == 0).all()
    at.sidebar.checkbox(key="tf_padding").uncheck().run()
    assert (focus_weights(at)[:, n:] > 0).all()
    at.sidebar.checkbox(key="tf_padded").uncheck().run()
    at.sidebar.checkbox(key="tf_padding").check().run()
    at.sidebar.multiselect[0].set_value([0, 2]).run()
    assert (focus_weights(at)[:, [0, 2]] == 0).all()
    at.sidebar.multiselect[0].set_value([]).run()
    at.sidebar.multiselect(key="tf_ablate_h4").set_value([("cross", 1, 0), ("cross", 1, 1)]).run()
    iv = replace(PLAIN, ablate=frozenset({("cross", 1, 0), ("cross", 1, 1)}))
    assert text_blocks(at)[0] == model_run(iv).text
    assert metric(at, "Exact match, ").delta is not None  # compared with the unablated model


def test_causal_toggle_acts_on_teacher_forcing(at):
    ex = held_out_examples("dates")[0]
    at.sidebar.checkbox(key="tf_causal").uncheck().run()
    forced = model_run(replace(PLAIN, causal=False), reference=ex.tgt)
    assert text_blocks(at)[1] == " ".join(forced.predictions)
    open_view(at, "Heads")
    at.radio(key="tf_heads_block").set_value("decoder_self").run()
    w = focus_weights(at)
    assert (w[np.triu_indices_from(w, 1)] > 0).any()
    at.sidebar.checkbox(key="tf_causal").check().run()
    w = focus_weights(at)
    assert (w[np.triu_indices_from(w, 1)] == 0).all()


def test_positional_encoding_and_variant_switch(at):
    open_view(at, "Positional encoding")
    assert f"without PE: {model_run(replace(PLAIN, positional=False)).text}" in text_blocks(at)[-1]
    at.sidebar.checkbox(key="tf_pe").uncheck().run()
    assert text_blocks(at)[0] == model_run(replace(PLAIN, positional=False)).text
    open_view(at, "Heads")
    panels = sent_maps(at, "tf_model")  # layers × heads
    expected = np.stack([b.weights for b in model_run(replace(PLAIN, positional=False)).blocks["encoder"]])
    np.testing.assert_allclose(panels, expected, atol=1e-6)
    at.selectbox(key="model").set_value("h4-post").run()
    assert not at.exception


def test_playground_refuses_invalid_dimensions(at):
    open_view(at, "Playground")
    at.number_input(key="tf_pg_d").set_value(6).run()
    at.number_input(key="tf_pg_h").set_value(4).run()
    assert any("must be divisible" in e.value for e in at.error)
    at.number_input(key="tf_pg_h").set_value(3).run()
    assert not at.error
    panels = sent_maps(at, "tf_pg_grid_model")  # one map per head
    assert panels.shape[:2] == (1, 3)
    np.testing.assert_allclose(panels.sum(-1), 1.0, atol=1e-5)  # softmax rows
    np.testing.assert_array_equal(panels, random_attention(6, 3, 3))  # the runner's maps, as computed


def test_head_ranking_and_bad_input(at):
    open_view(at, "Ablation")
    at.toggle(key="tf_rank").set_value(True).run()
    assert not at.exception
    (ranking,) = at.dataframe
    assert len(ranking.value) == 3 * 2 * 4  # every head of every block and layer, ablated alone
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("").run()
    assert any("Type a source text" in i.value for i in at.info)
    at.text_input(key="text").set_value("x" * 1000).run()
    assert any("at most 80 characters" in e.value for e in at.error)


def test_typed_dates_are_checked_in_and_out(at):
    """Input the task cannot define gets a message; an output that is no calendar date is flagged
    with the model's probability for it, a valid one is not."""
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("next friday").run()
    assert not text_blocks(at) and any("relative date" in e.value for e in at.error)
    model, _, sv, tv = shipped(NAME)
    for text in ("99/99/99", "25/12/2020"):
        at.text_input(key="text").set_value(text).run()
        own = run(model, TASKS["dates"], TASKS["dates"].tokenize(text), sv, tv, PLAIN)
        assert text_blocks(at)[0] == own.text
        flagged = [w.value for w in at.warning if "probability" in w.value]
        if TASKS["dates"].output_problem(own.text) is None:
            assert not flagged, text
        else:
            assert flagged and f"{np.exp(own.log_prob):.1%}" in flagged[0], text
