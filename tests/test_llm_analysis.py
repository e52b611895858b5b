"""SmolLM2's analyses (families/llm/analysis.py, families/llm/importance.py) against the model's own
tensors: the KV cache, the core's query → K/V mapping, the trace's scores and weights, `llama.run`.

Tolerances appear only where two computations add the same float32 numbers in another order, each with
its reason beside it; everything else is compared exactly.
"""

import copy

import numpy as np
import pytest
import torch

from analysis import lm
from analysis.importance import GRADIENT_X_INPUT
from families.llm import analysis, importance
from families.llm import runner as llama
from models.attention import NO_INTERVENTION, Interventions
from models.kv_cache import KVCache

PROMPT = "The Eiffel Tower is in the city of"  # 8 tokens, no token twice
LONGER = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def loaded(smollm2):
    return llama.loaded_from(*smollm2)


@pytest.fixture(scope="module")
def prompt(loaded):
    return llama.prepare(loaded, LONGER)


@pytest.fixture(scope="module")
def sinks(loaded, prompt):
    return analysis.sinks(loaded, prompt.ids)


# --- GQA and the KV cache -------------------------------------------------------------------------
def test_kv_cache_sizes_are_the_real_caches_bytes(loaded, prompt):
    model, t = loaded.model, len(prompt.ids)
    g = analysis.gqa(loaded, t)
    cache = model.new_cache(t)  # the model's own cache for this prompt
    assert g.cache_bytes() == cache.keys.nbytes + cache.values.nbytes == 2 * 30 * 3 * 64 * t * 4
    unshared = KVCache(layers=30, batch=1, kv_heads=9, d_head=64, capacity=t)  # one K/V head per query head
    assert g.cache_bytes(shared=False) == unshared.keys.nbytes + unshared.values.nbytes
    at_context = KVCache(layers=30, batch=1, kv_heads=3, d_head=64, capacity=8192, device="meta")
    assert g.cache_bytes(8192) == at_context.keys.nbytes * 2 == 377_487_360  # 360 MiB; × 3 without sharing
    assert g.cache_bytes(8192, shared=False) == 3 * g.cache_bytes(8192)


def test_query_to_kv_mapping_is_the_cores(loaded, prompt):
    g = analysis.gqa(loaded, len(prompt.ids))
    assert all(block.attn.kv_heads == g.kv_heads for block in loaded.model.blocks)
    assert llama.run(loaded, prompt, layers=(7,)).kv_heads == g.kv_heads  # the trace's own naming
    assert g.groups == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    assert sorted(h for group in g.groups for h in group) == list(range(9))


# --- RoPE -----------------------------------------------------------------------------------------
def test_rope_sweep_at_the_real_offset_is_the_models_score(loaded, prompt):
    model, ids = loaded.model, prompt.ids
    layer, head, query, key = 18, 6, len(ids) - 1, 2
    sweep = analysis.rope_sweep(loaded, ids, layer, head, query, key)
    assert sweep.kv_head == 2 and sweep.offset == query - key
    assert sweep.offsets[0] == 0 and sweep.offsets[-1] == analysis.SWEEP
    # The sweep rotates q at the query's position and k at the key's with the core's `rotary`, exactly as the
    # model did; only the dot product differs: the model sums the 64 products inside a matmul over every key,
    # the sweep one dot product at a time. float32 in another order: bounded by ~64 ε Σ|q_i k_i| / √d.
    bound = 1e-5 * float(np.abs(sweep.q * sweep.k).sum()) / 8
    assert abs(sweep.at_offset - sweep.model_score) <= bound
    # The same score in an ordinary forward of the whole prompt (no cache), full trace of that layer: its
    # earlier layers ran the rows in one block instead of the cache's three, so float32 order differs again.
    x = torch.tensor([list(ids)])
    with torch.inference_mode():
        _, trace = model(x, return_trace=True, capture="full", trace_layers=(layer,))
    attention = trace.layers[layer].attention
    scaled = float(attention.heads.scaled_scores[0, head, query, key])
    assert abs(sweep.model_score - scaled) <= 1e-4 * max(1.0, abs(scaled))
    assert np.allclose(sweep.q, attention.rotary.query[0, head, query].numpy(), atol=1e-4)
    assert np.allclose(sweep.k, attention.rotary.key[0, 2, key].numpy(), atol=1e-4)


