"""The language-model page on the shipped SmolLM2: what it shows is the runner's own numbers (next token,
maps, the interventions' table, greedy generation), bad input gets a message, and a missing or corrupt GGUF
an error with the fix.

The app caches the model once per process; here it is handed the session's `smollm2`, so the module
holds one copy of the 135M model."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import models.llama
from analysis import lm
from families.llm import runner as llama
from models.attention import Interventions
from tests.helpers import forget_app_llm, open_app, sent, sent_maps, text_blocks
from views.inputs import md_escape

PAGE = "families/llm/page.py"


@pytest.fixture(scope="module")
def loaded(app_llm):
    return app_llm


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def view(at: AppTest, label: str) -> AppTest:
    at.session_state["llm_view"] = label  # one of the page's lazy tabs: only the open one runs
    return ok(at.run())


def metric(at: AppTest, label: str):
    (m,) = [m for m in at.metric if m.label.startswith(label)]
    return m


def test_the_page_shows_the_models_own_next_token_and_loss(loaded):
    at = open_app(PAGE)
    run = llama.run(loaded, llama.prepare(loaded, llama.EXAMPLE))
    assert metric(at, "Next token").value == run.top_tokens[-1][0] == "␣Paris"
    assert metric(at, "Next token").proto.delta == f"p = {run.top_probs[-1, 0]:.1%}"
    assert metric(at, "Loss").value == f"{run.loss:.3f}"
    assert metric(at, "Tokens read").value == str(len(run.ids))
    assert any("Q4_1" in c.value for c in at.caption)  # says which weights it runs
    assert at.selectbox(key="llm_checkpoint").value == "SmolLM2-135M-Instruct"  # the default of the picker
    top = ok(at).dataframe[0].value  # Next tokens: the top-k per position
    assert list(top["#1"])[-1] == f"{run.top_tokens[-1][0]}  {run.top_probs[-1, 0]:.1%}"


def test_the_picked_layer_and_head_is_the_map_drawn(loaded):
    at = view(open_app(PAGE), "Attention")
    at.selectbox(key="llm_layer").set_value(3)
    ok(at.selectbox(key="llm_head").set_value(5).run())
    run = llama.run(loaded, llama.prepare(loaded, llama.EXAMPLE))
    header, exact, _ = sent(at, "llm_map")
    assert header["state"] == {"layer": 3, "head": 5, "query": None}  # the view starts on the page's pick
    np.testing.assert_array_equal(exact[3, 5], run.maps["self"].weights[3, 5])  # sent exact: the model's own
    assert header["exact"][0][:2] == [3, 5]  # and first
    assert any("key/value head **1**" in m.value for m in at.markdown)  # H5 reads K/V head 5 // 3
    assert len(run.kv_heads) == 9 and run.kv_heads[5] == 1


def test_a_long_prompt_keeps_only_the_picked_layer(loaded):
    text = "The quick brown fox jumps over the lazy dog. " * 15  # > 128 tokens
    prompt = llama.prepare(loaded, text)
    assert len(prompt.ids) > llama.all_layers_up_to(loaded.model.cfg) == 128
    at = open_app(PAGE)
    at.text_area(key="llm_prompt").set_value(text)
    at.selectbox(key="llm_layer").set_value(7)
    at.selectbox(key="llm_head").set_value(2)
    view(at, "Attention")
    run = llama.run(loaded, prompt, layers=(7,))
    header, exact, _ = sent(at, "llm_map")
    assert header["layer_names"] == ["L7"] and header["views"] == ["map"]  # no head view past 128 tokens
    np.testing.assert_array_equal(exact[0, 2], run.maps["self"].weights[0, 2])
    ok(view(at, "Model view"))
    assert any("drawn up to 128 tokens" in i.value for i in at.info)


def test_each_interventions_row_is_compare_of_the_two_runs(loaded):
    at = open_app(PAGE)
    at.sidebar.checkbox(key="llm_rope").uncheck()
    at.sidebar.multiselect(key="llm_ablate").select((18, 6))
    ok(at.run())
    prompt = llama.prepare(loaded, llama.EXAMPLE)
    base = llama.run(loaded, prompt, layers=())
    ivs = {
        "heads off": Interventions(ablate=frozenset({(models.llama.BLOCK, 18, 6)})),
        "RoPE off": Interventions(positional=False),
        "all together": Interventions(ablate=frozenset({(models.llama.BLOCK, 18, 6)}), positional=False),
    }
    table = at.dataframe[0].value
    assert list(table["intervention"]) == list(ivs)
    for (_, row), iv in zip(table.iterrows(), ivs.values(), strict=True):
        change = lm.compare(llama.run(loaded, prompt, iv, layers=()), base)
        assert row["Δ loss (nats)"] == pytest.approx(change.loss, abs=1e-6)
        kl = row["KL after the prompt, next-token distribution"]
        assert kl == pytest.approx(change.kl_after_prompt, abs=1e-6)
        assert row["positions whose top guess changed"] == change.top1_changed
    assert table["next token after the prompt"].iloc[1].startswith("␣Paris 66% → ")
    assert metric(at, "Loss").proto.delta.endswith("vs no intervention")


def test_chat_mode_reads_the_files_template(loaded):
    at = open_app(PAGE)
    at.radio(key="llm_mode").set_value("chat")
    ok(at.text_area(key="llm_prompt").set_value("What is the capital of France?").run())
    (shown,) = text_blocks(at)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in shown
    assert "<|im_start|>assistant" in shown
    prompt = llama.prepare(loaded, "What is the capital of France?", chat=True)
    assert metric(at, "Tokens read").value == str(len(prompt.ids))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "Type a prompt — for example"),
        (" \t\n  \r\n ", "Type a prompt — for example"),
        ("The \x00Eiffel\x07 Tower\x1b is in", "control character(s) removed"),
        ("Paris is the capital of France. " * 3200, "the first 2,048 tokens were read"),  # 102,400 characters
        ("🎉🍕 The party is 😀👍🏽", None),
        ("토요일에 우리는 서울에 갔다 — السبت ٢١", None),
    ],
    ids=["empty", "whitespace", "control", "100k", "emoji", "scripts"],
)
def test_bad_input_gets_a_message_never_a_traceback(loaded, text, message):
    at = open_app(PAGE)
    ok(at.text_area(key="llm_prompt").set_value(text).run())
    shown = [m.value for m in [*at.info, *at.warning]]
    if message is None:
        assert metric(at, "Next token") and not shown
    else:
        assert any(message in m for m in shown), shown
    if len(text) > lm.MAX_CHARS:
        assert any("more were not; 82,400 characters past the first 20,000" in m for m in shown), shown


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_missing_or_corrupt_gguf_gets_the_error_with_the_fix(loaded, tmp_path, monkeypatch, problem):
    path = tmp_path / models.llama.FILE
    if problem == "corrupt":
        path.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setattr(models.llama, "gguf_path", lambda: path)
    monkeypatch.setattr(llama, "load_all", lambda: llama.loaded_from(*models.llama.load()))
    forget_app_llm()
    try:
        at = ok(open_app(PAGE))
    finally:
        forget_app_llm()  # nothing cached: the next test loads the fixture's
    (error,) = at.error
    name = md_escape("SmolLM2-135M-Instruct")
    assert error.value.startswith(f"Cannot load {name}: {md_escape(models.llama.FILE)}: ")
    assert "To fix: reinstall it" in error.value and str(tmp_path) not in error.value
    assert not at.metric


def generate(at: AppTest, new: int) -> AppTest:
    view(at, "Generate")
    at.slider(key="llm_new").set_value(new)
    return ok(at.button(key="llm_go").click().run())


def test_greedy_generation_is_the_runners_and_survives_a_rerun(loaded, monkeypatch):
    at = generate(open_app(PAGE), 8)
    prompt = llama.prepare(loaded, llama.EXAMPLE)
    expected = list(llama.generate(loaded, prompt, new_tokens=8, layers=None))
    assert text_blocks(at)[0] == expected[-1].text
    assert [t[0] for t in at.session_state["llm_generated"]["tokens"]] == [g.id for g in expected]
    rows = [g.weights[:, :, -1] for g in expected]
    np.testing.assert_array_equal(sent_maps(at, "llm_gen_map")[0, 0], lm.generated_attention(rows, 18, 6))
    monkeypatch.setattr(llama, "generate", lambda *a, **k: pytest.fail("regenerated"))
    ok(at.selectbox(key="llm_head").set_value(0).run())  # another head: the same tokens, its rows
    np.testing.assert_array_equal(sent_maps(at, "llm_gen_map")[0, 0], lm.generated_attention(rows, 18, 0))


def test_stop_keeps_the_tokens_generated_so_far(loaded, monkeypatch):
    """A click on Stop reruns the page, which ends the running generation at its next token (Streamlit
    raises in the script there): played here by a rerun after three tokens."""
    real = llama.generate

    def three_then_rerun(*args, **kw):
        for i, g in enumerate(real(*args, **kw)):
            if i == 3:
                st.rerun()
            yield g

    monkeypatch.setattr(llama, "generate", three_then_rerun)
    at = generate(open_app(PAGE), 8)
    assert any(w.value == "Stopped after 3 of 8 tokens." for w in at.warning)
    assert len(at.session_state["llm_generated"]["tokens"]) == 3
    prompt = llama.prepare(loaded, llama.EXAMPLE)
    text = list(real(loaded, prompt, new_tokens=3))[-1].text
    assert at.session_state["llm_generated"]["text"] == text and text_blocks(at)[0] == text
