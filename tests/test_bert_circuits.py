"""Activation patching on BERT (runners/bert_circuits.py) with the sentence-similarity metric, and the
BERT page's Patching tab."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families.bert import circuits as BC
from families.bert.runner import EXAMPLE_TEXT, _forward, default_folder, encode, load
from models.attention import NO_INTERVENTION
from models.patching import Patch
from tests.helpers import array, chart, open_app, open_view

CLEAN = EXAMPLE_TEXT[0]
CORRUPT = "The animal didn't cross the street because it was too wide."


@pytest.fixture(scope="module")
def loaded():
    return load(str(default_folder()))


@pytest.fixture(scope="module")
def swept(loaded):
    return BC.sweeps(loaded, CLEAN, CORRUPT, CLEAN)


def test_the_one_changed_piece_restores_everything_and_the_others_nothing(loaded, swept):
    resid, heads = swept
    n_layers, t = resid.values.shape
    assert (n_layers, t) == (loaded.config.num_hidden_layers, len(encode(loaded, CLEAN).ids))
    assert heads.values.shape == (n_layers, loaded.config.num_attention_heads)
    assert resid.clean == pytest.approx(1.0, abs=1e-6)  # the clean sentence against itself
    assert resid.corrupt < 0.99
    pieces = zip(encode(loaded, CLEAN).ids, encode(loaded, CORRUPT).ids, strict=True)
    changed = [p for p, (a, b) in enumerate(pieces) if a != b]
    assert len(changed) == 1
    # Entering layer 0 the stream is the embedding: the clean piece's there makes the clean sentence, run
    # in a batch of another size (float32 rounding: 1e-4 of the gap).
    assert resid.restored[0, changed[0]] == pytest.approx(1.0, abs=1e-4)
    others = [p for p in range(t) if p != changed[0]]
    np.testing.assert_allclose(resid.restored[0, others], 0.0, atol=1e-4)  # the same values written back


def test_a_batched_cell_equals_the_same_patch_alone(loaded, swept):
    resid, heads = swept
    out, _ = _forward(loaded, encode(loaded, CLEAN), NO_INTERVENTION, True)
    reference = torch.from_numpy(_forward(loaded, encode(loaded, CLEAN), NO_INTERVENTION, False)[1])
    corrupt = encode(loaded, CORRUPT)
    n_layers, t = resid.values.shape
    stream = torch.stack([h[0] for h in out.hidden_states[:n_layers]])
    select = torch.zeros(1, n_layers, t, dtype=torch.bool)
    select[0, 3, t - 3] = True
    alone = BC._similarities(loaded, corrupt, reference, Patch("resid_pre", select, stream), 1)
    assert float(alone[0]) == pytest.approx(resid.values[3, t - 3], abs=1e-5)  # batch shapes round apart
    n_heads = heads.values.shape[1]
    contexts = torch.stack([a.concat[0].view(t, n_heads, -1).transpose(0, 1) for a in out.attentions])
    select = torch.zeros(1, n_layers, n_heads, t, dtype=torch.bool)
    select[0, 5, 1] = True
    alone = BC._similarities(loaded, corrupt, reference, Patch("head", select, contexts), 1)
    assert float(alone[0]) == pytest.approx(heads.values[5, 1], abs=1e-5)


def test_another_piece_count_is_refused_with_the_fix(loaded):
    with pytest.raises(ValueError, match="same count"):
        BC.sweeps(loaded, CLEAN, "The animal didn't cross the street.", CLEAN)


def test_the_page_shows_the_sweeps_and_explains_bad_input(loaded):
    app = open_view(open_app("families/bert/page.py"), "Patching")
    reference = app.text_input(key="b").value or CLEAN
    resid, heads = BC.sweeps(loaded, CLEAN, CORRUPT, reference)
    for key, sweep in (("bert_patch_positions", resid), ("bert_patch_heads", heads)):
        (heat,) = chart(app, key)["data"]
        np.testing.assert_allclose(array(heat["z"]).reshape(sweep.restored.shape), sweep.restored, atol=1e-6)
    assert f"{resid.clean:.4f}" in app.markdown[-1].value
    (box,) = [t for t in app.text_input if "bert_patch_corrupt" in t.key]
    box.set_value("A much shorter sentence.").run()
    assert not app.exception
    assert any("same count" in i.value for i in app.info)
