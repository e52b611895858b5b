"""The Seq2seq alignment page, driven through AppTest: what the user sees is the model's output."""

import numpy as np
import pytest

from families.seq2seq.runner import run
from tasks import TASKS
from tests.helpers import array, chart, open_app, open_view, sent, sent_maps, shipped, text_blocks
from views.inputs import md_escape
from views.serving import held_out_examples


@pytest.fixture
def at():
    return open_app("families/seq2seq/page.py")  # no longer "/": the start page is


def figure(app, key):
    return chart(app, key)


def model_run(task_name, scoring, src, **kw):
    model, _, sv, tv = shipped(f"seq2seq-{task_name}-{scoring}")
    return run(model, TASKS[task_name], src, sv, tv, **kw)


def shown_output(app):
    return text_blocks(app)[0]


def test_default_page_shows_the_models_own_output_and_weights(at):
    ex = held_out_examples("dates")[0]
    (run,) = model_run("dates", "additive", ex.src)
    assert shown_output(at) == run.text
    np.testing.assert_array_equal(sent_maps(at, "s2s_heatmap")[0, 0], run.weights.astype(np.float32))
    header, _, _ = sent(at, "s2s_heatmap")
    assert (header["queries"], header["keys"]) == (list(run.output), list(ex.src))
    assert not at.error and not at.warning


def test_controls_change_what_they_should(at):
    before = sent_maps(at, "s2s_heatmap")
    at.selectbox(key="scoring").set_value("dot").run()
    assert not at.exception
    after = sent_maps(at, "s2s_heatmap")
    assert after.shape != before.shape or (after != before).any()  # another model's weights

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


def test_ambiguous_date_offers_the_other_reading(at):
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("03/04/2021").run()
    (us,) = model_run("dates", "additive", TASKS["dates"].tokenize("03/04/2021"))
    assert shown_output(at) == us.text
    (button,) = [b for b in at.button if b.key == "other_reading"]
    assert "03.04.2021" in button.label
    button.click().run()
    assert at.text_input(key="text").value == "03.04.2021"
    (day_first,) = model_run("dates", "additive", TASKS["dates"].tokenize("03.04.2021"))
    assert shown_output(at) == day_first.text
    (back,) = [b for b in at.button if b.key == "other_reading"]
    assert "03/04/2021" in back.label  # and back again


@pytest.mark.parametrize("text, message", [("next friday", "relative date"), ("21st November", "no year")])
def test_dates_the_task_cannot_define_get_a_message_not_an_invented_date(at, text, message):
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value(text).run()
    assert not at.exception and not text_blocks(at)  # no output at all
    assert any(message in e.value for e in at.error)


def test_an_output_that_is_not_a_calendar_date_is_flagged_with_its_probability(at):
    at.radio(key="input").set_value("text").run()
    invalid = 0
    for text in ("15/03/2021", "2026.11.21", "31 february 2020", "99/99/99", "12 13 2020"):
        at.text_input(key="text").set_value(text).run()
        (own,) = model_run("dates", "additive", TASKS["dates"].tokenize(text))
        flagged = [w.value for w in at.warning if "probability" in w.value]
        if TASKS["dates"].output_problem(own.text) is None:
            assert not flagged, text
        else:
            assert flagged and f"{np.exp(own.log_prob):.1%}" in flagged[0], text
            invalid += 1
    assert invalid  # the nonsense among them ("99/99/99") did make the model write a non-date


def test_each_output_token_is_shown_with_the_models_probability(at):
    (own,) = model_run("dates", "additive", held_out_examples("dates")[0].src)
    (line,) = [c.value for c in at.caption if c.value.startswith("How sure")]
    probs = np.exp(own.token_log_probs.astype(np.float64))
    for tok, p in zip(own.output, probs, strict=True):
        cell = f"{md_escape(tok)}\u00a0{p:.0%}"
        assert (f"**{cell}**" if p < 0.5 else cell) in line
    assert f"{int((probs < 0.5).sum())} of {len(probs)}" in line
