"""The IOI circuit in SmolLM2's card (python -m training.llm_circuits), recomputed on a subset: the name
movers found again on the preset prompts by the card's rule, and the first held-out prompts' logit
differences with them ablated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import patching as P
from models.checkpoints import ASSETS
from tasks import probes
from training import llm_card, llm_circuits

CIRCUIT = json.loads((ASSETS / f"{llm_card.CARD}.json").read_text(encoding="utf-8"))[llm_circuits.KEY]
# float32 logits recomputed on another CPU or thread count differ in their last bits (see test_llm_card).
LOGIT_ATOL = 1e-3


def test_the_name_movers_are_found_again_on_the_preset_prompts(smollm2):
    model, tokenizer, _ = smollm2
    preset = probes.ioi_set(3 * len(probes.IOI_PRESET_TEMPLATES), llm_card.IOI_HELD_OUT["seed"], "preset")
    found = llm_circuits.per_prompt(model, tokenizer, preset)
    assert found["logit_diff"].mean() == pytest.approx(CIRCUIT["found_on"]["mean_logit_diff"], abs=LOGIT_ATOL)
    heads = llm_circuits.name_movers(found)
    assert heads == [(h["layer"], h["head"]) for h in CIRCUIT["heads"]] and heads
    for h, (i, j) in zip(CIRCUIT["heads"], heads, strict=True):
        assert found["direct"][:, i, j].mean() == pytest.approx(h["preset_direct"], abs=LOGIT_ATOL)


def test_the_first_held_out_prompts_with_the_heads_ablated(smollm2):
    model, tokenizer, _ = smollm2
    first = CIRCUIT["first"]
    contrasts = probes.ioi_set(**llm_card.IOI_HELD_OUT)[: len(first["prompts"])]
    assert [c.prompt for c in contrasts] == first["prompts"]
    heads = [(h["layer"], h["head"]) for h in CIRCUIT["heads"]]
    preset = probes.ioi_set(3 * len(probes.IOI_PRESET_TEMPLATES), llm_card.IOI_HELD_OUT["seed"], "preset")
    reference = [tokenizer.encode(c.corrupt, add_special_tokens=False).ids for c in preset]
    after = llm_circuits.ablated(model, tokenizer, contrasts, heads, "mean", reference)
    np.testing.assert_allclose(after, first["mean_ablated_logit_diff"], atol=LOGIT_ATOL)
    base = llm_circuits.per_prompt(model, tokenizer, contrasts[:1])["logit_diff"]
    np.testing.assert_allclose(base, first["logit_diff"][:1], atol=LOGIT_ATOL)
    # Ablating the found heads lowers the logit difference on held-out prompts, as the card's mean says.
    assert CIRCUIT["held_out"]["mean_ablated_share_removed"] > 0
    assert P.ABLATIONS["mean"] and "corrupted twins" in CIRCUIT["reference"]
