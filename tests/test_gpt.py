"""The GPT: causal attention through the shared core, interventions per call, the shipped card's
metrics recomputed from the shipped weights, the runner's shapes, and the page on hostile input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from analysis import lm
from families.gpt import runner as gpt
from models.attention import Interventions
from models.checkpoints import ASSETS
from models.gpt import BLOCK, GPT, GPTConfig
from models.sampling import Sampling
from tasks import InputError, stdlib
from tasks.common import BOS_ID
from tests.helpers import open_app
from training.__main__ import main
from training.evaluate import evaluate_lm, in_context_metrics, repeat_probe

PLAIN = Interventions()


def tiny(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab=40, d_model=16, n_heads=4, n_layers=2, d_ff=32, max_len=24, **kw)).eval()


def random_ids(t_len: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor([[BOS_ID]]), torch.randint(4, 40, (1, t_len - 1), generator=g)], 1)


# --- The network, on tiny random configs ----------------------------------------------------------
def test_causal_rows_sum_to_one_and_the_future_gets_exactly_zero():
    model, ids = tiny(), random_ids()
    with torch.inference_mode():
        _, trace = model(ids, return_trace=True)
    w = trace.weights  # (B, L, h, T, T)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    upper = torch.triu(torch.ones(12, 12, dtype=torch.bool), 1)
    assert (w[..., upper] == 0).all()  # exactly zero, not small
    for layer in trace.layers:
        assert torch.isinf(layer.heads.masked_scores[..., upper]).all()


def test_no_position_reads_the_future_end_to_end():
    """Smeared keys included: changing token t changes no logit before t."""
    model, ids = tiny(), random_ids()
    other = ids.clone()
    other[0, 7] = (ids[0, 7] + 1 - 4) % 36 + 4
    with torch.inference_mode():
        a, b = model(ids)[0], model(other)[0]
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_fast_and_traced_paths_agree():
    model, ids = tiny(), random_ids()
    with torch.inference_mode():
        fast, none = model(ids)
        slow, trace = model(ids, return_trace=True)
        light, _ = model(ids, return_trace=True, capture="weights")
    assert none is None
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(light, slow, atol=0, rtol=0)
    torch.testing.assert_close(trace.logits, slow)


def test_our_attention_equals_torch_multihead_attention():
    """One block's causal attention, ours vs `torch.nn.MultiheadAttention` with the same weights."""
    model = tiny()
    attn = model.blocks[0].attn
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.w_q.weight, attn.w_k.weight, attn.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.w_q.bias, attn.w_k.bias, attn.w_v.bias]))
        ref.out_proj.weight.copy_(attn.w_o.weight)
        ref.out_proj.bias.copy_(attn.w_o.bias)
    x = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(3))
    future = torch.triu(torch.ones(10, 10, dtype=torch.bool), 1)  # torch's convention: True = blocked
    with torch.inference_mode():
        ours, trace = attn(query=x, key=x, value=x, mask=~future, return_trace=True)
        theirs, weights = ref(x, x, x, attn_mask=future, average_attn_weights=False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trace.heads.weights, weights, atol=1e-6, rtol=1e-5)


