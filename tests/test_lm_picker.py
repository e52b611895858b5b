"""The language-model page's model picker: what the catalog offers by name, what it refuses with its reason,
junk in the URL's name ignored, a model that vanished, broke or grew too big since it was listed answered by
a message while the other models keep working, and at most two user models held at once (the shipped one
pinned apart).

Models are tiny random checkpoints written here (tests/lm_checkpoints.py), offered through
``ATTENTION_EXPLORER_LM_DIR``; the default model is one of them (``ATTENTION_EXPLORER_LM``), so no test here
loads SmolLM2."""

from __future__ import annotations

import gc
import shutil
import weakref

import numpy as np
import pytest

from families import FAMILIES
from families.llm import runner
from families.llm.shipped import SMOLLM2
from tests import lm_offered
from tests.helpers import open_app, open_view, sent_maps
from views.inputs import md_escape
from views.serving import loaded_model

pytest.importorskip("transformers")

PAGE = "families/llm/page.py"
ARCHS = ("llama", "qwen2", "gpt2")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """tiny-llama, tiny-qwen2, tiny-gpt2, and three entries the catalog refuses: another architecture, a
    checkpoint without its tokenizer, a GGUF that is not one."""
    models = lm_offered.write_models(tmp_path_factory.mktemp("lm-picker") / "models", ARCHS)
    shutil.copytree(models / "tiny-qwen2", models / "bert")
    (models / "bert" / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    shutil.copytree(models / "tiny-qwen2", models / "no-tokenizer")
    (models / "no-tokenizer" / "tokenizer.json").unlink()
    (models / "junk.gguf").write_bytes(b"GGUF" + bytes(100))
    return models


@pytest.fixture
def offered(folder):
    with lm_offered.offered(folder, ATTENTION_EXPLORER_LM=str(folder / "tiny-llama")):
        yield folder


def shown_text(at) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "error", "info", "warning") for e in at.get(kind)]


def test_the_picker_offers_each_model_by_name_and_lists_the_refused_with_reasons(offered):
    at = open_app(PAGE)
    picker = at.selectbox(key="llm_checkpoint")
    assert picker.options == [SMOLLM2.name, "tiny-llama", "tiny-gpt2", "tiny-qwen2"]  # tiny-llama once
    assert picker.value == "tiny-llama"  # ATTENTION_EXPLORER_LM is the default
    (refused,) = [d.value for d in at.dataframe if "why not" in d.value.columns]
    reasons = dict(zip(refused["model"], refused["why not"], strict=True))
    assert set(reasons) == {"bert", "no-tokenizer", "junk.gguf"}
    assert "architecture 'bert' is not supported" in reasons["bert"]
    assert "no tokenizer.json" in reasons["no-tokenizer"]
    assert "not a readable GGUF file" in reasons["junk.gguf"]
    assert set(refused["where"]) == {"ATTENTION_EXPLORER_LM_DIR"}
    page = "\n".join([*shown_text(at), *map(str, refused.values.ravel())])
    assert str(offered) not in page  # no server path reaches the visitor
    assert any("ATTENTION_EXPLORER_LM_DIR" in m for m in shown_text(at))  # how to offer more


JUNK = ["/etc/passwd", "../tiny-qwen2", "tiny-qwen2/", "", "tiny-gpt2\x00", "x" * 5000]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_in_the_urls_model_name_opens_the_default(offered, junk):
    at = open_app(PAGE, llm_checkpoint=junk)
    assert at.selectbox(key="llm_checkpoint").value == "tiny-llama" and not at.error
    assert [m for m in at.metric if m.label.startswith("Next token")]


def test_a_picked_model_shows_its_own_next_token_and_maps(offered):
    at = open_app(PAGE, llm_checkpoint="tiny-qwen2", llm_view="Attention")
    loaded = runner.open_lm("tiny-qwen2")
    run = runner.run(loaded, runner.prepare(loaded, runner.EXAMPLE))
    (shown,) = [m for m in at.metric if m.label.startswith("Next token")]
    assert shown.value == run.top_tokens[-1][0] and shown.proto.delta == f"p = {run.top_probs[-1, 0]:.1%}"
    np.testing.assert_array_equal(sent_maps(at, "llm_map"), run.maps["self"].weights)  # exact: the model's
    at.selectbox(key="llm_checkpoint").set_value("tiny-gpt2").run()  # another model: its own numbers
    assert not at.exception
    loaded = runner.open_lm("tiny-gpt2")
    run = runner.run(loaded, runner.prepare(loaded, runner.EXAMPLE))
    np.testing.assert_array_equal(sent_maps(at, "llm_map"), run.maps["self"].weights)


def error_of(at) -> str:
    assert not at.exception, [e.value for e in at.exception]
    (error,) = at.error
    return error.value


