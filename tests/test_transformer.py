"""The transformer's traces are its own computation; interventions act per call, only where asked."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from analysis.stats import entropy
from families.transformer.runner import exact_match, run
from models.attention import Interventions
from models.positions import sinusoids
from models.transformer import Transformer, TransformerConfig
from tasks import TASKS
from tasks.common import Example, Vocab
from tests.helpers import run_together

TASK = TASKS["dates"]
BASE = Interventions()


@pytest.fixture(scope="module")
def vocabs():
    ex = TASK.generate(300, 0)
    return Vocab.build(e.src for e in ex), Vocab.build(e.tgt for e in ex)


def tiny(vocabs, norm="pre", heads=2, seed=0):
    torch.manual_seed(seed)
    sv, tv = vocabs
    cfg = TransformerConfig(len(sv), len(tv), d_model=8, n_heads=heads, d_ff=16, norm=norm)
    return Transformer(cfg).eval()


def tokens(text):
    return TASK.tokenize(text)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_traced_and_fused_paths_agree_and_recompose(vocabs, norm):
    model, (sv, tv) = tiny(vocabs, norm), vocabs
    src = torch.tensor([sv.encode(tokens("21 nov 2026"))])
    tgt = torch.tensor([[1] + tv.encode(tuple("2026-11-2"))])
    with torch.inference_mode():
        fast, none = model(src, torch.tensor([src.shape[1]]), tgt)
        slow, trace = model(src, torch.tensor([src.shape[1]]), tgt, return_trace=True)
    assert none is None
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    for block in ("encoder", "decoder_self", "cross"):
        for t in trace.block(block):
            a = t.heads
            torch.testing.assert_close(a.weights.sum(-1), torch.ones_like(a.weights.sum(-1)))
            torch.testing.assert_close(a.weights @ a.value, a.output)
            b, h, tq, dh = a.output.shape
            torch.testing.assert_close(a.output.transpose(1, 2).reshape(b, tq, h * dh), t.concat)
    with torch.inference_mode():
        recomposed = model.decoder[0].self_attn.w_o(trace.decoder_self[0].concat)
    torch.testing.assert_close(recomposed, trace.decoder_self[0].output)
    assert trace.encoder[0].heads.scale == pytest.approx(1 / math.sqrt(4))


def test_causal_mask_and_its_toggle(vocabs):
    model, (sv, tv) = tiny(vocabs), vocabs
    src, ref = tokens("3/5/51"), tuple("1951-03-05")
    on = run(model, TASK, src, sv, tv, reference=ref)
    off = run(model, TASK, src, sv, tv, replace(BASE, causal=False), reference=ref)
    upper = np.triu(np.ones((len(on.output), len(on.output)), dtype=bool), 1)
    for layer in on.blocks["decoder_self"]:
        assert (layer.weights[:, upper] == 0).all()
        assert np.isinf(layer.masked_scores[:, upper]).all()
    assert (off.blocks["decoder_self"][0].weights[:, upper] > 0).all()
    assert not np.allclose(on.token_log_probs, off.token_log_probs)


def test_padding_mask_keeps_a_padded_sentence_unchanged(vocabs):
    model, (sv, tv) = tiny(vocabs), vocabs
    src = tokens("3/5/51")
    alone = run(model, TASK, src, sv, tv)
    padded = run(model, TASK, src, sv, tv, pad_to=20)
    leaky = run(model, TASK, src, sv, tv, replace(BASE, padding=False), pad_to=20)
    assert padded.output == alone.output
    np.testing.assert_allclose(
        padded.blocks["cross"][1].weights[..., : len(src)], alone.blocks["cross"][1].weights, atol=1e-5
    )
    assert (padded.blocks["encoder"][0].weights[..., len(src) :] == 0).all()
    assert (leaky.blocks["encoder"][0].weights[..., len(src) :] > 0).all()
    assert padded.source[-1] == "<pad>" and len(padded.source) == 20


def test_hidden_keys_scaling_temperature_positional_ablation(vocabs):
    model, (sv, tv) = tiny(vocabs, heads=4), vocabs
    src = tokens("nov 21 2026")
    base = run(model, TASK, src, sv, tv)
    hidden = run(model, TASK, src, sv, tv, replace(BASE, hidden_keys=(0, 4)))
    for block in ("encoder", "cross"):
        assert (hidden.blocks[block][1].weights[..., [0, 4]] == 0).all()
    unscaled = run(model, TASK, src, sv, tv, replace(BASE, scaled=False))
    enc = unscaled.blocks["encoder"][0]
    assert enc.scale == 1.0
    np.testing.assert_array_equal(enc.scaled_scores, enc.raw_scores)
    scaled = base.blocks["encoder"][0]
    np.testing.assert_allclose(scaled.scaled_scores, scaled.raw_scores * scaled.scale, rtol=1e-6)
    e = np.exp(enc.raw_scores - enc.raw_scores.max(-1, keepdims=True))
    np.testing.assert_allclose(enc.weights, e / e.sum(-1, keepdims=True), atol=1e-6)
    hot = run(model, TASK, src, sv, tv, replace(BASE, temperature=5.0))
    hot_h, base_h = (entropy(r.blocks["encoder"][0].weights).mean() for r in (hot, base))
    assert hot_h > base_h
    no_pe = run(model, TASK, src, sv, tv, replace(BASE, positional=False))
    assert not np.allclose(no_pe.blocks["encoder"][0].x_query, base.blocks["encoder"][0].x_query)
    ablated = run(model, TASK, src, sv, tv, replace(BASE, ablate=frozenset({("cross", 1, 2)})))
    cross = ablated.blocks["cross"][1]
    assert (cross.head_mask == [1, 1, 0, 1]).all() and (cross.concat[:, 4:6] == 0).all()
    assert base.blocks["cross"][1].head_mask is None
    again = run(model, TASK, src, sv, tv)  # nothing stuck on the shared model
    np.testing.assert_array_equal(again.blocks["cross"][1].weights, base.blocks["cross"][1].weights)


def test_sinusoids_formula():
    pe = sinusoids(50, 16)
    assert pe[7, 4] == pytest.approx(math.sin(7 / 10000 ** (4 / 16)), abs=1e-6)
    assert pe[7, 5] == pytest.approx(math.cos(7 / 10000 ** (4 / 16)), abs=1e-6)


def test_greedy_trace_is_the_pass_that_chose_the_tokens(vocabs):
    model, (sv, tv) = tiny(vocabs, seed=3), vocabs
    r = run(model, TASK, tokens("the 4th of july, 1976"), sv, tv)
    assert r.predictions == r.output  # argmax at every position is the emitted token
    assert r.inputs[0] == "<s>" and r.inputs[1:] == r.output[:-1]


def test_bad_config_says_how_to_fix():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(10, 10, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="pre' or 'post"):
        TransformerConfig(10, 10, norm="middle")


def test_sessions_with_different_interventions_do_not_mix(vocabs):
    model, (sv, tv) = tiny(vocabs, heads=4), vocabs
    src = tokens("saturday, 21 november 2026")
    settings = [
        BASE,
        replace(BASE, scaled=False),
        replace(BASE, temperature=3.0),
        replace(BASE, positional=False),
        replace(BASE, ablate=frozenset({("encoder", 0, 1)})),
        replace(BASE, hidden_keys=(2, 3)),
        replace(BASE, padding=False),
        BASE,
    ]
    serial = [run(model, TASK, src, sv, tv, iv).blocks["cross"][1].weights for iv in settings]
    got = [None] * len(settings)

    def work(i):
        for _ in range(5):
            w = run(model, TASK, src, sv, tv, settings[i]).blocks["cross"][1].weights
            if got[i] is not None and not np.array_equal(got[i], w):
                got[i] = "mixed"
                return
            got[i] = w

    run_together(work, len(settings))
    for g, s in zip(got, serial, strict=True):
        assert not isinstance(g, str) and np.array_equal(g, s)


def test_exact_match_counts(vocabs):
    """Half the targets are the model's own greedy outputs, half the true dates an untrained model
    gets wrong: exact match must be exactly one half, batched and padded as on the page."""
    model, (sv, tv) = tiny(vocabs), vocabs
    examples = TASK.generate(20, 1)
    own = []
    for ex in examples[:10]:
        rows = run(model, TASK, ex.src, sv, tv).output
        own.append(Example(ex.src, tuple(r for r in rows if r != "</s>"), frozenset(), frozenset()))
    assert all(run(model, TASK, ex.src, sv, tv).text != "".join(ex.tgt) for ex in examples[10:])
    assert exact_match(model, TASK, own + examples[10:], sv, tv) == 0.5