def test_interventions_act_per_call_and_leave_the_model_alone():
    model, ids = tiny(), random_ids()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        plain, _ = model(ids)
        _, hidden = model(ids, iv=Interventions(hidden_keys=(3,)), return_trace=True)
        _, peek = model(ids, iv=Interventions(causal=False), return_trace=True)
        _, hot = model(ids, iv=Interventions(temperature=3.0), return_trace=True)
        off, _ = model(ids, iv=Interventions(ablate=frozenset({(BLOCK, 1, 2)})), return_trace=True)
        again, _ = model(ids)
    assert (hidden.weights[..., 3] == 0).all()
    assert (peek.weights[..., 0, 1:] > 0).all()  # the first position sees the future
    assert hot.layers[0].heads.temperature == 3.0
    assert not torch.allclose(off, plain)
    torch.testing.assert_close(again, plain, atol=0, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_generation_is_seeded_by_its_own_generator():
    model, ids = tiny(), random_ids(5)
    state = torch.random.get_rng_state()

    def sample(seed):
        steps = list(model.stream(ids[0].tolist(), new_tokens=30, sampling=Sampling(1.0, top_k=5, seed=seed),
                                  trace_layers=()))  # fmt: skip
        return [s.token for s in steps], np.array([s.log_prob for s in steps])

    (a, lp), (b, _), (c, _) = sample(7), sample(7), sample(8)
    assert a == b and a != c
    assert len(a) == 30 and lp.shape == (30,) and (lp <= 0).all()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator was not touched
    greedy = [s.token for s in model.stream(ids[0].tolist(), new_tokens=3)]
    with torch.inference_mode():
        first = model(ids)[0][0, -1].argmax()
    assert greedy[0] == first


def test_generation_slides_its_window_past_the_context():
    """Past max_len tokens each step reads the last max_len (positions are per index: nothing cached),
    and the attention a step keeps is that window's."""
    model = tiny()
    ids = random_ids(model.cfg.max_len - 2)[0].tolist()
    steps = list(model.stream(ids, new_tokens=4))
    assert [s.start for s in steps] == [0, 0, 0, 1]
    assert all(s.weights.shape[-1] == model.cfg.max_len for s in steps[2:])
    with torch.inference_mode():
        window = torch.tensor([[*ids, *(s.token for s in steps[:3])][-model.cfg.max_len :]])
        assert int(model(window)[0][0, -1].argmax()) == steps[3].token


# --- The shipped checkpoint -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded():
    return gpt.load()


def test_shipped_files_are_small_safetensors_with_their_tokenizer(loaded):
    model, card, tokenizer = loaded.model, loaded.card, loaded.vocabulary.tokenizer
    path = ASSETS / f"{gpt.DEFAULT}.safetensors"
    assert path.stat().st_size <= 10e6
    with safe_open(path, "pt") as f:
        assert len(list(f.keys())) > 10
    cfg = model.cfg
    assert 2 <= cfg.n_layers <= 4 and 4 <= cfg.n_heads <= 8 and cfg.max_len >= 128
    assert stdlib.tokens_of(tokenizer) == tuple(card["tgt_vocab"]) and len(card["tgt_vocab"]) == cfg.vocab
    assert card["tokenizer"]["sha256"] == stdlib.tokenizer_digest()
    assert card["threads"] >= 1 and card["training_seconds"] > 0 and 0 < card["repeat_share"] < 1


def test_card_in_context_metrics_are_the_models_and_meet_the_bars(loaded):
    model, card = loaded.model, loaded.card
    test = card["test"]
    measured = in_context_metrics(model)
    for key in ("induction_scores", "previous_token_scores", "first_token_scores"):
        np.testing.assert_allclose(measured[key], test[key], atol=1e-5, err_msg=key)
    for key in ("induction_score", "previous_token_score", "first_copy_loss", "second_copy_loss",
                "second_copy_loss_ablated"):  # fmt: skip
        assert measured[key] == pytest.approx(test[key], abs=1e-5), key
    assert measured["top_induction_heads"] == test["top_induction_heads"]
    assert measured["induction_score"] >= 0.3
    assert measured["second_copy_loss"] <= 0.5 * measured["first_copy_loss"]
    assert measured["second_copy_loss_ablated"] >= 2 * measured["second_copy_loss"]
    assert test["test_perplexity"] <= 0.8 * test["bigram_perplexity"]


def test_ablating_the_top_induction_heads_through_interventions(loaded):
    """The ablation bar, through the page's own path: `Interventions` head masks per call."""
    model, card = loaded.model, loaded.card
    top = frozenset((BLOCK, i, h) for i, h in card["test"]["top_induction_heads"])
    plain, off = repeat_probe(model), repeat_probe(model, Interventions(ablate=top))
    assert off["second_copy_loss"] >= 2 * plain["second_copy_loss"]
    assert off["first_copy_loss"] == pytest.approx(plain["first_copy_loss"], rel=0.25)  # copying, not all


@pytest.mark.slow  # the whole held-out test split and the bigram over the training stream (~1 min)
def test_card_perplexities_are_recomputed_from_the_shipped_weights(loaded):
    model, card = loaded.model, loaded.card
    windows = stdlib.generate(card["test"]["n"], card["test_seed"], "test")
    measured = evaluate_lm(model, windows)
    assert measured["test_perplexity"] <= 0.8 * measured["bigram_perplexity"]
    if stdlib.describe("test")["sha256"] != card["corpus"]["test"]["sha256"]:
        pytest.skip("this Python's standard library is not the one the card was measured on: bars only")
    assert measured["test_perplexity"] == pytest.approx(card["test"]["test_perplexity"], rel=1e-4)
    assert measured["bigram_perplexity"] == pytest.approx(card["test"]["bigram_perplexity"], rel=1e-6)


def test_the_split_is_by_file_and_the_test_files_are_never_trained_on():
    splits = {s: set(stdlib.files(s)) for s in ("train", "val", "test")}
    assert all(splits[s] for s in splits)
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["val"])
    assert not any(set(p.parts) & stdlib.SKIPPED_DIRS for s in splits.values() for p in s)
    assert stdlib.files("test") == tuple(sorted(splits["test"]))  # deterministic order


