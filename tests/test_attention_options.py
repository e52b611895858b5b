"""The attention core's per-model options on a random layer, against the arithmetic written out by hand:
a head width of its own, a bias on W_O apart from Q/K/V, q/k RMSNorm before RoPE, a logit scale, soft-capped
logits and a sliding window — each traced, and the fused path (where the options allow it) equal to the
traced one."""

from __future__ import annotations

import math

import pytest
import torch

from models.attention import MultiHeadAttention
from models.kv_cache import KVCache
from models.masks import decoder_mask, window_band
from models.positions import rotary, rotate


def layer(**options) -> MultiHeadAttention:
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 4, n_kv_heads=2, **options)
    with torch.no_grad():
        for p in mha.parameters():
            p.add_(0.3 * torch.randn_like(p))  # norms away from 1, biases away from 0
        mha.w_q.weight.mul_(3)
        mha.w_k.weight.mul_(3)
    return mha


def by_hand(mha, x, mask, rot):
    """softmax(cap(scale · q·kᵀ)) over the allowed keys, q and k normed then rotated."""
    b, t, _ = x.shape
    q = mha.w_q(x).view(b, t, mha.n_heads, mha.d_head).transpose(1, 2)
    k = mha.w_k(x).view(b, t, mha.n_kv_heads, mha.d_head).transpose(1, 2)
    if mha.q_norm is not None:
        q, k = mha.q_norm(q), mha.k_norm(k)
    q, k = rotate(q, rot), rotate(k, rot).repeat_interleave(mha.groups, 1)
    s = q @ k.transpose(-1, -2) * mha.scale
    if mha.softcap is not None:
        s = mha.softcap * torch.tanh(s / mha.softcap)
    return torch.softmax(s.masked_fill(~mask, float("-inf")), -1)


@pytest.mark.parametrize(
    "options",
    [dict(d_head=8), dict(d_head=8, bias=True, out_bias=False), dict(d_head=10, qk_norm_eps=1e-6),
     dict(scale=0.05, softcap=2.0), dict(window=3), dict(d_head=8, qk_norm_eps=1e-5, softcap=1.5, window=4)],
)  # fmt: skip
def test_each_option_is_the_arithmetic_it_names(options):
    mha = layer(bias=options.pop("bias", False), **options)
    x, t = torch.randn(2, 9, 24), 9
    rot = rotary(torch.arange(t), dim=mha.d_head, base=100.0)
    causal = decoder_mask(t, 0)  # (1, 1, T, T)
    out, trace = mha(query=x, key=x, value=x, mask=causal, rotary=rot, return_trace=True)
    allowed = causal if mha.window is None else causal & window_band(t, t, mha.window)
    expected = by_hand(mha, x, allowed, rot)
    assert torch.allclose(trace.heads.weights, expected, atol=1e-6)
    assert torch.equal(trace.heads.mask.expand(2, 4, t, t), allowed.expand(2, 4, t, t))  # the window is in it
    assert trace.concat.shape == (2, t, 4 * mha.d_head) and mha.w_o.weight.shape == (24, 4 * mha.d_head)
    assert (mha.w_o.bias is None) == (not options.get("out_bias", mha.w_q.bias is not None))
    if mha.softcap is not None:
        assert trace.heads.softcap == mha.softcap and trace.heads.scaled_scores.abs().max() < mha.softcap
    fast, _ = mha(query=x, key=x, value=x, mask=causal, rotary=rot)
    assert torch.allclose(fast, out, atol=1e-5)
    if mha.q_norm is not None:  # RoPE turned the normed q: the trace keeps it before the turn
        q = mha.w_q(x).view(2, t, 4, mha.d_head).transpose(1, 2)
        assert torch.allclose(trace.rotary.query, mha.q_norm(q), atol=1e-6)


def test_a_window_through_the_kv_cache_reads_what_the_whole_text_reads():
    mha = layer(window=3, d_head=8)
    x = torch.randn(1, 8, 24)
    whole, trace = mha(query=x, key=x, value=x, mask=decoder_mask(8, 0), return_trace=True)
    cache = KVCache(layers=1, batch=1, kv_heads=2, d_head=8, capacity=8)
    rows = []
    for i in range(8):
        row = x[:, i : i + 1]
        out, step = mha(
            query=row, key=row, value=row, cache=cache.layer(0), mask=decoder_mask(1, i), return_trace=True
        )
        rows.append(out)
        assert torch.allclose(step.heads.weights[0, :, 0], trace.heads.weights[0, :, i, : i + 1], atol=1e-6)
        assert (step.heads.weights[0, :, 0, : max(0, i - 2)] == 0).all()  # keys 3 or more behind: hidden
    assert torch.allclose(torch.cat(rows, 1), whole, atol=1e-5)


def test_options_that_cannot_apply_say_so():
    with pytest.raises(ValueError, match="softcap must be > 0 and window ≥ 1"):
        MultiHeadAttention(24, 4, softcap=0.0)
    mha = layer(d_head=8)
    x = torch.randn(1, 5, 24)
    with pytest.raises(ValueError, match=r"projections off \(Q = K = x\) need h · d_head = d_model"):
        mha(query=x, key=x, value=x, project_qk=False)
    assert MultiHeadAttention(24, 4).scale == 1 / math.sqrt(6)
