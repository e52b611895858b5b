"""The real LLM's probe sets and its card: every prompt is well formed for the tokenizer, and the
card's numbers are recomputed here from the file (a subset of each measurement)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.checkpoints import ASSETS
from models.llama import gguf_path
from tasks import probes
from training import llm_card
from training.evaluate import in_context_metrics

CARD = json.loads((ASSETS / f"{llm_card.CARD}.json").read_text(encoding="utf-8"))
# float32 logits recomputed on another CPU or thread count differ in their last bits: a logit
# difference of two logits ~20 by ~1e-5; means of softmax weights by ~1e-6.
LOGIT_ATOL = 1e-3


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_every_name_and_city_is_one_token_and_twins_have_the_same_length(smollm2):
    _, tokenizer, _ = smollm2
    words = {*probes.IOI_PRESET_NAMES, *probes.IOI_HELD_OUT_NAMES, *(c for _, c in probes.CAPITALS)}
    words |= {c for _, c in probes.FACTS}
    for word in words:
        assert llm_card.word_id(tokenizer, word) >= 0  # raises when " word" is not one token
    with pytest.raises(ValueError, match="one token"):
        llm_card.word_id(tokenizer, "Bangkok")
    # Patching swaps positions between twins: the same token count, differing only at the clue.
    for c in probes.ioi_set(40, 1) + probes.ioi_set(12, 1, "preset") + probes.capital_set():
        clean, corrupt = (tokenizer.encode(t, add_special_tokens=False).ids for t in (c.prompt, c.corrupt))
        assert len(clean) == len(corrupt), c
        assert sum(a != b for a, b in zip(clean, corrupt, strict=True)) == 1, c


def test_the_held_out_ioi_set_shares_no_name_or_template_with_the_presets():
    assert not set(probes.IOI_PRESET_NAMES) & set(probes.IOI_HELD_OUT_NAMES)
    assert not set(probes.IOI_PRESET_TEMPLATES) & set(probes.IOI_HELD_OUT_TEMPLATES)
    held_out = probes.ioi_set(**llm_card.IOI_HELD_OUT)
    assert len(held_out) >= 50 and len({c.prompt for c in held_out}) == len(held_out)
    for c in held_out:
        assert c.target != c.rival and c.prompt.count(c.rival) == 2 and c.prompt.count(c.target) == 1
        assert c.corrupt.count(c.rival) == 1  # the repeated name, the clue, is gone
    assert probes.ioi_set(5, 7) == probes.ioi_set(5, 7) != probes.ioi_set(5, 8)  # seeded


def test_the_card_names_the_file_it_measured():
    path = gguf_path()
    assert CARD["file"]["name"] == path.name and CARD["file"]["bytes"] == path.stat().st_size
    assert CARD["file"]["sha256"] == llm_card.file_digest(path)
    assert "Q4_1" in CARD["quantisation"] and "Q4_1" in CARD["model"]
    arch = CARD["architecture"]
    assert (arch["layers"], arch["heads"], arch["kv_heads"], arch["d_head"]) == (30, 9, 3, 64)


def test_card_prompt_sets_recompute(smollm2):
    model, tokenizer, _ = smollm2
    for stored, contrasts in (
        (CARD["ioi"]["held_out"], probes.ioi_set(**llm_card.IOI_HELD_OUT)[:4]),
        (CARD["facts"]["capitals"], probes.capital_set()[:2]),
        (CARD["facts"]["landmarks"], probes.fact_set()[:2]),
    ):
        again = llm_card.logit_differences(model, tokenizer, contrasts)
        for ours, theirs in zip(again["prompts"], stored["prompts"], strict=False):
            assert ours["prompt"] == theirs["prompt"]
            assert ours["logit_diff"] == pytest.approx(theirs["logit_diff"], abs=LOGIT_ATOL)
    ioi = CARD["ioi"]["held_out"]
    assert ioi["n"] == len(ioi["prompts"]) >= 50
    assert ioi["target_wins"] == sum(r["logit_diff"] > 0 for r in ioi["prompts"])
    assert ioi["mean_logit_diff"] == pytest.approx(np.mean([r["logit_diff"] for r in ioi["prompts"]]))


def test_card_perplexity_recomputes_on_its_first_windows(smollm2):
    model, tokenizer, _ = smollm2
    english = CARD["english"]
    if probes.english_digest("test") != english["sha256"]:
        pytest.skip("this Python's help texts are not the ones the card was measured on")
    windows = llm_card.english_windows(tokenizer, "test", llm_card.WINDOW, english["windows"])
    assert len(windows) == english["windows"] == len(english["window_nll"])
    np.testing.assert_allclose(llm_card.window_nll(model, windows[:2]), english["window_nll"][:2], atol=1e-4)
    assert english["perplexity"] == pytest.approx(float(np.exp(np.mean(english["window_nll"]))), rel=1e-5)
    assert english["perplexity"] < 0.1 * english["unigram_perplexity"]  # a language model, not a unigram


@pytest.mark.slow  # two 30-layer forwards of every probe sequence with every attention map (~30 s)
def test_card_head_scores_recompute(smollm2):
    model, _, meta = smollm2
    controls = sum(1 for kind in meta["tokenizer.ggml.token_type"] if kind == 3)
    measured = in_context_metrics(model, llm_card.probe_ids(model.cfg.vocab, controls))
    stored = CARD["in_context"]
    for key in ("induction_scores", "previous_token_scores", "first_token_scores"):
        np.testing.assert_allclose(measured[key], stored[key], atol=1e-4, err_msg=key)
    assert measured["induction_head"] == stored["induction_head"]
    assert measured["second_copy_loss"] == pytest.approx(stored["second_copy_loss"], abs=1e-3)
    assert stored["second_copy_loss"] < 0.5 * stored["first_copy_loss"]  # it copies in context
    # The pass with the top induction heads off is computed too: the card's number, and copying undone.
    assert measured["top_induction_heads"] == stored["top_induction_heads"]
    assert measured["second_copy_loss_ablated"] == pytest.approx(stored["second_copy_loss_ablated"], abs=1e-3)
    assert stored["second_copy_loss_ablated"] > 2 * stored["second_copy_loss"]
