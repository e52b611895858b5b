"""The Seq2seq alignment page, driven through AppTest: what the user sees is the model's output."""

import numpy as np
import pytest

from runners.seq2seq import run
from tasks import TASKS
from tests.helpers import array, chart, open_app, open_view
from views.serving import held_out_examples, load_model


@pytest.fixture
def at():
    return open_app()


def figure(app, key):
    return chart(app, key)


def model_run(task_name, scoring, src, **kw):
    model, _, sv, tv = load_model(f"seq2seq-{task_name}-{scoring}")
    return run(model, TASKS[task_name], src, sv, tv, **kw)


def shown_output(app):
    return app.code[0].value


def test_default_page_shows_the_models_own_output_and_weights(at):
    ex = held_out_examples("dates")[0]
    (run,) = model_run("dates", "additive", ex.src)
    assert shown_output(at) == run.text
    heat = figure(at, "s2s_heatmap")["data"][0]
    np.testing.assert_array_equal(array(heat["z"]).reshape(run.weights.shape), run.weights.astype(np.float32))
    assert not at.error and not at.warning


def test_controls_change_what_they_should(at):
    before = figure(at, "s2s_heatmap")["data"][0]["z"]
    at.selectbox(key="scoring").set_value("dot").run()
    assert not at.exception
    assert figure(at, "s2s_heatmap")["data"][0]["z"] != before  # another model's weights

    at.selectbox(key="example").set_value(5).run()
    ex = held_out_examples("dates")[5]
    assert shown_output(at) == model_run("dates", "dot", ex.src)[0].text

    at.radio(key="decoding").set_value("beam").run()
    hyps = at.radio(key="s2s_hyp")
    assert len(hyps.options) == 4
    at.slider(key="k").set_value(2).run()
    assert len(at.radio(key="s2s_hyp").options) == 2
    at.radio(key="s2s_hyp").set_value(1).run()
    beams = model_run("dates", "dot", ex.src, beam=2)
    assert shown_output(at) == (beams[1].text or "(empty output)")

    open_view(at, "Step inspector")
    bars_before = figure(at, "s2s_bars")["data"][1]["y"]
    at.select_slider(key="s2s_step").set_value(3).run()
    assert figure(at, "s2s_bars")["data"][1]["y"] != bars_before

    at.selectbox(key="task").set_value("translation").run()
    assert not at.exception
    ex = held_out_examples("translation")[0]
    chosen = at.radio(key="s2s_hyp").value  # the hypothesis picked earlier stays picked
    assert shown_output(at) == model_run("translation", "dot", ex.src, beam=2)[chosen].text


def test_own_text_reference_and_teacher_forcing(at):
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("The 3rd of March, 1999").run()
    (own,) = model_run("dates", "additive", TASKS["dates"].tokenize("the 3rd of march, 1999"))
    assert shown_output(at) == own.text
    open_view(at, "Teacher forcing")
    assert any("type a reference target" in m.value for m in at.info)  # nothing to force yet
    at.text_input(key="ref").set_value("1999-03-03").run()
    open_view(at, "Teacher forcing")
    losses = array(figure(at, "s2s_tf_loss")["data"][0]["y"])
    (tf,) = model_run(
        "dates", "additive", TASKS["dates"].tokenize("the 3rd of march, 1999"), reference=tuple("1999-03-03")
    )
    np.testing.assert_allclose(losses, -tf.token_log_probs, rtol=1e-6)


@pytest.mark.parametrize(
    "text, kind, needle",
    [
        ("", "info", "Type a source text"),
        ("   ", "info", "Type a source text"),
        ("1" * 100_000, "error", "at most 80 characters"),
        ("21 Nov 2026 ☃", "warning", "‘☃’"),
        ("<script>alert(1)</script> 2026", "warning", "\\<"),
    ],
)
def test_bad_input_gets_a_message_not_a_traceback(at, text, kind, needle):
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value(text).run()
    assert not at.exception
    messages = [m.value for m in getattr(at, kind)]
    assert any(needle in m for m in messages), messages


def test_translation_unknown_words_are_named(at):
    at.selectbox(key="task").set_value("translation").run()
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("we are eating the purple 사과").run()
    assert not at.exception
    (warning,) = at.warning
    assert "‘purple’" in warning.value and "‘사과’" in warning.value