def test_rope_pairs_sum_to_the_score_and_have_their_wavelengths(loaded, prompt):
    sweep = analysis.rope_sweep(loaded, prompt.ids, 3, 1, 5, 5)  # query and key the same row: offset 0
    assert sweep.offset == 0 and sweep.pairs.shape == (32, len(sweep.offsets))
    # Σ over pairs of (q_i k_i + q_{i+32} k_{i+32}) against one 64-term dot product: another float32 order.
    assert np.abs(sweep.pairs.sum(0) - sweep.score).max() <= 1e-5 * float(np.abs(sweep.q * sweep.k).sum())
    assert sweep.wavelengths[0] == pytest.approx(2 * np.pi)
    assert sweep.wavelengths[31] == pytest.approx(2 * np.pi * 1e5 ** (62 / 64))
    assert sweep.unrotated == pytest.approx(float(sweep.q.astype(np.float64) @ sweep.k) / 8, rel=1e-5)
    # At Δ = 0 the rotations cancel: the score is the unrotated one (up to the rotation's own rounding).
    assert sweep.score[0] == pytest.approx(sweep.unrotated, abs=1e-4)


def test_rope_sweep_says_which_positions_it_needs(loaded, prompt):
    with pytest.raises(ValueError, match="key ≤ query"):
        analysis.rope_sweep(loaded, prompt.ids, 0, 0, 2, 3)


# --- Attention sinks ------------------------------------------------------------------------------
def test_first_token_share_is_the_mean_of_the_runs_weights(loaded, prompt, sinks):
    ids = prompt.ids
    weights = llama.run(loaded, prompt).maps["self"].weights  # (30, 9, T, T), the page's run of every layer
    assert sinks.first == loaded.label(ids[0])
    assert np.array_equal(sinks.share, weights[:, :, 1:, 0].mean(-1))  # one forward: run's own call
    # In chunks of 3 rows through the KV cache (as a long prompt runs): the same weights, up to float32
    # order (each chunk's matmuls see other shapes).
    rows = 3 * 30 * 9 * len(ids) * 4
    chunked = analysis.first_token_weights(loaded.model, ids, budget=rows)
    assert np.abs(chunked - sinks.on_first).max() <= 1e-5


def test_hiding_the_first_token_is_what_run_gives(loaded, prompt, sinks):
    base = llama.run(loaded, prompt, layers=())
    hidden = llama.run(loaded, prompt, Interventions(hidden_keys=(0,)), layers=())
    assert sinks.loss == base.loss
    assert sinks.hidden == lm.compare(hidden, base)
    assert sinks.hidden.loss == hidden.loss - base.loss != 0
    assert sinks.hidden.next_after == (hidden.top_tokens[-1][0], float(hidden.top_probs[-1, 0]))
    without = analysis.first_token_weights(loaded.model, prompt.ids, analysis.HIDE_FIRST)
    assert (without == 0).all()  # row 0 too: its one key hidden, the core gives it all-zero weights


def test_card_first_token_scores_are_read_as_a_table():
    card = {"in_context": {"first_token_scores": [[0.5] * 9] * 30}}
    assert analysis.card_first_token(card).shape == (30, 9)
    assert analysis.card_first_token({}) is None


# --- Raw vs projected -----------------------------------------------------------------------------
def test_raw_vs_projected_matches_a_hand_computation(loaded, prompt):
    model, ids, layer = loaded.model, prompt.ids, 4
    result = analysis.projection(loaded, ids, NO_INTERVENTION, layer)
    t = len(ids)
    for rows in (result.raw, result.raw_scaled, *result.learned):
        assert np.allclose(rows.sum(-1), 1, atol=1e-5)  # float32 softmax rows
    assert np.array_equal(result.mask, np.tril(np.ones((t, t), dtype=bool)))
    assert np.array_equal(result.learned, llama.run(loaded, prompt, layers=(layer,)).maps["self"].weights[0])
    # By hand: X = RMSNorm(resid_pre) · γ from the stream the trace keeps, softmax(XXᵀ) under the causal mask,
    # in float64 (the runner's float32 matmul over 576 channels rounds differently: ~1e-6 on weights).
    with torch.inference_mode():
        _, trace = model(torch.tensor([list(ids)]), return_trace=True, trace_layers=())
    stream = trace.layers[layer].resid_pre[0].double()
    gamma = model.blocks[layer].attn_norm.weight.double()
    x = (stream * torch.rsqrt(stream.pow(2).mean(-1, keepdim=True) + model.cfg.norm_eps) * gamma).numpy()
    assert np.allclose(result.x, x, atol=1e-4, rtol=1e-5)
    scores = np.where(result.mask, x @ x.T, -np.inf)
    by_hand = np.exp(scores - scores.max(-1, keepdims=True))
    by_hand /= by_hand.sum(-1, keepdims=True)
    assert np.abs(result.raw - by_hand).max() <= 1e-4  # scores ~1e3: exp() amplifies float32's relative 1e-7


