"""Circuits without code (runners/circuits.py): the logit lens, direct logit attribution, activation
patching, attribution patching, ablations and value-weighted attention, on a tiny random GPT (every
check, fast) and on the real LLM (the checks whose code path only it takes: RMSNorm, grouped-query
attention, the KV-cache prefix of the patched copies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import circuits as C
from analysis import patching as P
from models.gpt import GPT, GPTConfig
from models.patching import Patch
from tasks import probes


@pytest.fixture(scope="module")
def tiny() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab=40, d_model=24, n_heads=3, n_layers=3, d_ff=48, max_len=16)
    model = GPT(cfg).eval().requires_grad_(False)
    with torch.no_grad():  # larger weights than GPT-2's init, so that every layer matters to the metric
        for p in model.parameters():
            p.mul_(8.0) if p.dim() == 2 else None
    return model


CLEAN, CORRUPT = [1, 5, 9, 3, 7, 5, 2, 11], [1, 5, 9, 4, 7, 5, 2, 11]  # differ at position 3
PAIR = C.Pair(target=9, rival=4)


def hand_patched(model, corrupt_ids, patch) -> float:
    """One patched copy, the whole prompt from layer 0, no batch, no resume, no cache."""
    with torch.inference_mode():
        logits, _ = model(torch.tensor([corrupt_ids]), patch=patch)
    return float(C.metric(logits, PAIR)[0])


def test_direct_effects_sum_to_the_models_own_logit_difference(tiny, smollm2):
    llm, tokenizer, _ = smollm2
    c = probes.ioi(probes.IOI_PRESET_TEMPLATES[0], "Mary", "John", "Tom")
    pair = C.Pair(tokenizer.encode(" Mary").ids[0], tokenizer.encode(" John").ids[0])
    for model, ids, p in ((tiny, CLEAN, PAIR), (llm, tokenizer.encode(c.prompt).ids, pair)):
        run = C.forward(model, ids, p)
        direct = C.direct_attribution(model, run, p)
        # The terms are the run's own tensors; their sum is the final stream only up to float32 sums
        # in another order (the bound, 1e-3).
        assert direct.effects.sum() == pytest.approx(run.value, abs=1e-3)
        assert direct.total == run.value
        n_layers, n_heads = run.contexts.shape[:2]
        assert direct.heads.shape == (n_layers, n_heads) and direct.mlps.shape == (n_layers,)
    # The real LLM moves the name: some head writes Mary over John directly (the IOI name movers).
    assert direct.heads.max() > 1.0 and run.value > 2


def test_the_logit_lens_last_stage_is_the_models_output(tiny, smollm2):
    llm, tokenizer, _ = smollm2
    for model, ids in ((tiny, CLEAN), (llm, tokenizer.encode("The Eiffel Tower is in the city of").ids)):
        pair = C.Pair(3, 4)
        run = C.forward(model, ids, pair)
        lens = C.logit_lens(model, run, pair, k=3)
        n_layers = len(run.streams)
        assert lens.stages[0] == "embedding" and len(lens.stages) == 1 + 2 * n_layers
        np.testing.assert_array_equal(lens.last_logits, run.logits[0].numpy())  # same readout, same tensor
        # The softmax of the model's logits, taken in float64: the lens's float32 exp(logit − max) / Σ is
        # within 1e-6 of it on SmolLM2 (torch.softmax in float32: 1.2e-5 at probabilities near 1e-11).
        last = torch.softmax(run.logits[0].double(), -1)
        np.testing.assert_allclose(lens.target_prob[-1], last[:, 3].numpy(), rtol=1e-5)
        assert (lens.target_rank[-1] == (run.logits[0] > run.logits[0][:, 3:4]).sum(-1).numpy()).all()
        assert lens.top_ids.shape == (len(lens.stages), len(ids), 3)
    # Paris rises through the layers: absent at the embedding, the top guess at the last layer.
    paris = tokenizer.encode(" Paris").ids[0]
    assert lens.top_ids[-1, -1, 0] == paris


@pytest.mark.parametrize("chunk", [3, 7, 16, 4096])
def test_the_logit_lens_read_a_chunk_of_the_vocabulary_at_a_time_equals_the_whole_readout(
    tiny, monkeypatch, chunk
):
    """Every stage's numbers against the model's own ``readout`` of that stream, whole rows at once:
    with the vocabulary (40 tokens) read 3, 7 or 16 at a time (target and rival in different chunks, a
    short last chunk; 3: chunks smaller than the top k) and in one chunk. Logits by chunk are another
    matmul shape (float32 rounding)."""
    monkeypatch.setattr(C, "VOCAB_CHUNK", chunk)
    pair = C.Pair(target=3, rival=33)
    run = C.forward(tiny, CLEAN, pair)
    lens = C.logit_lens(tiny, run, pair, k=4)
    streams = [sum(tiny.embedding_terms(run.ids).values())]
    streams += [x for _, mid, post in run.streams for x in (mid, post)]
    with torch.inference_mode():
        logits = torch.stack([tiny.readout(x)[0] for x in streams])  # (S, T, V)
    probs = torch.softmax(logits.double(), -1)
    np.testing.assert_allclose(lens.target_prob, probs[..., 3].numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(lens.rival_prob, probs[..., 33].numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(lens.logit_diff, (logits[..., 3] - logits[..., 33]).numpy(), atol=1e-4)
    assert (lens.target_rank == (logits > logits[..., 3:4]).sum(-1).numpy()).all()
    assert (lens.rival_rank == (logits > logits[..., 33:34]).sum(-1).numpy()).all()
    top = torch.topk(probs, 4, -1)
    assert (lens.top_ids == top.indices.numpy()).all()
    np.testing.assert_allclose(lens.top_probs, top.values.numpy(), rtol=1e-5)


def test_patching_clean_into_corrupt_restores_all_and_corrupt_into_corrupt_nothing(tiny):
    clean, corrupt = C.forward(tiny, CLEAN, PAIR), C.forward(tiny, CORRUPT, PAIR)
    assert clean.value != corrupt.value
    every = torch.ones(len(CLEAN), dtype=torch.bool)
    values = P.patched(tiny, clean, corrupt, PAIR, "resid_pre", [(i, every) for i in range(3)])
    # The whole stream of one layer from the clean run: the rest of the forward is the clean run's
    # (batched in another shape: float32 rounding only).
    np.testing.assert_allclose(values, clean.value, atol=1e-4)
    same = P.residual_sweep(tiny, corrupt, corrupt, PAIR)
    np.testing.assert_allclose(same.values, corrupt.value, atol=1e-4)
    sweep = P.residual_sweep(tiny, clean, corrupt, PAIR)
    assert sweep.values.shape == (3, len(CLEAN))
    np.testing.assert_allclose(sweep.restored[0, 3], 1.0, atol=1e-4)  # the differing token, at layer 0
    assert (sweep.restored[:, :3] == 0).all()  # before the first difference: nothing to patch


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "head"])
def test_batched_patches_equal_hand_made_single_patches(tiny, site):
    clean, corrupt = C.forward(tiny, CLEAN, PAIR), C.forward(tiny, CORRUPT, PAIR)
    if site == "head":
        sweep = P.head_sweep(tiny, clean, corrupt, PAIR, batch=4)
        cells = [(i, h) for i in range(3) for h in range(3)]
        for (i, h), value in zip(cells, sweep.values.ravel(), strict=True):
            select = torch.zeros(1, 3, 3, len(CLEAN), dtype=torch.bool)
            select[0, i, h] = True
            hand = hand_patched(tiny, CORRUPT, Patch("head", select, clean.contexts))
            assert value == pytest.approx(hand, abs=1e-4)
        return
    sweep = P.residual_sweep(tiny, clean, corrupt, PAIR, site=site, batch=5)
    source = P._source(clean, site)
    for i in range(3):
        for p in range(len(CLEAN)):
            select = torch.zeros(1, 3, len(CLEAN), dtype=torch.bool)
            select[0, i, p] = True
            hand = hand_patched(tiny, CORRUPT, Patch(site, select, source))
            assert sweep.values[i, p] == pytest.approx(hand, abs=1e-4), (i, p)


def test_the_llms_patched_copies_start_after_the_shared_prefix_and_equal_single_patches(smollm2):
    """The real LLM's copies read the corrupted run's keys and values for the positions before the
    prompts' first difference from a KV cache; each still equals a whole-prompt single patch."""
    llm, tokenizer, _ = smollm2
    c = probes.ioi(probes.IOI_PRESET_TEMPLATES[0], "Mary", "John", "Tom")
    ids, corrupt_ids = tokenizer.encode(c.prompt).ids, tokenizer.encode(c.corrupt).ids
    pair = C.Pair(tokenizer.encode(" Mary").ids[0], tokenizer.encode(" John").ids[0])
    clean, corrupt = C.forward(llm, ids, pair), C.forward(llm, corrupt_ids, pair)
    start = P.first_difference(clean, corrupt)
    assert 0 < start < len(ids)
    t = len(ids)
    cells = [(layer, torch.arange(t) == p) for layer, p in ((0, start), (5, start), (20, t - 1), (3, 1))]
    values = P.patched(llm, clean, corrupt, pair, "resid_pre", cells, batch=2)
    assert values[3] == corrupt.value  # before the first difference: the corrupted run's own value
    source = P._source(clean, "resid_pre")
    for (layer, where), value in zip(cells[:3], values[:3], strict=True):
        select = torch.zeros(1, 30, t, dtype=torch.bool)
        select[0, layer] = where
        with torch.inference_mode():
            logits, _ = llm(torch.tensor([corrupt_ids]), patch=Patch("resid_pre", select, source))
        # Same weights and inputs; the cached prefix and the batch change float32 summation order only.
        assert value == pytest.approx(float(C.metric(logits, pair)[0]), abs=2e-3)
    assert values[0] == pytest.approx(clean.value, abs=2e-3)  # the name's token at layer 0: all restored


