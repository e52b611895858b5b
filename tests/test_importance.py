"""Attention vs importance: Spearman against scipy; the seq2seq and captioner ablations, gradient ×
input and attention against manual computations; the cards' held-out entries; both pages' tab."""

import json

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image

from analysis.importance import (
    CARD_KEY,
    GRADIENT_X_INPUT,
    PerToken,
    compare,
    mean_correlations,
    ranks,
    spearman,
)
from families import load
from families.captioner import importance as captioner_importance
from families.captioner.runner import SAMPLES
from families.captioner.runner import run as caption
from families.seq2seq import importance as seq2seq_importance
from families.seq2seq.runner import run as translate
from models.captioner import Captioner, CaptionerConfig
from models.checkpoints import ASSETS, checkpoint_name
from models.seq2seq import VARIANTS, Seq2Seq, Seq2SeqConfig
from tasks import TASKS, TEST_SEED, held_out
from tasks.common import EOS, UNK_ID, Example, Vocab
from tasks.images import model_input, to_tensor
from tasks.scenes import generate, vocab
from tests.helpers import assert_spearman_means_recompute, open_app, open_view

S2S_MEASURES = (seq2seq_importance.ATTENTION, GRADIENT_X_INPUT)
CAP_MEASURES = (captioner_importance.ATTENTION, GRADIENT_X_INPUT)


# --- Spearman --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_spearman_is_scipys_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    a = rng.integers(0, 5, n).astype(float)  # few values: many ties
    b = a * rng.choice([-1, 1]) + rng.integers(0, 4, n)  # related, also tied
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        a[0], b[-1] = a[0] + 1, b[-1] + 1
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
    x, y = rng.normal(size=n), rng.normal(size=n)  # no ties
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_of_a_constant_or_a_single_value_is_nan():
    assert np.isnan(spearman(np.ones(6), np.arange(6)))
    assert np.isnan(spearman(np.arange(6), np.full(6, 2.5)))
    assert np.isnan(spearman([1.0], [2.0]))
    with pytest.warns(scipy.stats.ConstantInputWarning):
        assert np.isnan(scipy.stats.spearmanr(np.ones(6), np.arange(6)).statistic)
    np.testing.assert_array_equal(ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])
    with pytest.raises(ValueError, match="one length"):
        spearman(np.arange(3), np.arange(4))


def test_per_token_rows_are_ranked_like_compare():
    rng = np.random.default_rng(0)
    imp, att = rng.normal(size=(3, 5)), rng.random((3, 5))
    per_token = PerToken(("a", "b", "</s>"), tuple("vwxyz"), np.zeros(3), imp, {"α": att})
    for t, c in enumerate(per_token.comparisons()):
        assert c.correlations["α"] == spearman(att[t], imp[t])
        assert c.correlations == compare(c.positions, imp[t], {"α": att[t]}, quantity="q").correlations
        assert repr(per_token.output[t]) in c.quantity
    assert mean_correlations(per_token.comparisons())["α"]["n"] == 3


# --- Seq2seq ---------------------------------------------------------------------------------------
def tiny_seq2seq(scoring: str) -> tuple[Seq2Seq, Vocab, Vocab]:
    torch.manual_seed(0)
    src_vocab, tgt_vocab = Vocab.build([tuple("abcdef")]), Vocab.build([tuple("xyz")])
    cfg = Seq2SeqConfig(len(src_vocab), len(tgt_vocab), scoring=scoring, emb_dim=6, enc_hidden=5, attn_dim=7)
    return Seq2Seq(cfg).eval(), src_vocab, tgt_vocab


def forced_log_p(model: Seq2Seq, src_ids: list[int], tgt_vocab: Vocab, output: tuple[str, ...]) -> np.ndarray:
    """log p of each output token, teacher-forced, for one source given as ids (no batching)."""
    ids = tgt_vocab.encode(output)
    tgt_in = torch.tensor([[1, *ids[:-1]]])  # <s> y_1 … y_{T-1}
    with torch.no_grad():
        logits, _ = model(torch.tensor([src_ids]), torch.tensor([len(src_ids)]), tgt_in)
    log_p = torch.log_softmax(logits[0].double(), -1)  # (T, V)
    return log_p[torch.arange(len(ids)), ids].numpy()