@pytest.mark.parametrize("damage", ["vanished", "corrupt", "too big"])
def test_a_model_broken_after_it_was_listed_gets_a_message_and_the_others_still_open(
    offered, tmp_path, monkeypatch, damage
):
    """Listed while it was fine (the listing is kept for a while), then removed, overwritten with garbage,
    or over a limit that dropped (memory got scarce): picking it says why, without a path; the next pick
    opens."""
    victim = offered / "victim"
    shutil.copytree(offered / "tiny-qwen2", victim)
    lm_offered.forget()
    try:
        at = open_app(PAGE)
        assert "victim" in at.selectbox(key="llm_checkpoint").options  # listed, and the listing is kept
        if damage == "vanished":
            shutil.rmtree(victim)
        elif damage == "corrupt":
            (victim / "model.safetensors").write_bytes(bytes(range(256)) * 64)
        else:
            limit = runner.catalog().limit_bytes
            object.__setattr__(runner.catalog(), "limit_bytes", 1000)
        at.selectbox(key="llm_checkpoint").set_value("victim").run()
        message = error_of(at)
        assert message.startswith(f"Cannot load {md_escape('victim')}: ") and "To fix:" in message
        assert str(offered) not in message and not at.metric
        assert any("The other models still open" in c.value for c in at.caption)
        if damage == "too big":
            object.__setattr__(runner.catalog(), "limit_bytes", limit)  # memory free again
        at.selectbox(key="llm_checkpoint").set_value("tiny-gpt2").run()
        assert not at.exception and not at.error and at.metric
    finally:
        shutil.rmtree(victim, ignore_errors=True)
        lm_offered.forget()


def test_a_model_over_the_size_limit_is_refused_with_its_size(folder, smollm2, monkeypatch):
    """0.0001 GB (100 kB): every tiny model is larger, so only the shipped one is offered (the session's
    SmolLM2 handed to the app)."""
    shipped = runner.loaded_from(*smollm2)
    monkeypatch.setattr(runner, "load_all", lambda: shipped)
    runner.shipped_model.cache_clear()
    try:
        with lm_offered.offered(folder, ATTENTION_EXPLORER_LM_MAX_GB="0.0001"):
            at = open_app(PAGE)
    finally:
        runner.shipped_model.cache_clear()
    assert at.selectbox(key="llm_checkpoint").options == [SMOLLM2.name] and at.metric
    (refused,) = [d.value for d in at.dataframe if "why not" in d.value.columns]
    reasons = dict(zip(refused["model"], refused["why not"], strict=True))
    said = "GB of float32 weights, over the 0.0 GB limit (ATTENTION_EXPLORER_LM_MAX_GB raises it)"
    assert all(said in reasons[f"tiny-{arch}"] for arch in ARCHS), reasons


def test_at_most_two_user_models_are_held_and_the_shipped_one_stays(offered, monkeypatch):
    """Through the family's loader, as every served call reaches its model: two user models held at most,
    the least recently used dropped before the next one loads (never three in memory), and the shipped model
    pinned apart, never loaded again. A tiny model plays the shipped one here."""
    family, opened = FAMILIES["llm"], runner.open_user_model
    monkeypatch.setattr(runner, "load_all", lambda: opened("tiny-gpt2"))
    runner.shipped_model.cache_clear()
    refs: dict[str, weakref.ref] = {}

    def load(name: str):
        gc.collect()
        alive = [n for n, ref in refs.items() if ref() is not None]
        assert len(alive) < runner.USER_MODELS, alive  # the oldest was dropped before this load began
        model = opened(name)
        refs[name] = weakref.ref(model)
        return model

    monkeypatch.setattr(runner.held, "load", load)
    try:
        shipped = loaded_model(family, SMOLLM2.name)
        for name in ("tiny-llama", "tiny-qwen2", "tiny-llama", "tiny-gpt2"):  # tiny-qwen2 oldest at the end
            loaded_model(family, name)
        gc.collect()
        assert runner.held.names == ("tiny-llama", "tiny-gpt2")
        assert {n for n, ref in refs.items() if ref() is not None} == {"tiny-llama", "tiny-gpt2"}
        assert loaded_model(family, "tiny-llama") is refs["tiny-llama"]()  # held: not loaded again
        assert loaded_model(family, SMOLLM2.name) is shipped  # out of Streamlit's one entry, yet pinned
    finally:
        runner.shipped_model.cache_clear()


def test_a_lingering_session_keeps_no_dropped_model_alive(offered, monkeypatch):
    """Streamlit keeps a session's widgets (their callbacks and formatters) and fragments (their arguments)
    after its run — and a closed browser tab's session for a while: none of them may hold the model, or
    every model ever dropped stays in memory (seen in the soak: +4.4 GB in 3 minutes). Three sessions kept
    open on three models, each with its fragments drawn: only the two held models are alive. (Each user
    model loaded is followed by a weak reference: other tests' models — our GPT's, the shipped one — may
    be alive in the same process.)"""
    opened, refs = runner.open_user_model, {}

    def load(name: str):
        model = opened(name)
        refs[name] = weakref.ref(model)
        return model

    monkeypatch.setattr(runner.held, "load", load)
    sessions = []
    for name in ("tiny-llama", "tiny-qwen2", "tiny-gpt2"):
        at = open_app(PAGE, llm_checkpoint=name)
        for tab in ("GQA", "RoPE", "Raw vs projected", "Circuits"):  # the fragments, the circuits' pickers
            open_view(at, tab)
        sessions.append(at)
    gc.collect()
    assert runner.held.names == ("tiny-qwen2", "tiny-gpt2")
    alive = {name for name, ref in refs.items() if ref() is not None}
    assert alive == {"tiny-qwen2", "tiny-gpt2"}  # tiny-llama, dropped, is gone