def test_raw_vs_projected_reads_the_first_tokens_of_a_long_prompt(loaded):
    ids = tuple(range(100, 100 + analysis.PROJECTION_TOKENS + 5))
    result = analysis.projection(loaded, ids, NO_INTERVENTION, 0)
    assert result.learned.shape == (9, analysis.PROJECTION_TOKENS, analysis.PROJECTION_TOKENS)


# --- Attention vs importance ----------------------------------------------------------------------
def test_batched_ablation_equals_a_single_one(loaded):
    model = loaded.model
    ids = llama.prepare(loaded, PROMPT).ids
    result = importance.measure(loaded, ids)
    t = len(ids) - 1
    assert result.position == t and len(result.positions) == t + 1 == len(result.importance)
    blank = loaded.vocabulary.tokenizer.token_to_id("Ġ")
    with torch.inference_mode():
        base = torch.log_softmax(model(torch.tensor([list(ids)]))[0][0, -1], -1)
        assert result.target_id == int(base.argmax())
        for j in (0, 3, t):
            copy_ = list(ids)
            copy_[j] = blank
            ablated = torch.log_softmax(model(torch.tensor([copy_]))[0][0, -1], -1)
            drop = float(base[result.target_id] - ablated[result.target_id])
            # One row against a batch of t + 1 rows: BLAS may block the batch's matmuls differently.
            assert result.importance[j] == pytest.approx(drop, abs=1e-4)
    comparison = result.comparison()
    assert {f"raw L{i}" for i in range(30)} | {GRADIENT_X_INPUT} <= set(comparison.measures)
    assert result.weights.shape == (30, 9, t + 1) and np.allclose(result.weights.sum(-1), 1, atol=1e-5)


def test_gradient_x_input_equals_an_independent_autograd(loaded):
    ids = llama.prepare(loaded, PROMPT).ids
    result = importance.measure(loaded, ids)
    # Independent of the runner's resume=(0, leaf): the ordinary forward of a private copy of the model, whose
    # embedding layer hands on a leaf of its output through a forward hook (a hook on a copy no one shares).
    twin = copy.deepcopy(loaded.model)
    leaves = []

    def leaf(module, args, out):
        leaves.append(out.detach().requires_grad_(True))
        return leaves[-1]

    twin.tok_emb.register_forward_hook(leaf)
    out, _ = twin(torch.tensor([list(ids)]), logits="last")
    objective = torch.log_softmax(out[0, -1].float(), -1)[result.target_id]
    (grad,) = torch.autograd.grad(objective, leaves[0])  # (1, T, d)
    embeddings = twin.tok_emb.weight[torch.tensor(ids)].detach().numpy()
    blank = twin.tok_emb.weight[loaded.vocabulary.tokenizer.token_to_id("Ġ")].detach().numpy()
    expected = ((embeddings - blank) * grad[0].numpy()).sum(-1)
    # The same forward and backward ops on the same numbers: equal but for the sum over 576 channels,
    # which numpy and the runner's helper both do in float32 in one order; allow float32 noise anyway.
    assert np.allclose(result.grad_x_input, expected, atol=1e-6, rtol=1e-5)
    assert np.abs(expected).max() > 1e-3  # not a vacuous zero


def test_importance_cuts_a_long_prompt_and_says_so(loaded, monkeypatch):
    monkeypatch.setattr(importance, "MAX_TOKENS", 6)  # the cut's logic, without 64 copies of 64 tokens
    ids = tuple(range(200, 209))
    result = importance.measure(loaded, ids, position=8)
    assert result.position == 5 and len(result.positions) == 6 and result.asked == 8
    assert "not 8" in importance._warning(result)
    assert importance._warning(importance.measure(loaded, ids, 3)) is None
    assert importance.TAB.measure in importance.SERVED