@pytest.mark.parametrize("scoring", ["additive", "scaled_dot", "none"])
def test_seq2seq_ablation_is_the_manual_single_ablation(scoring):
    model, sv, tv = tiny_seq2seq(scoring)
    src, output = tuple("abcaf"), ("x", "z", "y", EOS)
    per_token = seq2seq_importance.importance(model, src, sv, tv, output)
    assert per_token.importance.shape == (4, 5) and per_token.base_log_probs.shape == (4,)
    assert set(per_token.measures) == ({GRADIENT_X_INPUT} | ({seq2seq_importance.ATTENTION}
                                       if scoring != "none" else set()))  # fmt: skip
    assert all(v.shape == (4, 5) for v in per_token.measures.values())
    base = forced_log_p(model, sv.encode(src), tv, output)
    np.testing.assert_allclose(per_token.base_log_probs, base, atol=1e-6)
    for i in (0, 3):  # the two 'a's: the same token, ablated at different places
        ablated = sv.encode(src)
        ablated[i] = UNK_ID
        np.testing.assert_allclose(
            per_token.importance[:, i], base - forced_log_p(model, ablated, tv, output), atol=1e-6
        )
    assert not np.allclose(per_token.importance[:, 0], per_token.importance[:, 3])  # positions, not tokens


def test_seq2seq_gradient_x_input_is_the_manual_autograd():
    model, sv, tv = tiny_seq2seq("general")
    src, output = tuple("fedcb"), ("y", "y", EOS)
    per_token = seq2seq_importance.importance(model, src, sv, tv, output)
    ids = tv.encode(output)
    unk = model.src_emb.weight[UNK_ID].detach()
    for t in range(len(output)):
        emb = model.src_emb(torch.tensor([sv.encode(src)])).detach().requires_grad_()  # (1, S, E)
        logits, _ = model(
            torch.tensor([sv.encode(src)]), torch.tensor([5]), torch.tensor([[1, *ids[:-1]]]), embedded=emb
        )
        torch.log_softmax(logits[0, t].double(), -1)[ids[t]].backward()
        manual = ((emb.detach() - unk) * emb.grad).sum(-1)[0].numpy()  # (S,)
        np.testing.assert_allclose(per_token.measures[GRADIENT_X_INPUT][t], manual, atol=1e-6)


def test_seq2seq_importance_writes_no_gradient_onto_the_shared_model():
    model, sv, tv = tiny_seq2seq("dot")
    seq2seq_importance.importance(model, tuple("abc"), sv, tv, ("x", EOS))
    assert all(p.grad is None for p in model.parameters())


def test_seq2seq_checkpoint_rows_are_the_runs_own_and_unknown_tokens_weigh_nothing():
    model, card, sv, tv = load("seq2seq-dates-additive")
    task = TASKS["dates"]
    src = (*task.tokenize("21 nov 2026"), "☃")  # the snowman is read as <unk>
    (run,) = translate(model, task, src, sv, tv)
    per_token = seq2seq_importance.importance(model, src, sv, tv, run.output)
    np.testing.assert_allclose(per_token.measures[seq2seq_importance.ATTENTION], run.weights, atol=1e-5)
    np.testing.assert_allclose(per_token.base_log_probs, run.token_log_probs, atol=1e-4)
    # Replacing <unk> by <unk> changes nothing: exactly 0 by construction (no_op_ablations), not
    # the float noise of rerunning the same numbers in another batch row.
    assert (per_token.importance[:, -1] == 0).all()
    assert (per_token.measures[GRADIENT_X_INPUT][:, -1] == 0).all()
    assert per_token.importance.max() > 0.1  # some tokens matter
    with pytest.raises(ValueError, match="a source and an output"):
        seq2seq_importance.importance(model, (), sv, tv, run.output)


