"""Warm-up, measured: the schedule, the experiment's card (a smoke run and the shipped one), and the
"Post- vs pre-norm" tab that draws it."""

import json
import math

import numpy as np
import pytest

from families.transformer import lessons
from models.checkpoints import ASSETS
from tests.helpers import array, chart, open_app, open_view
from training.__main__ import main, parse
from training.warmup import UNIGRAM_MARGIN, WarmupExperiment, lr_multiplier

SHIPPED = ASSETS / "warmup-dates.json"
RUN_KEYS = {
    "variant", "norm", "n_layers", "warmup", "warmup_steps", "peak_lr", "config", "params", "curve",
    "final_loss", "test", "diverged", "no_better_than_unigram", "training_seconds", "device", "cpu_seconds",
}  # fmt: skip
COMBINATIONS = {("pre", True), ("pre", False), ("post", True), ("post", False)}


def shipped() -> dict:
    if not SHIPPED.is_file():
        pytest.fail(f"{SHIPPED} is missing: run `python -m training --experiment warmup --threads 1`.")
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


# --- The schedule ---------------------------------------------------------------------------------
def test_warmup_ramps_linearly_to_the_peak_then_decays():
    steps, warmup = 100, 10
    m = np.array([lr_multiplier(t, steps=steps, warmup=warmup) for t in range(steps)])
    np.testing.assert_allclose(m[:warmup], np.arange(1, warmup + 1) / warmup)  # linear, from 1/W
    np.testing.assert_allclose(np.diff(m[:warmup]), 1 / warmup)
    assert m[warmup - 1] == pytest.approx(1.0) and m[warmup] == pytest.approx(1.0)  # the peak
    assert (np.diff(m[warmup:]) < 0).all() and 0 < m[-1] < 0.01  # cosine decay towards 0


def test_no_warmup_starts_at_the_peak_with_the_same_decay():
    steps = 100
    m = np.array([lr_multiplier(t, steps=steps, warmup=0) for t in range(steps)])
    assert m[0] == 1.0 and (np.diff(m) < 0).all()
    np.testing.assert_allclose(m, 0.5 * (1 + np.cos(np.pi * np.arange(steps) / steps)))


def test_the_experiment_refuses_what_cannot_run(capsys):
    with pytest.raises(ValueError, match="--warmup-steps"):
        WarmupExperiment(steps=10, warmup_steps=10)
    with pytest.raises(SystemExit):
        parse(["--experiment", "warmup", "--variant", "h4"])
    assert "--variant is for --family" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--experiment", "warmup", "--family", "transformer"])
    with pytest.raises(SystemExit):
        parse(["--experiment", "warmup", "--peak-lrs", "0"])
    assert "positive" in capsys.readouterr().err


# --- A smoke run through the CLI ------------------------------------------------------------------
def test_a_smoke_run_writes_one_card_with_every_run(tmp_path):
    peaks, steps, warmup = (1e-3, 1e-2), 5, 2
    main(["--experiment", "warmup", "--steps", str(steps), "--n-train", "64", "--n-eval", "4",
          "--peak-lrs", *map(str, peaks), "--warmup-steps", str(warmup), "--depths", "2", "1",
          "--deep-lrs", "1e-2", "--out", str(tmp_path)])  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["warmup-dates.json"]  # a card, no weights
    card = json.loads((tmp_path / "warmup-dates.json").read_text(encoding="utf-8"))
    runs = card["runs"]
    # 1) Every combination at every peak of the first depth, and at the deep peaks of the second.
    assert len(runs) == 4 * len(peaks) + 4
    for layers, wanted in ((2, peaks), (1, (1e-2,))):
        got = {(r["norm"], r["warmup"], r["peak_lr"]) for r in runs if r["n_layers"] == layers}
        assert got == {(n, w, p) for n, w in COMBINATIONS for p in wanted}
    assert all(set(r) == RUN_KEYS for r in runs)
    assert all(r["config"]["n_layers"] == r["n_layers"] and r["config"]["norm"] == r["norm"] for r in runs)
    # 2) Curves, schedules and scores as asked; the final loss is the curve's last point.
    for r in runs:
        assert r["curve"]["step"] == [0, steps - 1] and r["final_loss"] == r["curve"]["loss"][-1]
        first_lr = r["peak_lr"] / warmup if r["warmup"] else r["peak_lr"]
        assert r["curve"]["lr"][0] == pytest.approx(first_lr) and r["test"]["n"] == 4
    assert card["schedule"]["multiplier"]["warmup"][: warmup + 1] == pytest.approx([0.5, 1.0, 1.0])
    assert card["schedule"]["multiplier"]["none"][0] == 1.0
    # 3) Same initial weights and first batch for one config: the step-0 loss (before any update)
    #    is the same whatever the peak and the schedule.
    for layers in (2, 1):
        for norm in ("pre", "post"):
            first = {r["curve"]["loss"][0] for r in runs if r["norm"] == norm and r["n_layers"] == layers}
            assert len(first) == 1
    assert card["machine"]["torch_threads"] >= 1 and card["cpu_seconds"] > 0 and card["n_test"] == 4
    assert 0 < card["unigram_loss"] < math.log(runs[0]["config"]["tgt_vocab"])  # below uniform