# --- The runner -----------------------------------------------------------------------------------
def test_runner_shapes_and_numbers(loaded):
    model = loaded.model
    run = gpt.example()
    cfg, t_len = model.cfg, len(run.ids)
    maps = run.maps["self"]
    assert maps.weights.shape == (cfg.n_layers, cfg.n_heads, t_len, t_len)
    assert (maps.weights[..., np.triu_indices(t_len, 1)[0], np.triu_indices(t_len, 1)[1]] == 0).all()
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert run.inputs[0] == "<s>" and run.output == run.inputs[1:] and len(run.token_log_probs) == t_len - 1
    assert run.every_log_prob.shape == (t_len, cfg.vocab)
    np.testing.assert_allclose(np.exp(run.every_log_prob).sum(-1), 1.0, atol=1e-4)
    picked = run.every_log_prob[np.arange(t_len - 1), list(run.ids[1:])]
    np.testing.assert_array_equal(picked, run.token_log_probs)
    assert run.top_probs.shape == (t_len, lm.TOP_K) and (np.diff(run.top_probs, axis=1) <= 0).all()
    np.testing.assert_allclose(run.top_probs[:, 0], np.exp(run.every_log_prob.max(-1)), rtol=1e-5)
    assert run.loss == pytest.approx(-run.token_log_probs.mean())
    shapes = {k: v.shape for k, v in run.head_scores.items()}
    assert shapes == dict.fromkeys(gpt.ROLES, (cfg.n_layers, cfg.n_heads))


def test_head_roles_come_from_the_cards_measurements(loaded):
    card = loaded.card
    roles = gpt.head_roles(card)
    layer, head = card["test"]["induction_head"]
    assert roles[(layer, head)] == ("induction", pytest.approx(card["test"]["induction_score"], abs=1e-6))
    layer, head = card["test"]["previous_token_head"]
    assert roles[(layer, head)][0] in ("previous-token", "previous-token (weak)", "induction")
    for (layer, head), (role, score) in roles.items():
        assert score == max(card["test"][f"{n}_scores"][layer][head] for n in gpt.ROLES)
        assert (role == "—") == (score < gpt.WEAK_MIN)


def test_the_induction_stripe_on_a_repeated_random_sequence(loaded):
    model, card = loaded.model, loaded.card
    n = 30
    run = gpt.run(loaded, gpt.random_repeat(n, 5, model.cfg.vocab))
    layer, head = card["test"]["induction_head"]
    w = run.maps["self"].weights[layer, head]
    stripe = np.mean([w[i, i - n + 1] for i in range(n + 1, 2 * n + 1)])
    assert stripe >= 0.3  # the map the page draws shows the stripe
    assert run.head_scores["induction"][layer, head] >= 0.3
    first, second = -run.token_log_probs[1:n].mean(), -run.token_log_probs[n + 1 : 2 * n].mean()
    assert second <= 0.5 * first


def test_peeking_without_the_causal_mask_lowers_the_loss(loaded):
    prompt = gpt.prepare(loaded, gpt.EXAMPLE)
    on = gpt.run(loaded, prompt)
    off = gpt.run(loaded, prompt, Interventions(causal=False))
    change = lm.compare(off, on)
    assert change.loss < 0 and change.kl_mean_over_positions > 0 and change.kl_after_prompt >= 0
    assert (np.triu(off.maps["self"].weights, 1) > 0).any()


