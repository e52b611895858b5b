"""The SmolLM2 page's analysis tabs and its Circuits tab open on the page's default prompt without an
exception, each showing the runners' numbers; the IOI preset's ablation defaults to the card's heads."""

from __future__ import annotations

import json

import pytest

from families.llm.shipped import SMOLLM2
from models.checkpoints import ASSETS
from tests.helpers import open_app, open_view

PAGE = "families/llm/page.py"
CARD = json.loads((ASSETS / f"{SMOLLM2.card}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def app():
    return open_app(PAGE)


ANALYSES = ["GQA", "RoPE", "Attention sinks", "Raw vs projected", "Attention vs importance"]


@pytest.mark.parametrize("tab", ANALYSES)
def test_each_analysis_tab_opens(app, tab):
    open_view(app, tab)
    assert not app.exception and not app.error


def test_the_circuits_tab_on_the_ioi_preset_ablates_the_cards_name_movers(app):
    open_view(app, "Circuits")
    (pair,) = [s for s in app.selectbox if s.label == "Prompt pair"]
    ioi = [o for o in pair.options if o.startswith("IOI")]
    pair.set_value(ioi[0]).run()
    app.radio(key="llm_circ_section").set_value("Ablation").run()
    assert not app.exception
    (heads,) = [m for m in app.multiselect if m.label.startswith("Heads to ablate")]
    assert [tuple(h) for h in heads.value] == [(h["layer"], h["head"]) for h in CARD["ioi_circuit"]["heads"]]
    assert "name movers" in heads.label
    shares = [m for m in app.metric if m.label == "share of the logit difference removed"]
    assert shares and shares[0].value.endswith("%")


def test_the_circuits_tab_says_when_a_prompt_is_too_long_for_it(app):
    open_view(app, "Circuits")
    (pair,) = [s for s in app.selectbox if s.label == "Prompt pair"]
    pair.set_value("your own pair").run()
    (clean,) = [t for t in app.text_area if t.label == "Clean prompt"]
    clean.set_value("The cat sat on the mat. " * 40).run()  # 281 tokens
    assert not app.exception
    shown = [i.value for i in app.info]
    assert any("up to 128 tokens (these have 281 and" in text for text in shown), shown
