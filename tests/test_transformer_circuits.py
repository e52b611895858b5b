"""Circuits on the encoder–decoder (runners/transformer_circuits.py) and the transformer lab's Circuits
tab: the logit lens ends at the model's output, direct effects sum to it, patching restores what it
should, batched patches equal hand-made ones, and the page shows the runners' numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.circuits import Pair, metric
from families.transformer import circuits as TC
from families.transformer.runner import run
from models.patching import Patch
from tasks import TASKS
from tasks.common import BOS
from tests.helpers import array, chart, open_app, open_view, shipped
from views.inputs import nearest_source
from views.serving import held_out_examples

NAME = "transformer-dates-h4"


@pytest.fixture(scope="module")
def question():
    """The page's default question: the first held-out date, its nearest same-length neighbour as the
    corrupted source, the first output step where their outputs differ, the two outputs' tokens there."""
    model, _, sv, tv = shipped(NAME)
    task = TASKS["dates"]
    src = held_out_examples("dates")[0].src
    corrupt = nearest_source(task, src)
    clean_out = run(model, task, src, sv, tv).output
    corrupt_out = run(model, task, corrupt, sv, tv).output
    step = next(t for t, (a, b) in enumerate(zip(clean_out, corrupt_out, strict=False)) if a != b)
    prefix = tuple(tv.encode((BOS, *clean_out[:step])))
    pair = Pair(tv.index[clean_out[step]], tv.index[corrupt_out[step]])
    return model, tuple(sv.encode(src)), tuple(sv.encode(corrupt)), prefix, pair


def test_the_lens_ends_at_the_output_and_direct_effects_sum_to_it(question):
    model, src, _, prefix, pair = question
    logits, _ = TC.forward(model, src, prefix)
    lens = TC.logit_lens(model, src, prefix, pair)
    assert lens.stages == ("embedding", "L0 self", "L0 cross", "L0 ffn", "L1 self", "L1 cross", "L1 ffn")
    np.testing.assert_array_equal(lens.last_logits, logits[0].numpy())  # the same computation: bit for bit
    assert lens.target_rank[-1, -1] == 0  # the target is the greedy output there
    np.testing.assert_allclose(lens.logit_diff[-1, -1], float(metric(logits, pair)[0]), rtol=0, atol=0)
    direct = TC.direct_attribution(model, src, prefix, pair)
    assert direct.heads.shape == (4, 4)  # L0 self, L0 cross, L1 self, L1 cross × 4 heads
    assert direct.total == pytest.approx(float(metric(logits, pair)[0]), abs=0)
    # The same sum in another order (float32): within 1e-3.
    assert abs(direct.effects.sum() - direct.total) < 1e-3
    assert {"token embedding", "positional encoding", "final norm bias", "unembedding bias"} <= set(
        direct.names
    )


def test_direct_attribution_refuses_a_post_norm_model(question):
    _, src, _, prefix, pair = question
    post, *_ = shipped("transformer-dates-h4-post")
    with pytest.raises(ValueError, match="pre-norm"):
        TC.direct_attribution(post, src, prefix, pair)
    lens = TC.logit_lens(post, src, prefix, pair)  # the lens reads a post-norm stream as it is
    np.testing.assert_array_equal(lens.last_logits, TC.forward(post, src, prefix)[0][0].numpy())


def test_patching_the_differing_token_restores_all_and_a_shared_one_nothing(question):
    model, src, corrupt, prefix, pair = question
    sweep = TC.source_sweep(model, src, corrupt, prefix, pair)
    assert sweep.values.shape == (model.cfg.n_layers, len(src))
    differ = [p for p, (a, b) in enumerate(zip(src, corrupt, strict=True)) if a != b]
    # A one-token patch source: the clean source with only the first differing token corrupted.
    one = tuple(c if p == differ[0] else s for p, (s, c) in enumerate(zip(src, corrupt, strict=True)))
    single = TC.source_sweep(model, src, one, prefix, pair)
    # Entering layer 0 the stream is the embedding: writing the clean token's there makes the clean run,
    # computed in a batch of another size (float32 rounding: 1e-4 of the gap).
    assert single.restored[0, differ[0]] == pytest.approx(1.0, abs=1e-4)
    same = [p for p in range(len(src)) if p != differ[0]]
    np.testing.assert_allclose(single.restored[0, same], 0.0, atol=1e-4)  # the same values written back