def test_prompts_people_type(loaded):
    model, tokenizer = loaded.model, loaded.vocabulary.tokenizer
    context = model.cfg.max_len
    for empty in ("", "  \n\t ", "\x00\x07"):
        with pytest.raises(InputError, match="Type a prompt"):
            gpt.prepare(loaded, empty)
    long = gpt.prepare(loaded, "x = 1\n" * 20_000)
    assert len(long.ids) == context and long.dropped > 0 and long.unread > 0
    control = gpt.prepare(loaded, "a\x00b\x1b[31mc\r\nd")
    assert control.removed == 2 and "\x00" not in tokenizer.decode(list(control.ids[1:]))
    emoji = gpt.prepare(loaded, "x = '🎉'")
    shown = [loaded.label(i) for i in emoji.ids]
    assert emoji.non_ascii and any(s.startswith("\\x") for s in shown)
    typed = gpt.prepare(loaded, "<s></s>")
    assert typed.ids.count(BOS_ID) == 1  # a typed "<s>" is text, not the special token
    assert loaded.label(tokenizer.token_to_id("Ċ")) == "↵"


def test_generation_through_the_runner_is_repeatable(loaded):
    prompt = gpt.prepare(loaded, "import os\n\n\ndef ")
    sampling = Sampling(0.8, top_k=20, seed=3)
    a, b = (lm.sample(loaded, prompt, new_tokens=12, sampling=sampling) for _ in range(2))
    assert a.text == b.text and len(a.output) == 12 and (a.token_log_probs <= 0).all()
    greedy = lm.sample(loaded, prompt, new_tokens=1, sampling=Sampling())
    assert greedy.output[0] == gpt.run(loaded, prompt).top_tokens[-1][0]


@pytest.mark.slow  # tokenizes the whole corpus (~40 s)
def test_the_one_training_cli_trains_a_gpt_that_loads_back(tmp_path: Path, loaded):
    main(["--family", "gpt", "--steps", "2", "--n-train", "64", "--n-eval", "4", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt-stdlib.json", "gpt-stdlib.safetensors"]
    trained = gpt.load(folder=tmp_path)
    model, card, tokenizer = trained.model, trained.card, trained.vocabulary.tokenizer
    from training.measure import MEASURED_KEYS  # added to the shipped card after training

    assert set(card) == set(loaded.card) - MEASURED_KEYS and set(card["test"]) == set(loaded.card["test"])
    assert card["steps"] == 2 and card["test"]["n"] == 4 and not model.training
    assert stdlib.tokens_of(tokenizer) == tuple(card["tgt_vocab"])


def test_a_checkpoint_trained_elsewhere_loads_with_the_tasks_tokenizer(tmp_path: Path, loaded):
    model, card = loaded.model, loaded.card
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"{gpt.DEFAULT}{suffix}").write_bytes((ASSETS / f"{gpt.DEFAULT}{suffix}").read_bytes())
    copy = gpt.load(folder=tmp_path)
    again, tokenizer = copy.model, copy.vocabulary.tokenizer
    assert stdlib.tokens_of(tokenizer) == tuple(card["tgt_vocab"])
    theirs = model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in again.state_dict().items())


# --- The page -------------------------------------------------------------------------------------
def test_page_shows_the_models_numbers_and_survives_bad_prompts(loaded):
    at = open_app("families/gpt/page.py")
    expected = gpt.run(loaded, gpt.prepare(loaded, gpt.EXAMPLE))
    (loss,) = [m for m in at.metric if m.label.startswith("Loss")]
    assert float(loss.value) == pytest.approx(expected.loss, abs=1e-3)
    for text in ("", "x = 1\n" * 20_000, "a\x00b"):
        at.text_area(key="gpt_prompt").set_value(text).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.info if text == "" else at.warning, repr(text[:10])
    at.text_area(key="gpt_prompt").set_value("s = '🎉 ünï'\n").run()
    assert not at.exception and any("byte tokens" in c.value for c in at.caption)
    at.button(key="gpt_repeat").click().run()
    assert not at.exception and at.session_state["gpt_input"] == "random"
    at.sidebar.checkbox(key="gpt_causal").uncheck().run()
    assert not at.exception and at.dataframe  # the table of what each intervention changed
    assert math.isfinite(float([m for m in at.metric if m.label.startswith("Loss")][0].value))


def test_the_next_token_table_is_the_runs(loaded):
    at = open_app("families/gpt/page.py")
    table = at.dataframe[0].value
    expected = gpt.run(loaded, gpt.prepare(loaded, gpt.EXAMPLE))
    assert list(table["token"]) == list(expected.inputs)
    assert table["#1"][0] == f"{expected.top_tokens[0][0]}  {expected.top_probs[0, 0]:.1%}"