def test_attribution_patching_is_gradient_times_difference(tiny):
    """Against the formula computed independently: the gradient of the metric with respect to one
    layer's stream (or one head's context), taken by making that activation a leaf through a patch
    that writes the corrupted run's own values, times clean − corrupt."""
    clean, corrupt = C.forward(tiny, CLEAN, PAIR), C.forward(tiny, CORRUPT, PAIR)
    estimate = P.attribution_patching(tiny, clean, corrupt, PAIR)
    x = torch.tensor([CORRUPT])

    def grad(patch: Patch) -> torch.Tensor:
        with torch.enable_grad():
            return torch.autograd.grad(C.metric(tiny(x, patch=patch)[0], PAIR)[0], patch.source)[0]

    difference = P._source(clean, "resid_pre") - P._source(corrupt, "resid_pre")
    for layer in range(3):
        leaf = P._source(corrupt, "resid_pre").clone().requires_grad_(True)
        select = torch.zeros(1, 3, len(CLEAN), dtype=torch.bool)
        select[0, layer] = True
        expected = (grad(Patch("resid_pre", select, leaf))[layer] * difference[layer]).sum(-1)
        np.testing.assert_allclose(estimate.resid[layer], expected.numpy(), rtol=1e-4, atol=1e-5)
        leaf = corrupt.contexts.clone().requires_grad_(True)
        select = torch.zeros(1, 3, 3, len(CLEAN), dtype=torch.bool)
        select[0, layer] = True
        moved = clean.contexts - corrupt.contexts
        expected = (grad(Patch("head", select, leaf))[layer] * moved[layer]).sum((-1, -2))
        np.testing.assert_allclose(estimate.heads[layer], expected.numpy(), rtol=1e-4, atol=1e-5)
    exact = P.head_sweep(tiny, clean, corrupt, PAIR)
    corr, worst = P.agreement(estimate.heads, exact.values - exact.corrupt)
    assert -1 <= corr <= 1 and len(worst) == 5