def test_batched_patches_equal_hand_made_single_ones(question):
    model, src, corrupt, prefix, pair = question
    sources, heads = (f(model, src, corrupt, prefix, pair) for f in (TC.source_sweep, TC.head_sweep))
    _, clean = TC.forward(model, src, prefix)
    n_layers, n_heads, s = model.cfg.n_layers, model.cfg.n_heads, len(src)

    def alone(patches) -> float:
        with torch.inference_mode():
            logits, _ = model(
                torch.tensor([corrupt]), torch.tensor([s]), torch.tensor([prefix]), patches=patches
            )
        return float(metric(logits, pair)[0])

    stream = torch.stack([layer.self_attention.x_in[0] for layer in clean.encoder_layers])  # (L, S, d)
    for layer, position in ((0, 1), (1, s - 1)):
        select = torch.zeros(1, n_layers, s, dtype=torch.bool)
        select[0, layer, position] = True
        # One copy against 2·S copies in one batch: float32 rounding differs with the batch shape.
        assert alone({"encoder": Patch("resid_pre", select, stream)}) == pytest.approx(
            sources.values[layer, position], abs=1e-4
        )
    traced = clean.cross[1].concat[0]  # (T, d)
    contexts = traced.view(len(prefix), n_heads, -1).transpose(0, 1)  # (h, T, d_head)
    select = torch.zeros(1, n_layers, n_heads, len(prefix), dtype=torch.bool)
    select[0, 1, 2] = True
    source = torch.zeros(n_layers, n_heads, len(prefix), contexts.shape[-1])
    source[1] = contexts
    row = 2 * n_layers + 1  # rows: encoder L0, L1, decoder self L0, L1, cross L0, L1
    assert alone({"cross": Patch("head", select, source)}) == pytest.approx(heads.values[row, 2], abs=1e-4)
    # No patch: the corrupted run (computed there with a trace, whose explicit softmax rounds apart).
    assert alone(None) == pytest.approx(heads.corrupt, abs=1e-4)


def test_a_different_length_is_refused_with_the_fix(question):
    model, src, _, prefix, pair = question
    with pytest.raises(ValueError, match="same count"):
        TC.source_sweep(model, src, src[:-1], prefix, pair)


def test_the_page_shows_the_runners_numbers_and_explains_bad_input(question):
    model, src, corrupt, prefix, pair = question
    app = open_view(open_app("families/transformer/page.py"), "Circuits")
    assert app.selectbox(key=[s.key for s in app.selectbox if "circ_target" in s.key][0]).value == pair.target
    lens = TC.logit_lens(model, src, prefix, pair)
    (heat,) = chart(app, "tf_circ_lens_grid")["data"]
    np.testing.assert_array_equal(array(heat["z"]).reshape(lens.target_prob.shape), lens.target_prob)
    app.radio(key="tf_circ_section").set_value("Direct attribution").run()
    direct = TC.direct_attribution(model, src, prefix, pair)
    (heat,) = chart(app, "tf_circ_dla")["data"]
    np.testing.assert_array_equal(
        array(heat["z"]).reshape(direct.heads.shape), direct.heads.astype(np.float32)
    )
    assert f"{direct.total:+.4f}" in app.caption[-1].value
    app.radio(key="tf_circ_section").set_value("Patching").run()
    sweep = TC.source_sweep(model, src, corrupt, prefix, pair)
    (heat,) = chart(app, "tf_circ_positions")["data"]
    np.testing.assert_allclose(array(heat["z"]).reshape(sweep.restored.shape), sweep.restored, atol=1e-6)
    said = f"Logit difference: **{sweep.clean:+.3f}** from the clean source, **{sweep.corrupt:+.3f}** from"
    assert any(said in m.value for m in app.markdown)
    (box,) = [t for t in app.text_input if "circ_corrupt" in t.key]
    box.set_value("".join(held_out_examples("dates")[0].src)[:-1]).run()  # one character short
    assert not app.exception
    assert any("same token count" in i.value for i in app.info)
    (box,) = [t for t in app.text_input if "circ_corrupt" in t.key]  # the page's widgets of this run
    box.set_value("   ").run()
    assert not app.exception and any("Type a source text" in i.value for i in app.info)
