"""The whole transformer block, step by step: sublayer traces, the walkthrough's recompositions, and
the page stepping through them in the norm placement's order."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from families.transformer.runner import run
from families.transformer.walkthrough import block_steps
from families.transformer.walkthrough_view import POST_STEPS, PRE_STEPS
from models.attention import Interventions
from models.transformer import BLOCKS
from tasks import TASKS
from tests.helpers import open_app, open_view, shipped
from views.serving import held_out_examples

VARIANTS = ("h4", "h4-post")


def model_and_run(variant: str):
    model, _, sv, tv = shipped(f"transformer-dates-{variant}")
    return model, run(model, TASKS["dates"], held_out_examples("dates")[3].src, sv, tv)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sublayer_traces_chain_into_the_models_own_tensors(variant):
    model, r = model_and_run(variant)
    for stack in ("encoder", "decoder"):
        layers = r.layers[stack]
        for before, after in zip(layers, layers[1:], strict=False):
            np.testing.assert_array_equal(before.feed_forward.x_out, after.self_attention.x_in)
        for steps in layers:
            subs = [
                s for s in (steps.self_attention, steps.cross_attention, steps.feed_forward) if s is not None
            ]
            for a, b in zip(subs, subs[1:], strict=False):
                np.testing.assert_array_equal(a.x_out, b.x_in)
    # The encoder's last stream, through the final norm, is the memory the decoder read.
    source_vocab = shipped(f"transformer-dates-{variant}")[2]
    ids = torch.tensor([source_vocab.encode(r.source)])
    with torch.inference_mode():
        memory, *_ = model.encode(ids, torch.tensor([len(r.source)]), Interventions(), False)
    last = torch.from_numpy(np.array(r.layers["encoder"][-1].feed_forward.x_out))[None]
    np.testing.assert_allclose(model.enc_norm(last).detach().numpy()[0], memory[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_step_recomposes_the_layer_within_1e_5(variant):
    model, r = model_and_run(variant)
    for block in BLOCKS:
        for layer in range(model.cfg.n_layers):
            for query in (0, len(r.maps[block].queries) - 1):
                steps = block_steps(model, r, block, layer, query)
                assert steps.pre_norm == (variant == "h4")
                assert steps.layer_gap < 1e-5
                assert max(steps.attention_norm.gap, steps.ffn_norm.gap) < 1e-5
                assert max(steps.ffn.hidden_gap, steps.ffn.output_gap) < 1e-5
                assert max(steps.residual_gaps) < 1e-5
                # The layer norm's numbers against torch's own layer norm on the same row.
                norm = steps.attention_norm
                module = (model.encoder if block == "encoder" else model.decoder)[layer]
                ln = module.norms[1 if block == "cross" else 0]
                reference = F.layer_norm(
                    torch.from_numpy(np.array(norm.x)), (len(norm.x),), ln.weight, ln.bias, ln.eps
                )
                np.testing.assert_allclose(norm.output, reference.detach().numpy(), atol=1e-5)
                assert norm.mean == pytest.approx(float(np.mean(norm.x, dtype=np.float64)), abs=1e-6)
                # ReLU zeros: the share shown is the hidden units at exactly 0.
                assert steps.ffn.share_zero == pytest.approx(
                    float((steps.ffn.pre_activation <= 0).mean()), abs=0.02
                )


def test_residual_stream_norms_are_the_streams_own():
    model, r = model_and_run("h4")
    steps = block_steps(model, r, "encoder", 0, 0)
    layers = r.layers["encoder"]
    assert steps.stream_labels[0] == "L0 before self-attention" and steps.stream_labels[-1] == "L1 output"
    np.testing.assert_allclose(
        steps.stream_norms[0], np.linalg.norm(layers[0].self_attention.x_in, axis=-1), rtol=1e-6
    )
    np.testing.assert_allclose(
        steps.stream_norms[-1], np.linalg.norm(layers[-1].feed_forward.x_out, axis=-1), rtol=1e-6
    )


@pytest.mark.parametrize(("variant", "steps"), [("h4", PRE_STEPS), ("h4-post", POST_STEPS)])
def test_the_walkthrough_steps_through_the_block_in_the_norms_order(variant, steps):
    app = open_view(open_app("families/transformer/page.py", model=variant), "Walkthrough")
    norm = "pre" if variant == "h4" else "post"
    (radio,) = [r for r in app.radio if r.key == f"tf_wt_step_{norm}"]
    assert tuple(radio.options) == tuple(f"{i + 1} · {s}" for i, s in enumerate(steps))
    checks = set()
    for block in ("encoder", "cross"):
        app.session_state["tf_wt_block"] = block
        for step in steps:
            app.session_state[f"tf_wt_step_{norm}"] = step
            app.run()
            assert not app.exception and not app.error, (step, [e.value for e in app.error])
            checks |= {s.value.split(" (max")[0] for s in app.success}
    assert any("layer's output recomposed from its input" in c for c in checks)
    assert any("γ x̂ + β recomputed" in c for c in checks)
    assert any("W₂h + b₂ recomputed" in c for c in checks)
    # Pre-norm: the attention reads LN(x), so the page's first step is that layer norm; post-norm: Q, K, V.
    assert radio.options[0] == ("1 · Layer norm" if variant == "h4" else "1 · Q, K, V")
