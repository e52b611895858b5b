"""Shipped checkpoints load, meet their quality bars on the held-out test split, and their cards
report what evaluation actually measures (numbers recomputed here, not copied)."""

import pytest
from safetensors import safe_open

from families import load
from families.seq2seq.runner import run as run_seq2seq
from families.transformer.runner import run as run_transformer
from models.attention import SCORINGS, Interventions
from models.checkpoints import ASSETS, checkpoint_name
from models.transformer import PRESETS
from tasks import TASKS, TEST_SEED, TEST_SIZE
from tasks.scenes import generate as generate_scenes
from tests.test_tasks import typed_dates
from training.evaluate import evaluate_captions
from training.evaluate import evaluate_text as evaluate

BARS = {"dates": 0.98, "translation": 0.95}  # exact match on the test split, attention models
AER_BAR = 0.15  # at least one seq2seq scoring function per task
# A card's test metrics were measured on the machine that trained the model. Recomputed on another
# CPU (or thread count), an argmax whose top two values are within float32 rounding may fall the
# other way and change one example: exact match by 1/n, its links' share of the corpus AER, one
# object word of the pointing game. Allow one example's worth, not a last-digit match.
ONE_EXAMPLE = 1.01 / TEST_SIZE
SHIPPED = (
    [("seq2seq", task, s) for task in TASKS for s in SCORINGS + ("none",)]
    + [("transformer", "dates", v) for v in PRESETS]
    + [("transformer", "translation", "h4")]
)


@pytest.fixture(scope="module")
def test_splits():
    return {name: task.generate(TEST_SIZE, TEST_SEED, "test") for name, task in TASKS.items()}


@pytest.fixture(scope="module")
def measured(test_splits):
    """Every shipped checkpoint evaluated once: name → (card, freshly computed metrics)."""
    out = {}
    for kind, task, variant in SHIPPED:
        model, card, sv, tv = load(checkpoint_name(kind, task, variant))
        out[(kind, task, variant)] = card, evaluate(model, test_splits[task], TASKS[task], sv, tv)
    return out


@pytest.mark.slow  # every shipped checkpoint on its full test split
@pytest.mark.parametrize("kind, task, variant", [s for s in SHIPPED if s[2] != "none"])
def test_attention_models_meet_their_bars(measured, kind, task, variant):
    card, m = measured[(kind, task, variant)]
    assert m["exact_match"] >= BARS[task], m["exact_match"]
    assert card["test"]["exact_match"] == pytest.approx(m["exact_match"], abs=ONE_EXAMPLE)
    assert card["test"]["aer"] == pytest.approx(m["aer"], abs=ONE_EXAMPLE)
    if task == "translation":
        assert m["bleu"] > 90


@pytest.mark.slow  # every shipped checkpoint on its full test split
@pytest.mark.parametrize("task", sorted(TASKS))
def test_one_scoring_function_aligns_well(measured, task):
    aers = [measured[("seq2seq", task, s)][1]["aer"] for s in SCORINGS]
    assert min(aers) <= AER_BAR, aers


@pytest.mark.slow  # every shipped checkpoint on its full test split
@pytest.mark.parametrize("task", sorted(TASKS))
def test_baseline_card_matches(measured, task):
    card, m = measured[("seq2seq", task, "none")]
    assert m["aer"] is None
    assert card["test"]["exact_match"] == pytest.approx(m["exact_match"], abs=ONE_EXAMPLE)
    for length, stored in card["test"]["by_length"].items():
        ours = m["by_length"][length]
        assert stored["n"] == ours["n"]  # how many sources of each length: the split's, exact
        assert stored["exact_match"] == pytest.approx(ours["exact_match"], abs=1.01 / stored["n"])


@pytest.mark.slow  # every shipped checkpoint on its full test split
def test_fixed_vector_bottleneck_on_translation(measured):
    """Without attention, short sentences survive the single vector and long ones do not; with
    attention, length does not matter. (Dates are too short to choke a 128-d vector: no claim.)"""
    base = list(measured[("seq2seq", "translation", "none")][1]["by_length"].values())
    assert base[0]["exact_match"] >= 0.9 and base[-1]["exact_match"] <= 0.1
    for scoring in SCORINGS:
        longest = list(measured[("seq2seq", "translation", scoring)][1]["by_length"].values())[-1]
        assert longest["exact_match"] >= 0.95, scoring


@pytest.mark.slow  # every shipped checkpoint on its full test split
def test_captioner_meets_its_bars():
    model, card, _, v = load("captioner-scenes")
    m = evaluate_captions(model, generate_scenes(TEST_SIZE, TEST_SEED, "test"), v)
    # The test split is the hand-drawn generator's (big, touching, letterboxed shapes, large filled corners;
    # MNIST digits; half the scenes with three objects): 95.0% exact, issue 24 asks 94% (48k scenes gave
    # 93.3%; the model before it, trained on 28k scenes without the corner scenes, scores 89.7% here).
    assert m["exact_match"] >= 0.94, m["exact_match"]
    assert m["pointing_game_strict"] >= 0.85, m["pointing_game_strict"]  # ≥ 25% of the argmax cell on it
    assert m["pointing_game"] >= m["pointing_game_strict"]  # the lenient rule counts every strict hit
    for metric in ("exact_match", "pointing_game", "pointing_game_strict"):
        assert card["test"][metric] == pytest.approx(m[metric], abs=ONE_EXAMPLE), metric
    assert set(m["by_object_count"]) == {"1", "2", "3"}


def test_checkpoints_are_small_safetensors():
    weights = sorted(ASSETS.glob("*.safetensors"))
    assert {p.stem for p in weights} == {checkpoint_name(*s) for s in SHIPPED} | {
        "captioner-scenes",
        "gpt-stdlib",
    }
    limits = {"gpt-stdlib": 10e6}  # the GPT's budget (issue: ≤ 10 MB); every other model stays small
    for path in weights:
        assert path.stat().st_size < limits.get(path.stem, 2.2e6), path.name
        with safe_open(path, "pt") as f:  # a real safetensors file, not a pickle
            assert len(list(f.keys())) > 5


@pytest.mark.slow  # every shipped date checkpoint on the hand-typed dates
@pytest.mark.parametrize("kind, task, variant", [s for s in SHIPPED if s[1] == "dates" and s[2] != "none"])
def test_date_models_read_dates_people_type(kind, task, variant):
    """Dates typed by hand (tests/data/typed_dates.csv, not our generator's output): the attention
    models read at least 90% of them right."""
    model, _, sv, tv = load(checkpoint_name(kind, task, variant))
    typed = typed_dates()
    read = [TASKS[task].tokenize(text) for text, _ in typed]
    if kind == "seq2seq":
        outputs = [run_seq2seq(model, TASKS[task], src, sv, tv)[0].text for src in read]
    else:
        outputs = [run_transformer(model, TASKS[task], src, sv, tv, Interventions()).text for src in read]
    wrong = [(text, out) for out, (text, date) in zip(outputs, typed, strict=True) if out != date]
    assert len(wrong) <= 0.1 * len(typed), wrong