def test_gold_agreement_reads_sure_and_possible_links():
    per_token = PerToken(
        ("p", "q", EOS), ("a", "b", "c"), np.zeros(3),
        importance=np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.7], [0.3, 0.3, 0.3]]),
        measures={"α": np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])},
    )  # fmt: skip
    ex = Example(("a", "b", "c"), ("p", "q"), frozenset({(0, 0)}), frozenset({(0, 0), (1, 1), (1, 2)}))
    agreement = seq2seq_importance.gold_agreement(per_token, ex)
    np.testing.assert_array_equal(agreement.scored, [True, True, False])  # </s> has no link
    np.testing.assert_array_equal(agreement.gold, [[2, 0, 0], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(agreement.top_is_gold["importance"], [True, True, False])
    np.testing.assert_array_equal(agreement.top_is_gold["α"], [False, True, False])
    assert agreement.spearman["importance"][0] == pytest.approx(
        scipy.stats.spearmanr([0.9, 0.1, 0], [2, 0, 0])[0]
    )
    assert np.isnan(agreement.spearman["α"][2])
    other = Example(("a", "b", "c"), ("q", "p"), ex.sure, ex.possible)
    assert seq2seq_importance.gold_agreement(per_token, other) is None  # gold describes another output


# --- Captioner -------------------------------------------------------------------------------------
def tiny_captioner() -> Captioner:
    torch.manual_seed(0)
    return Captioner(CaptionerConfig(vocab=len(vocab()), channels=8, hidden=12, emb_dim=6, attn_dim=5)).eval()


def test_captioner_ablation_is_the_manual_region_painting():
    model, v = tiny_captioner(), vocab()
    image = to_tensor(generate(1, 3)[0].image[None])  # (1, 3, 64, 64)
    output = ("a", "big", "red", "circle", EOS)
    per_token = captioner_importance.importance(model, v, image, output)
    assert per_token.importance.shape == (5, 64) and len(per_token.positions) == 64
    assert all(m.shape == (5, 64) for m in per_token.measures.values())
    ids = v.encode(output)
    tgt_in = torch.tensor([[1, *ids[:-1]]])

    def log_p(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits, trace = model(x, tgt_in)
        return torch.log_softmax(logits[0].double(), -1)[torch.arange(5), ids].numpy(), trace

    base, trace = log_p(image)
    np.testing.assert_allclose(per_token.base_log_probs, base, atol=1e-6)
    np.testing.assert_allclose(per_token.measures[captioner_importance.ATTENTION], trace.alphas[0], atol=1e-6)
    mean = image.mean((2, 3))  # (1, 3): the image's mean colour
    for row, col in ((0, 0), (3, 5), (7, 2)):
        painted = image.clone()
        painted[:, :, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = mean[:, :, None, None]
        expected = base - log_p(painted)[0]
        np.testing.assert_allclose(per_token.importance[:, row * 8 + col], expected, atol=1e-6)
        assert per_token.positions[row * 8 + col] == f"r{row}c{col}"


def test_captioner_gradient_x_input_is_the_manual_autograd():
    model, v = tiny_captioner(), vocab()
    image = to_tensor(generate(1, 4)[0].image[None])
    output = ("the", "digit", "7", EOS)
    per_token = captioner_importance.importance(model, v, image, output)
    ids = v.encode(output)
    replacement = image.mean((2, 3), keepdim=True)  # (1, 3, 1, 1)
    for t in (0, 2, 3):
        x = image.clone().requires_grad_()
        logits, _ = model(x, torch.tensor([[1, *ids[:-1]]]))
        torch.log_softmax(logits[0, t].double(), -1)[ids[t]].backward()
        per_pixel = ((image - replacement) * x.grad).sum(1)[0]  # (64, 64)
        manual = per_pixel.reshape(8, 8, 8, 8).sum((1, 3)).flatten().numpy()  # (R,) row-major regions
        np.testing.assert_allclose(per_token.measures[GRADIENT_X_INPUT][t], manual, atol=1e-5)
    model.zero_grad(set_to_none=True)
    captioner_importance.importance(model, v, image, output)
    assert all(p.grad is None for p in model.parameters())


# --- The cards -------------------------------------------------------------------------------------
def card_entry(name: str) -> dict:
    return json.loads((ASSETS / f"{name}.json").read_text(encoding="utf-8"))[CARD_KEY]


def defines(entry: dict, definition: dict) -> bool:
    """The card's definition is the runner's (plus the shared words on Spearman and the check)."""
    own = {k: entry["definition"][k] for k in definition}
    shared = {"spearman", "check"} <= set(entry["definition"])
    return shared and own == json.loads(json.dumps(definition, ensure_ascii=False))


SEQ2SEQ = [checkpoint_name("seq2seq", task, variant) for task in TASKS for variant in VARIANTS]


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_seq2seq_cards_hold_the_held_out_comparison(name):
    entry = card_entry(name)
    assert defines(entry, seq2seq_importance.DEFINITION)
    assert entry["examples"] >= 100 and entry["comparisons"] > entry["examples"]  # one per output token
    measures = S2S_MEASURES if not name.endswith("-none") else (GRADIENT_X_INPUT,)
    assert tuple(entry["spearman"]) == measures
    for m in measures:
        assert (
            -1 <= entry["spearman"][m]["mean"] <= 1 and 0 < entry["spearman"][m]["n"] <= entry["comparisons"]
        )
    gold = entry["gold"]
    assert set(gold) == {"definition", "examples", "tokens", "top_is_gold_link", "spearman_with_gold"}
    # Gold scores the examples whose output is the gold target: about the card's exact-match share.
    exact = json.loads((ASSETS / f"{name}.json").read_text(encoding="utf-8"))["test"]["exact_match"]
    assert abs(gold["examples"] / entry["examples"] - exact) < 0.1
    assert tuple(gold["top_is_gold_link"]) == ("importance", *measures)
    assert all(0 <= share <= 1 for share in gold["top_is_gold_link"].values())


@pytest.mark.parametrize("name", ["seq2seq-dates-additive", "seq2seq-translation-dot", "seq2seq-dates-none"])
def test_seq2seq_card_recomputes_on_its_first_examples(name):
    model, card, sv, tv = load(name)
    task = TASKS[card["task"]]
    check = card[CARD_KEY]["check"]
    examples = held_out(task.name, check["examples"])
    again = seq2seq_importance.held_out(model, task, examples, sv, tv)
    assert_spearman_means_recompute(check["spearman"], again["spearman"], min(len(ex.src) for ex in examples))


def test_captioner_card_holds_the_held_out_comparison_and_recomputes():
    entry = card_entry("captioner-scenes")
    assert defines(entry, captioner_importance.DEFINITION)
    assert entry["examples"] >= 100 and tuple(entry["spearman"]) == CAP_MEASURES
    assert all(-1 <= v["mean"] <= 1 and v["n"] > entry["examples"] for v in entry["spearman"].values())
    pointing = entry["pointing_game"]
    assert pointing["scenes"] >= 0.9 * entry["examples"] and pointing["words"] >= pointing["scenes"]
    assert tuple(pointing["hit_rate"]) == ("importance", *CAP_MEASURES)
    model, _, _, v = load("captioner-scenes")
    check = entry["check"]
    again = captioner_importance.held_out(model, v, generate(check["examples"], TEST_SEED, "test"))
    assert_spearman_means_recompute(check["spearman"], again["spearman"], model.grid**2)  # every region


# --- The pages -------------------------------------------------------------------------------------
def spearman_table(app) -> dict[str, str]:
    """The shared view's table: measure → its 'Spearman, this input' cell."""
    (table,) = [t.value for t in app.table if "Spearman, this input" in t.value.columns]
    return dict(zip(table["measure"], table["Spearman, this input"], strict=True))


def test_seq2seq_tab_shows_the_models_own_spearman():
    at = open_app("families/seq2seq/page.py")
    open_view(at, "Attention vs importance")
    ex = held_out("dates", 1)[0]
    model, _, sv, tv = load("seq2seq-dates-additive")
    (run,) = translate(model, TASKS["dates"], ex.src, sv, tv)
    per_token = seq2seq_importance.importance(model, ex.src, sv, tv, run.output)
    for t in (0, 3):
        at.select_slider(key="s2s_imp_token").set_value(t).run()
        assert not at.exception
        expected = per_token.comparison(t).correlations
        assert spearman_table(at) == {m: f"{r:+.3f}" for m, r in expected.items()}
    assert any("Spearman" in m.value for m in at.markdown)
    assert any("gold link" in c.value for c in at.caption)  # the card's held-out gold comparison
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("21 Nov 2026 ☃").run()  # an unknown character
    assert not at.exception and spearman_table(at)


def test_captioning_tab_shows_the_models_own_spearman_and_maps():
    at = open_app("families/captioner/page.py")
    open_view(at, "Attention vs importance")
    model, _, _, v = load("captioner-scenes")
    _, image = model_input(Image.open(SAMPLES[0]).convert("RGB"))  # the page's default picture
    (run,) = caption(model, v, image)
    per_token = captioner_importance.importance(model, v, image, run.output)
    at.select_slider(key="cap_imp_token").set_value(3).run()
    assert not at.exception
    expected = per_token.comparison(3).correlations
    assert spearman_table(at) == {m: f"{r:+.3f}" for m, r in expected.items()}
    shown = {c.proto.id.split("-")[-1] for c in at.get("plotly_chart")}
    assert {"cap_imp_scatter", "cap_imp_map_0", "cap_imp_map_1", "cap_imp_map_2"} <= shown, shown