def test_ablations_zero_mean_and_resample(tiny):
    from models.attention import Interventions

    heads = [(1, 0), (2, 2)]
    zero = P.head_ablation(tiny, CLEAN, PAIR, heads, "zero")
    with torch.inference_mode():
        off = Interventions(ablate=frozenset(("self", i, h) for i, h in heads))
        logits, _ = tiny(torch.tensor([CLEAN]), iv=off)
    assert zero == pytest.approx(float(C.metric(logits, PAIR)[0]), abs=1e-5)  # the core's own head switch
    reference = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 8, 7, 6, 5, 4, 3, 2]]
    mean = P.head_ablation(tiny, CLEAN, PAIR, heads, "mean", reference=reference)
    contexts = torch.cat([C.forward(tiny, r, PAIR).contexts for r in reference], 2).mean(2, keepdim=True)
    select = torch.zeros(1, 3, 3, len(CLEAN), dtype=torch.bool)
    for i, h in heads:
        select[0, i, h] = True
    assert mean == pytest.approx(hand_patched(tiny, CLEAN, Patch("head", select, contexts)), abs=1e-5)
    other = C.forward(tiny, CORRUPT, PAIR)
    resampled = P.head_ablation(tiny, CLEAN, PAIR, heads, "resample", resample=other)
    hand = hand_patched(tiny, CLEAN, Patch("head", select, other.contexts))
    assert resampled == pytest.approx(hand, abs=1e-5)
    assert len({round(v, 4) for v in (zero, mean, resampled)}) == 3
    with pytest.raises(ValueError, match="reference set"):
        P.head_ablation(tiny, CLEAN, PAIR, heads, "mean")


def test_value_weighted_attention_is_weight_times_the_moved_vectors_norm(smollm2):
    llm, tokenizer, _ = smollm2
    ids = tokenizer.encode("When Mary and John went to the store").ids
    weights, norms = C.value_weighted(llm, ids, layer=4)
    attn = llm.blocks[4].attn
    with torch.inference_mode():
        _, trace = llm(torch.tensor([ids]), return_trace=True)
        v = trace.layers[4].attention.heads.value[0]  # (3 K/V heads, T, 64)
        head = 7  # reads K/V head 7 // 3 = 2
        w_o = attn.w_o.weight[:, attn.head_slice(head)]  # (576, 64)
        moved = (v[2] @ w_o.T).norm(dim=-1)  # (T,)
    np.testing.assert_allclose(norms[head], weights[head] * moved.numpy()[None], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-5)


def test_bad_pairs_say_what_to_do(tiny):
    with pytest.raises(ValueError, match="different tokens"):
        C.Pair(3, 3)
    a, b = C.forward(tiny, CLEAN, PAIR), C.forward(tiny, CLEAN[:-1], PAIR)
    with pytest.raises(ValueError, match="same count"):
        P.residual_sweep(tiny, a, b, PAIR)
