"""The ViT page's runner and importance measure: a batch of copies each with its own hidden tokens is the
same as hiding them one call at a time; a run holds the model's own maps, norms and rollout (all layers at
224, one at 448); the high-norm measure finds a planted outlier and its share of [CLS]'s attention;
importance is the cosine drop of the very intervention the page offers, and gradient × input the
first-order estimate it says it is.

Small pictures keep this fast: the network takes any side that is a multiple of 14 (56 px: 4 × 4 patches).
Where two computations differ only by batch shape (one picture vs a batch of copies), another batch takes
other kernel paths and rounds differently: the bound is 1e-4 on the [CLS] embedding and the saliency map
(measured up to 1.3e-5 on embedding entries of size ~1–10) and 1e-5 on a cosine drop (scale-free).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from analysis.stats import rollout
from families.vit import importance, runner
from families.vit.inputs import gallery_picture
from families.vit.preprocess import letterbox, normalise
from models.attention import Interventions
from models.dinov2 import CLS

BATCH_ATOL = 1e-4  # embedding entries and saliency values, batch vs single (module docstring)
COSINE_ATOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return runner.load().model


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """scikit-learn's flower as a 56 × 56 square: 16 patches, 17 tokens."""
    return letterbox(gallery_picture("flower"), 56)[0]


def test_hiding_per_row_is_hiding_by_intervention(model, small):
    pixels = normalise(small[None])
    rows = torch.zeros(3, 17, dtype=torch.bool)
    rows[0, 5], rows[1, [3, 9]] = True, True  # row 2: nothing hidden
    with torch.inference_mode():
        batch, _ = model(pixels.expand(3, -1, -1, -1), hidden_per_row=rows)
        for i, hidden in enumerate(((5,), (3, 9), ())):
            one, _ = model(pixels, iv=Interventions(hidden_keys=hidden))
            torch.testing.assert_close(batch.cls[i], one.cls[0], rtol=0, atol=BATCH_ATOL)
            torch.testing.assert_close(batch.saliency[i], one.saliency[0], rtol=0, atol=BATCH_ATOL)
        plain, _ = model(pixels)
    assert (one.cls - plain.cls).abs().max() == 0  # nothing hidden is the plain forward, exactly


def test_a_run_holds_the_models_own_numbers(model, small):
    found = runner.run(model, small)
    with torch.inference_mode():
        out, trace = model(normalise(small[None]), return_trace=True)
    np.testing.assert_array_equal(found.weights, trace.weights[0].numpy())  # the same forward
    np.testing.assert_array_equal(found.norms, trace.norms[0].numpy())
    np.testing.assert_array_equal(found.cls, out.cls[0].numpy())
    assert found.layers == tuple(range(12)) and found.grid == (4, 4)
    assert found.weights.shape == (12, 6, 17, 17)
    np.testing.assert_array_equal(found.rollout, rollout(found.weights)[:, CLS])
    assert found.maps["self"].queries[:3] == ("[CLS]", "r0c0", "r0c1")
    one = runner.run(model, small, layers=(5,))
    assert one.layers == (5,) and one.rollout is None and one.kept(5) == 0 and one.kept(11) is None
    # Untraced layers run the fused attention kernel, traced ones the explicit softmax: the stream entering
    # layer 5 rounds differently (measured ~3e-6 on its weights), the map is the same to float precision.
    np.testing.assert_allclose(one.weights[0], found.weights[5], rtol=0, atol=1e-5)


def test_the_high_norm_measure_finds_a_planted_outlier(model, small):
    found = runner.run(model, small)
    clean = runner.high_norm(found)
    assert not clean.outliers.any()  # DINOv2-small has none (the card: ≤ 2.1× on 200 scenes)
    patches = found.norms[:, 1:]
    np.testing.assert_allclose(clean.ratios, patches / np.median(patches, 1, keepdims=True))
    norms = found.norms.copy()
    norms[3, 1 + 7] *= 10  # patch 7 of layer 3, ten times its norm
    planted = runner.high_norm(replace(found, norms=norms))
    assert planted.outliers.sum() == 1 and planted.outliers[3, 7]
    assert planted.share_next[3] == pytest.approx(found.weights[4, :, CLS, 1 + 7].mean(), rel=1e-6)
    assert runner.largest_norm_ratio(replace(found, norms=norms)).endswith("(L3)")


def test_importance_is_the_cosine_drop_of_hiding_and_the_measures_are_the_maps(model, small):
    measured = importance.measure(model, small, block=1)
    found = runner.run(model, small)
    assert measured.positions == found.maps["self"].keys[1:]
    for j in (0, 6, 15):
        hidden = runner.output(model, small, Interventions(hidden_keys=(1 + j,)))
        drop = 1 - runner.compare(hidden, found).cosine
        assert measured.importance[j] == pytest.approx(drop, abs=COSINE_ATOL)
    np.testing.assert_array_equal(measured.weights, found.weights[:, :, CLS, 1:])
    np.testing.assert_allclose(measured.rollout, found.rollout[:, 1:], rtol=1e-6)
    blocks = importance.measure(model, small, block=2)  # 2 × 2 patches: 4 positions, each a sum of 4
    assert blocks.positions == ("r0-1 c0-1", "r0-1 c2-3", "r2-3 c0-1", "r2-3 c2-3")
    top_left = [0, 1, 4, 5]
    np.testing.assert_allclose(blocks.weights[..., 0], measured.weights[..., top_left].sum(-1), rtol=1e-5)
    np.testing.assert_allclose(blocks.grad_x_input[0], measured.grad_x_input[top_left].sum(), rtol=1e-4)


def test_gradient_x_input_is_the_first_order_change_along_the_picture(model, small):
    """Σ_j gradient × input = x · ∇s(x) ≈ (s(x) − s((1 − ε) x)) / ε for s = ⟨[CLS](x), ĉ⟩ (finite
    difference: within 1% for ε = 1e-3, float32 and a smooth network)."""
    measured = importance.measure(model, small, block=1)
    pixels = normalise(small[None])
    with torch.inference_mode():
        base = model(pixels)[0].cls[0]
        unit, eps = base / base.norm(), 1e-3
        shrunk = model(pixels * (1 - eps))[0].cls[0]
    estimate = float((base - shrunk) @ unit) / eps
    assert measured.grad_x_input.sum() == pytest.approx(estimate, rel=1e-2)