# --- The shipped card -----------------------------------------------------------------------------
def test_the_shipped_cards_numbers_agree_with_its_curves():
    card = shipped()
    runs = card["runs"]
    assert len(card["peak_lrs"]) >= 3 and card["machine"]["torch_threads"] == 1
    assert card["cpu_seconds"] < 40 * 60  # the experiment's budget: 40 CPU minutes
    for layers in card["depths"]:
        mine = {(r["norm"], r["warmup"], r["peak_lr"]) for r in runs if r["n_layers"] == layers}
        peaks = card["peak_lrs"] if layers == card["depths"][0] else card["deep_lrs"]
        assert mine == {(n, w, p) for n, w in COMBINATIONS for p in peaks}
    for r in runs:
        losses, w = r["curve"]["loss"], r["warmup_steps"]
        assert r["final_loss"] == losses[-1] and r["curve"]["step"][-1] == card["steps"] - 1
        finite = all(x is not None for x in losses)
        assert r["diverged"] == (not finite or losses[-1] > losses[0])
        unigram = r["diverged"] or losses[-1] >= card["unigram_loss"] - UNIGRAM_MARGIN
        assert r["no_better_than_unigram"] == unigram
        expected_lr = [
            r["peak_lr"] * lr_multiplier(s, steps=card["steps"], warmup=w) for s in r["curve"]["step"]
        ]
        assert r["curve"]["lr"] == pytest.approx(expected_lr)
        assert w == (card["schedule"]["warmup_steps"] if r["warmup"] else 0)
        assert 0 <= r["test"]["exact_match"] <= 1 and r["test"]["n"] == card["n_test"]


def test_the_statement_is_built_from_the_numbers():
    """A made-up card: post-norm without warm-up collapses at the top peak, nothing else fails."""

    def fake_run(norm, warmup, peak):
        fails = (norm, warmup, peak) == ("post", False, 0.1)
        loss, match = (2.3, 0.0) if fails else (0.1 if warmup else 0.2, 0.9 if warmup else 0.5)
        return {"n_layers": 2, "norm": norm, "warmup": warmup, "peak_lr": peak, "diverged": False,
                "no_better_than_unigram": fails, "final_loss": loss,
                "test": {"exact_match": match}}  # fmt: skip

    runs = [fake_run(n, w, p) for n, w in COMBINATIONS for p in (0.01, 0.1)]
    card = {"runs": runs, "steps": 300, "unigram_loss": 2.28, "schedule": {"warmup_steps": 50}}
    text = lessons.warmup_statement(card, 2, 0.1)
    assert "0 of 8 runs diverged" in text and "(loss 2.28: it learned nothing" in text
    assert "failed at peak 0.1 (collapsed, loss 2.30)" in text and "0% at peak 0.1." in text
    assert "Post-norm without warm-up first failed at peak 0.1; with warm-up it did not fail" in text
    assert "Pre-norm without warm-up did not fail at any peak tried" in text
    assert "warm-up took post-norm from loss 2.30 (0% exact match) to loss 0.10 (90% exact match)" in text


# --- The page -------------------------------------------------------------------------------------
@pytest.fixture
def norm_tab():
    app = open_app("families/transformer/page.py")
    return open_view(app, "Post- vs pre-norm")


def test_the_norm_tab_draws_the_experiment(norm_tab):
    card, at = shipped(), norm_tab
    assert chart(at, "tf_norm_loss")  # the tab's earlier content is still there
    layers = card["depths"][0]
    peak = at.select_slider(key=f"tf_warm_lr_{layers}").value
    runs = [r for r in card["runs"] if r["n_layers"] == layers]
    # 1) The schedules at the chosen peak: the warm-up one ramps, the other starts at the peak.
    schedules = {t["name"]: array(t["y"]) for t in chart(at, "tf_warm_schedule")["data"]}
    assert schedules["no warm-up"][0] == pytest.approx(peak) and schedules["warm-up"][0] < peak
    # 2) The sweep: each combination's final losses and exact matches, read from the card.
    for key, value in (("tf_warm_sweep_loss", "final_loss"), ("tf_warm_sweep_match", "exact_match")):
        for trace in chart(at, key)["data"]:
            norm, warmup = trace["name"].split("-norm")[0], "no warm-up" not in trace["name"]
            mine = sorted(
                (r for r in runs if r["norm"] == norm and r["warmup"] == warmup), key=lambda r: r["peak_lr"]
            )
            got = [r["test"]["exact_match"] if value == "exact_match" else r[value] for r in mine]
            np.testing.assert_allclose(array(trace["y"]), np.array(got, dtype=float))
    # 3) The curves follow the slider; the statement carries the card's numbers.
    other = max(r["peak_lr"] for r in runs)
    at.select_slider(key=f"tf_warm_lr_{layers}").set_value(other).run()
    assert not at.exception
    curves = {t["name"]: array(t["y"]) for t in chart(at, "tf_warm_curves")["data"]}
    (post_none,) = [r for r in runs if (r["norm"], r["warmup"], r["peak_lr"]) == ("post", False, other)]
    np.testing.assert_allclose(
        curves["post-norm, no warm-up"], np.array(post_none["curve"]["loss"], dtype=float), equal_nan=True
    )
    statement = "\n".join(m.value for m in at.markdown)
    assert f"loss {card['unigram_loss']:.2f}" in statement and "Post-norm without warm-up" in statement
    if len(card["depths"]) > 1:
        at.radio(key="tf_warm_layers").set_value(card["depths"][-1]).run()
        assert not at.exception and f"{card['depths'][-1]} layers, " in "\n".join(
            m.value for m in at.markdown
        )


def test_without_the_card_the_tab_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(lessons, "ASSETS", tmp_path)
    lessons.warmup_card.clear()
    try:
        at = open_view(open_app("families/transformer/page.py"), "Post- vs pre-norm")
        assert any("--experiment warmup" in i.value for i in at.info)
        assert not [c for c in at.get("plotly_chart") if "tf_warm_" in c.proto.id]
    finally:
        lessons.warmup_card.clear()
