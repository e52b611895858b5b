"""The attention core against references: SDPA, hand-written formulas, nn.MultiheadAttention."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.attention import SCORINGS, Attention, MultiHeadAttention, attend
from tests.helpers import run_together

B, TQ, TK, D = 3, 4, 6, 8


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(B, TQ, D, generator=g),
        torch.randn(B, TK, D, generator=g),
        torch.randn(B, TK, D, generator=g),
    )


def padding_mask(lengths):
    """(B, 1, TK) True on the first ``length`` keys of each batch row."""
    return (torch.arange(TK)[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(1)


@pytest.mark.parametrize("masked", [False, True])
def test_scaled_dot_matches_sdpa(qkv, masked):
    q, k, v = qkv
    mask = padding_mask([6, 3, 1]) if masked else None
    out, trace = Attention("scaled_dot", query_dim=D, key_dim=D)(
        query=q, key=k, value=v, mask=mask, return_trace=True
    )
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    assert trace.scale == pytest.approx(1 / math.sqrt(D))
    torch.testing.assert_close(trace.scaled_scores, trace.raw_scores / math.sqrt(D))


def test_each_scoring_matches_its_formula(qkv):
    q, k, v = qkv
    for scoring in SCORINGS:
        att = Attention(scoring, query_dim=D, key_dim=D, attn_dim=5)
        _, trace = att(query=q, key=k, value=v, return_trace=True)
        if scoring == "additive":
            ref = torch.einsum(
                "a,bqka->bqk", att.v.weight[0], torch.tanh(att.w_q(q)[:, :, None] + att.w_k(k)[:, None])
            )
        elif scoring == "general":
            ref = torch.einsum("bqd,de,bke->bqk", q, att.w.weight, k)
        else:
            ref = torch.einsum("bqd,bkd->bqk", q, k)
        torch.testing.assert_close(trace.raw_scores, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(trace.weights, torch.softmax(ref * trace.scale, -1))


def test_rows_sum_to_one_and_masked_keys_get_exactly_zero(qkv):
    q, k, v = qkv
    mask = padding_mask([6, 3, 1])
    _, trace = Attention("additive", query_dim=D, key_dim=D)(
        query=q, key=k, value=v, mask=mask, return_trace=True
    )
    torch.testing.assert_close(trace.weights.sum(-1), torch.ones(B, TQ))
    full = mask.expand(B, TQ, TK)
    assert (trace.weights[~full] == 0).all()
    assert torch.isinf(trace.masked_scores[~full]).all() and (trace.masked_scores[~full] < 0).all()
    assert torch.isfinite(trace.masked_scores[full]).all()


def test_fully_masked_row_gives_zeros_not_nan(qkv):
    q, k, v = qkv
    mask = torch.ones(B, TQ, TK, dtype=torch.bool)
    mask[0, 1] = False
    out, trace = Attention("dot", query_dim=D, key_dim=D)(
        query=q, key=k, value=v, mask=mask, return_trace=True
    )
    assert torch.isfinite(out).all()
    assert (trace.weights[0, 1] == 0).all() and (out[0, 1] == 0).all()


def test_trace_reproduces_output_and_temperature(qkv):
    q, k, v = qkv
    att = Attention("general", query_dim=D, key_dim=D)
    out, trace = att(query=q, key=k, value=v, temperature=2.5, return_trace=True)
    torch.testing.assert_close(trace.weights @ trace.value, out)
    torch.testing.assert_close(trace.weights, torch.softmax(trace.raw_scores / 2.5, -1))
    plain, none = att(query=q, key=k, value=v)
    assert none is None and not torch.allclose(plain, out)


def test_bad_arguments_say_how_to_fix(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="bool"):
        Attention("dot", query_dim=D, key_dim=D)(query=q, key=k, value=v, mask=torch.ones(B, 1, TK))
    with pytest.raises(ValueError, match="broadcast"):
        Attention("dot", query_dim=D, key_dim=D)(
            query=q, key=k, value=v, mask=torch.ones(B, 1, TK + 1, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        Attention("dot", query_dim=D, key_dim=D + 1)
    with pytest.raises(ValueError, match="temperature"):
        attend(query=q, key=k, value=v, raw_scores=q @ k.transpose(1, 2), temperature=0)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal"])
def test_multihead_matches_torch_multiheadattention(mask_kind):
    torch.manual_seed(0)
    d, h, t = 12, 3, 5
    ours = MultiHeadAttention(d, h).eval()
    ref = torch.nn.MultiheadAttention(d, h, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        ref.out_proj.weight.copy_(ours.w_o.weight)
        ref.out_proj.bias.copy_(ours.w_o.bias)
    x = torch.randn(2, t, d)
    kw, mask = {}, None
    if mask_kind == "padding":
        keep = torch.tensor([[True] * t, [True] * 3 + [False] * (t - 3)])  # (B, T)
        mask, kw = keep[:, None, None, :], {"key_padding_mask": ~keep}  # torch: True = ignore
    elif mask_kind == "causal":
        keep = torch.tril(torch.ones(t, t, dtype=torch.bool))
        mask, kw = keep, {"attn_mask": ~keep}
    ref_out, ref_w = ref(x, x, x, need_weights=True, average_attn_weights=False, **kw)
    fast, _ = ours(query=x, key=x, value=x, mask=mask)
    slow, trace = ours(query=x, key=x, value=x, mask=mask, return_trace=True)
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(slow, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trace.heads.weights, ref_w, atol=1e-6, rtol=1e-5)
    if mask_kind == "causal":
        upper = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        assert (trace.heads.weights[..., upper] == 0).all()
    # The trace recomposes the output: per-head context → concat → W_O.
    concat = trace.heads.output.transpose(1, 2).reshape(2, t, d)
    torch.testing.assert_close(concat, trace.concat)
    torch.testing.assert_close(ours.w_o(concat), slow)
    torch.testing.assert_close(trace.output, slow)


def test_multihead_interventions_per_call():
    torch.manual_seed(1)
    mha = MultiHeadAttention(8, 4).eval()
    x = torch.randn(2, 5, 8)
    base, _ = mha(query=x, key=x, value=x)
    off = torch.tensor([1.0, 0.0, 1.0, 1.0])
    ablated, trace = mha(query=x, key=x, value=x, head_mask=off, return_trace=True)
    assert (trace.concat[..., 2:4] == 0).all() and not torch.allclose(ablated, base)
    unscaled, tr = mha(query=x, key=x, value=x, scaled=False, return_trace=True)
    assert tr.heads.scale == 1.0
    torch.testing.assert_close(tr.heads.weights, torch.softmax(tr.heads.raw_scores, -1))
    again, _ = mha(query=x, key=x, value=x)  # nothing stuck on the module
    torch.testing.assert_close(again, base)


def test_threads_on_one_shared_model_each_get_their_own_trace():
    """Streamlit shares one cached model between sessions: traces must not mix."""
    torch.manual_seed(0)
    model = MultiHeadAttention(16, 4).eval()
    inputs = [torch.randn(1, 3 + i, 16) for i in range(8)]
    with torch.inference_mode():
        serial = [model(query=x, key=x, value=x, return_trace=True)[1].heads.weights for x in inputs]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        with torch.inference_mode():
            for _ in range(20):
                _, trace = model(query=inputs[i], key=inputs[i], value=inputs[i], return_trace=True)
                if i in results and not torch.equal(results[i], trace.heads.weights):
                    results[i] = None
                    return
                results.setdefault(i, trace.heads.weights)

    run_together(work, len(inputs))
    for i, ref in enumerate(serial):
        assert results[i] is not None and torch.equal(results[i], ref)


@pytest.mark.parametrize("temperature, scaled", [(1.0, True), (2.5, False)])
def test_weights_only_capture_keeps_the_same_weights_and_no_scores(temperature, scaled):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    mask = torch.rand(2, 1, 1, 9) > 0.2
    kw = dict(query=x, key=x, value=x, mask=mask, temperature=temperature, scaled=scaled, return_trace=True)
    with torch.inference_mode():
        out_full, full = mha(**kw)
        out_weights, weights_only = mha(**kw, capture="weights")
    assert torch.equal(full.heads.weights, weights_only.heads.weights)  # bit for bit, masks and all
    assert torch.equal(out_full, out_weights)
    assert weights_only.heads.raw_scores is None and weights_only.heads.masked_scores is None
