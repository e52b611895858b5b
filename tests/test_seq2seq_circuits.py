"""Causal alignment on the seq2seq models (runners/seq2seq_circuits.py): activation patching of one
source annotation at a time, beside attention, and the page's tab."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families.seq2seq.circuits import MIN_GAP, causal_alignment
from families.seq2seq.runner import run
from models.checkpoints import load_checkpoint
from models.patching import Patch
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from tasks import TASKS
from tasks.common import BOS_ID
from tests.helpers import array, chart, open_app, open_view, sent_maps
from views.inputs import nearest_source
from views.serving import held_out_examples

TASK = TASKS["dates"]


def question(variant: str):
    """The page's default: the first held-out date, its nearest same-length neighbour, the clean output."""
    model, _, sv, tv = load_checkpoint(f"seq2seq-dates-{variant}", Seq2Seq, Seq2SeqConfig)
    src = held_out_examples("dates")[0].src
    corrupt = nearest_source(TASK, src)
    (clean,) = run(model, TASK, src, sv, tv)
    return model, sv.encode(src), sv.encode(corrupt), tv.encode(clean.output), clean


def test_ends_are_the_teacher_forced_runs_and_a_cell_is_its_patch_alone():
    model, src, corrupt, output, clean = question("additive")
    found = causal_alignment(model, src, corrupt, output)
    assert found.values.shape == (len(output), len(src))
    # The clean end is the greedy run's own log p per token, recomputed teacher-forced (float32 rounding).
    np.testing.assert_allclose(found.clean, clean.token_log_probs, atol=1e-5)
    np.testing.assert_allclose(found.attention, clean.weights, atol=1e-6)
    assert np.abs(found.clean - found.corrupt).max() > MIN_GAP  # the pair changes some step
    device = next(model.parameters()).device
    memory = model.encode(torch.tensor([src]), torch.tensor([len(src)])).memory
    position = next(i for i, (a, b) in enumerate(zip(src, corrupt, strict=True)) if a != b)
    select = torch.zeros(1, 1, len(src), dtype=torch.bool)
    select[0, 0, position] = True
    with torch.inference_mode():
        patch = Patch("memory", select, memory)
        tgt_in = torch.tensor([[BOS_ID, *output[:-1]]])
        logits, _ = model(
            torch.tensor([corrupt], device=device), torch.tensor([len(src)]), tgt_in, patch=patch
        )
    alone = torch.log_softmax(logits[0], -1)[torch.arange(len(output)), torch.tensor(output)]
    # One copy against S copies in one batch: float32 rounding differs with the batch shape.
    np.testing.assert_allclose(alone.numpy(), found.values[:, position], atol=1e-5)
    # On the dates model the changed characters carry their output digits: some step is mostly restored there.
    assert np.nanmax(found.restored[:, position]) > 0.5


def test_the_fixed_vector_model_reads_no_annotation():
    model, src, corrupt, output, _ = question("none")
    found = causal_alignment(model, src, corrupt, output)
    assert found.attention is None
    np.testing.assert_allclose(found.values, np.repeat(found.corrupt[:, None], len(src), 1), atol=1e-5)


def test_another_length_is_refused():
    model, src, _, output, _ = question("additive")
    with pytest.raises(ValueError, match="same count"):
        causal_alignment(model, src, src[:-1], output)


def test_the_page_shows_both_matrices_and_explains_bad_input():
    model, src, corrupt, output, _ = question("additive")
    found = causal_alignment(model, src, corrupt, output)
    app = open_view(open_app("families/seq2seq/page.py"), "Causal alignment")
    (heat,) = chart(app, "s2s_causal_grid")["data"]
    shown = array(heat["z"]).reshape(found.restored.shape)
    np.testing.assert_allclose(shown, found.restored, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(sent_maps(app, "s2s_causal_alpha")[0, 0], found.attention)
    (box,) = [t for t in app.text_input if "s2s_patch_corrupt" in t.key]
    box.set_value("2014/11/1").run()
    assert not app.exception and any("same length" in i.value for i in app.info)
