"""Shipped checkpoints load, meet their quality bars on the held-out test split, and their cards
report what evaluation actually measures (numbers recomputed here, not copied)."""

import pytest
from safetensors import safe_open

from models.attention import SCORINGS
from models.checkpoints import ASSETS, checkpoint_name, load_checkpoint
from models.tasks import TASKS
from models.train import TEST_SEED, TEST_SIZE, evaluate

BARS = {"dates": 0.98, "translation": 0.95}  # exact match on the test split, attention models
AER_BAR = 0.15  # at least one scoring function per task


@pytest.fixture(scope="module")
def test_splits():
    return {name: task.generate(TEST_SIZE, TEST_SEED, "test") for name, task in TASKS.items()}


def evaluated(task_name, scoring, test_splits):
    model, card, sv, tv = load_checkpoint(checkpoint_name("seq2seq", task_name, scoring))
    metrics = evaluate(model, test_splits[task_name], TASKS[task_name], sv, tv)
    return card, metrics


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_attention_models_meet_their_bars(task_name, test_splits):
    aers = []
    for scoring in SCORINGS:
        card, m = evaluated(task_name, scoring, test_splits)
        assert m["exact_match"] >= BARS[task_name], (scoring, m["exact_match"])
        assert card["test"]["exact_match"] == pytest.approx(m["exact_match"])
        assert card["test"]["aer"] == pytest.approx(m["aer"], abs=1e-6)
        aers.append(m["aer"])
        if task_name == "translation":
            assert m["bleu"] > 90
    assert min(aers) <= AER_BAR, aers


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_baseline_card_and_bottleneck(task_name, test_splits):
    card, m = evaluated(task_name, "none", test_splits)
    assert m["aer"] is None and card["test"]["exact_match"] == pytest.approx(m["exact_match"])
    assert set(m["by_length"]) == set(card["test"]["by_length"])


def test_checkpoints_are_small_safetensors():
    weights = sorted(ASSETS.glob("seq2seq-*.safetensors"))
    assert len(weights) == 2 * (len(SCORINGS) + 1)
    for path in weights:
        assert path.stat().st_size < 2.2e6, path.name
        with safe_open(path, "pt") as f:  # a real safetensors file, not a pickle
            assert len(list(f.keys())) > 5
