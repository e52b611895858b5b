"""Attention vs importance for the transformer, BERT and the GPT: ablation equals a hand-made single
ablation, rollout composes as documented, gradient × input equals an autograd computation done
another way, the cards' held-out means recompute, and each page's tab shows Spearman."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from analysis.importance import CARD_KEY, CHECK_EXAMPLES, GRADIENT_X_INPUT, blank_id, mean_correlations
from analysis.stats import rollout
from families.bert import importance as bert_importance
from families.bert import runner as bert
from families.bert.runner import CARD as BERT_CARD
from families.bert.runner import card_sentences as bert_sentences
from families.gpt import importance as gpt_importance
from families.gpt import runner as gpt
from families.transformer import importance as transformer_importance
from models.attention import NO_INTERVENTION
from models.bert import default_folder, load_bert, sentence_embedding
from models.checkpoints import ASSETS, load_checkpoint
from models.gpt import BLOCK
from models.transformer import VARIANTS, Transformer, TransformerConfig
from tasks import TASKS, held_out, stdlib
from tasks.common import BOS_ID, UNK_ID
from tests.helpers import assert_spearman_means_recompute, open_app, open_view

TRANSFORMERS = [f"transformer-dates-{v}" for v in VARIANTS] + ["transformer-translation-h4"]
TAB = "Attention vs importance"


@pytest.fixture(scope="module")
def dates():
    model, card, src_vocab, tgt_vocab = load_checkpoint(
        "transformer-dates-h4", Transformer, TransformerConfig
    )
    return model, TASKS[card["task"]], src_vocab, tgt_vocab


@pytest.fixture(scope="module")
def loaded_gpt():
    return gpt.load()


@pytest.fixture(scope="module")
def minilm():
    return load_bert(default_folder())


def _log_p(logits: torch.Tensor, step: int, token: int) -> float:
    return float(torch.log_softmax(logits[0, step].float(), -1)[token])


# --- Transformer ----------------------------------------------------------------------------------
def test_transformer_ablation_is_a_single_ablation_by_hand(dates):
    model, task, src_vocab, tgt_vocab = dates
    src = held_out("dates", 2)[1].src
    result = transformer_importance.measure(model, task, src, src_vocab, tgt_vocab)
    out = [tgt_vocab.index[t] for t in result.output]
    tgt_in = torch.tensor([[BOS_ID, *out[:-1]]])
    ids = src_vocab.encode(src)
    lens = torch.tensor([len(ids)])
    with torch.inference_mode():
        base, _ = model(torch.tensor([ids]), lens, tgt_in)
        for j in (0, len(ids) // 2):
            ablated_ids = list(ids)
            ablated_ids[j] = UNK_ID
            ablated, _ = model(torch.tensor([ablated_ids]), lens, tgt_in)
            by_hand = [_log_p(base, t, y) - _log_p(ablated, t, y) for t, y in enumerate(out)]
            np.testing.assert_allclose(result.importance[:, j], by_hand, atol=1e-4)
    assert result.importance.shape == (len(out), len(src)) and np.abs(result.importance).max() > 0


def test_decoder_rollout_composes_cross_attention_with_the_encoder_rollout():
    rng = np.random.default_rng(0)

    def stochastic(*shape):
        w = rng.random(shape)
        return w / w.sum(-1, keepdims=True)

    encoder, decoder_self, cross = stochastic(2, 4, 6, 6), stochastic(3, 4, 5, 5), stochastic(3, 4, 5, 6)
    out = transformer_importance.decoder_rollout(encoder, decoder_self, cross)
    assert out.shape == (3, 5, 6)
    # Half of the state is new memory at each layer: rows sum to 1 − 0.5^(l+1).
    np.testing.assert_allclose(
        out.sum(-1), (1 - 0.5 ** np.arange(1, 4))[:, None] * np.ones((3, 5)), atol=1e-6
    )
    # Through layer 0: half of last-layer-0 cross-attention × the encoder's rollout.
    np.testing.assert_allclose(out[0], 0.5 * cross[0].mean(0) @ rollout(encoder)[-1], atol=1e-6)


def test_transformer_gradient_x_input_is_the_embedding_tables_gradient(dates):
    """Where a source token occurs once, ∂f/∂(its embedding row) × √d is ∂f/∂x at its position:
    autograd through the model's own forward, no re-run encoder."""
    model, task, src_vocab, tgt_vocab = dates
    src = held_out("dates", 3)[2].src
    ids = src_vocab.encode(src)
    out = transformer_importance.output_ids(model, task, ids)
    grad_x_input = transformer_importance.gradient_times_input(model, ids, out)
    scale = math.sqrt(model.cfg.d_model)
    tgt_in = torch.tensor([[BOS_ID, *out[:-1]]])
    unique = [j for j, i in enumerate(ids) if ids.count(i) == 1 and i != UNK_ID]
    assert unique
    for t in (0, len(out) - 1):
        logits, _ = model(torch.tensor([ids]), torch.tensor([len(ids)]), tgt_in)
        (table,) = torch.autograd.grad(torch.log_softmax(logits[0, t], -1)[out[t]], model.src_emb.weight)
        for j in unique:
            delta = (model.src_emb.weight[ids[j]] - model.src_emb.weight[UNK_ID]) * scale
            by_hand = float((delta @ table[ids[j]]).detach()) / scale
            assert grad_x_input[t, j] == pytest.approx(by_hand, abs=1e-4)


# --- GPT ------------------------------------------------------------------------------------------
def test_gpt_ablation_is_a_single_ablation_by_hand(loaded_gpt):
    model, tokenizer = loaded_gpt.model, loaded_gpt.vocabulary.tokenizer
    ids = gpt.prepare(loaded_gpt, gpt.EXAMPLE).ids
    t = 20
    result = gpt_importance.measure(loaded_gpt, ids, t)
    blank = blank_id(tokenizer)
    assert tokenizer.decode([blank]) == " " and len(result.positions) == t
    with torch.inference_mode():
        base, _ = model(torch.tensor([ids]))
        assert result.target_id == int(base[0, t].argmax())
        for j in (1, t):
            ablated = list(ids)
            ablated[j] = blank
            logits, _ = model(torch.tensor([ablated]))
            by_hand = _log_p(base, t, result.target_id) - _log_p(logits, t, result.target_id)
            assert result.importance[j - 1] == pytest.approx(by_hand, abs=1e-4)
    assert result.weights.shape == (model.cfg.n_layers, model.cfg.n_heads, t)


def test_gpt_gradient_x_input_equals_autograd_from_a_leaf_embedding(loaded_gpt):
    """The runner differentiates through the position table; here the token embeddings are the leaf,
    the blocks run one by one — and give the model's own logits."""
    model, tokenizer = loaded_gpt.model, loaded_gpt.vocabulary.tokenizer
    ids = gpt.prepare(loaded_gpt, "def add(self, item):\n    return item").ids
    result = gpt_importance.measure(loaded_gpt, ids)
    t, ids_t = result.position, torch.tensor([ids])
    tokens = model.tok_emb(ids_t).detach().requires_grad_()  # (1, T, d)
    x, mask = tokens + model.pos_emb.weight[: len(ids)], model.attention_mask(len(ids), NO_INTERVENTION)
    for i, block in enumerate(model.blocks):
        kw = NO_INTERVENTION.attention_kwargs(BLOCK, i, model.cfg.n_heads, None, return_trace=False)
        _, x, _ = block(x, mask=mask, kw=kw)  # (stream after attention, after the MLP, trace)
    logits = model.head(model.ln_f(x))
    torch.testing.assert_close(logits, model(ids_t)[0], atol=1e-5, rtol=1e-5)
    (gradient,) = torch.autograd.grad(torch.log_softmax(logits[0, t], -1)[result.target_id], tokens)
    blank = model.tok_emb.weight[blank_id(tokenizer)]
    by_hand = ((tokens[0, 1 : t + 1] - blank) * gradient[0, 1 : t + 1]).sum(-1)
    np.testing.assert_allclose(result.grad_x_input, by_hand.detach().numpy(), atol=1e-5)


# --- BERT -----------------------------------------------------------------------------------------
def test_bert_ablation_is_a_single_ablation_by_hand(minilm):
    enc = bert.encode(minilm, *bert.EXAMPLE_TEXT)
    result = bert_importance.measure(minilm, enc)
    assert result.spans == tuple((j,) for j in range(1, len(enc.tokens) - 1))  # [CLS]/[SEP] left out
    keep = torch.ones(1, len(enc.ids), dtype=torch.bool)
    with torch.inference_mode():
        base = sentence_embedding(minilm.model(torch.tensor([enc.ids])).last_hidden_state, keep)[0]
        for k in (0, len(result.spans) - 1):
            ids = list(enc.ids)
            ids[result.spans[k][0]] = minilm.tokenizer.token_to_id("[MASK]")
            ablated = sentence_embedding(minilm.model(torch.tensor([ids])).last_hidden_state, keep)[0]
            assert result.importance[k] == pytest.approx(1 - float(ablated @ base), abs=1e-5)


def test_bert_gradient_x_input_equals_autograd_through_the_layers(minilm):
    """At the ablated copy's layer-0 input, the cosine's gradient through the layers run one by one."""
    enc = bert.encode(minilm, "A short sentence to explain.")
    result = bert_importance.measure(minilm, enc)
    model, k = minilm.model, 2
    j = result.spans[k][0]
    ids = list(enc.ids)
    keep = torch.ones(1, len(ids), dtype=torch.bool)
    with torch.no_grad():
        base_out = model(torch.tensor([enc.ids]))
        base = sentence_embedding(base_out.last_hidden_state, keep)[0]
        ids[j] = bert_importance.mask_id(minilm)
        x_ablated = model(torch.tensor([ids])).hidden_states[0]
    x = x_ablated.clone().requires_grad_()
    h = x
    for i, layer in enumerate(model.layers):
        kw = NO_INTERVENTION.attention_kwargs(
            "encoder", i, model.cfg.num_attention_heads, None, return_trace=False
        )
        h, _ = layer(h, mask=None, kw=kw)
    cos = sentence_embedding(h, keep)[0] @ base
    assert float(cos) == pytest.approx(1 - result.importance[k], abs=1e-5)
    (gradient,) = torch.autograd.grad(cos, x)
    by_hand = float((base_out.hidden_states[0][0, j] - x_ablated[0, j]) @ gradient[0, j])
    assert result.grad_x_input[k] == pytest.approx(by_hand, abs=1e-4)


def test_bert_long_inputs_are_capped_into_spans_that_cover_every_piece(minilm):
    enc = bert.encode(minilm, "word " * 600)
    groups = bert_importance.spans(enc)
    assert len(enc.tokens) == 512 and len(groups) == bert_importance.MIN_COPIES
    covered = [j for span in groups for j in span]
    assert covered == list(range(1, 511))  # every word piece once, [CLS]/[SEP] never
    short = bert.encode(minilm, "two words")
    assert bert_importance.spans(short) == ((1,), (2,))


# --- The cards ------------------------------------------------------------------------------------
def _entry(name: str) -> dict:
    card = json.loads((ASSETS / f"{name}.json").read_text(encoding="utf-8"))
    entry = card[CARD_KEY]
    assert {"definition", "split", "examples", "comparisons", "spearman", "check"} <= set(entry)
    assert entry["examples"] >= 100 and {"importance", "measures", "spearman"} <= set(entry["definition"])
    for values in entry["spearman"].values():
        assert -1 <= values["mean"] <= 1 and 0 < values["n"] <= entry["comparisons"]
    return entry


def _agrees(entry: dict, comparisons: list) -> None:
    assert entry["check"]["examples"] == CHECK_EXAMPLES
    fewest = min(len(c.positions) for c in comparisons)
    assert_spearman_means_recompute(entry["check"]["spearman"], mean_correlations(comparisons), fewest)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_cards_hold_held_out_means_that_recompute(name):
    entry = _entry(name)
    model, card, src_vocab, tgt_vocab = load_checkpoint(name, Transformer, TransformerConfig)
    task = TASKS[card["task"]]
    assert entry["output_tokens"] == entry["comparisons"]
    assert set(entry["spearman"]) == {
        *(f"{kind} L{i}" for kind in ("raw", "rollout") for i in range(model.cfg.n_layers)),
        GRADIENT_X_INPUT,
    }
    comparisons = [
        c
        for ex in held_out(task.name, CHECK_EXAMPLES)
        for c in transformer_importance.measure(model, task, ex.src, src_vocab, tgt_vocab).comparisons()
    ]
    _agrees(entry, comparisons)


def test_gpt_card_holds_held_out_means_that_recompute(loaded_gpt):
    card = loaded_gpt.card
    entry = _entry(gpt.DEFAULT)
    windows = stdlib.generate(CHECK_EXAMPLES, card["test_seed"], "test")
    comparisons = [
        gpt_importance.measure(loaded_gpt, w.ids[: gpt_importance.PROMPT].tolist()).comparison()
        for w in windows
    ]
    _agrees(entry, comparisons)


def test_bert_measurements_card_names_its_model_and_recomputes(minilm):
    card = json.loads((ASSETS / f"{BERT_CARD}.json").read_text(encoding="utf-8"))
    assert "all-MiniLM-L6-v2" in card["model"]
    entry = _entry(BERT_CARD)
    sentences = bert_sentences(CHECK_EXAMPLES)
    comparisons = [bert_importance.measure(minilm, bert.encode(minilm, s)).comparison() for s in sentences]
    _agrees(entry, comparisons)


# --- The pages ------------------------------------------------------------------------------------
def _spearman_shown(app) -> None:
    """The shared view's table: each measure's Spearman on this input (a number) and the card's mean."""
    assert any("Spearman" in m.value for m in app.markdown)
    (table,) = app.table
    rows = table.value
    this_input = [float(v) for v in rows["Spearman, this input"] if not str(v).startswith("—")]
    assert this_input and all(-1 <= v <= 1 for v in this_input)
    assert any("n = " in str(v) for v in rows["Spearman, held-out mean"])


@pytest.mark.parametrize(
    ("page", "layer_key"),
    [("families/transformer/page.py", "tf_imp_layer"), ("families/bert/page.py", "bert_imp_layer"),
     ("families/gpt/page.py", "gpt_imp_layer")],
)  # fmt: skip
def test_each_page_opens_the_tab_and_shows_spearman(page, layer_key):
    at = open_view(open_app(page), TAB)
    _spearman_shown(at)
    at.selectbox(key=layer_key).set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert all(" L1" not in name for name in at.table[0].value["measure"])  # one layer kept
    at.selectbox(key=layer_key.replace("layer", "head")).set_value(1).run()
    assert not at.exception and any("H1" in name for name in at.table[0].value["measure"])


def test_the_transformer_tab_shows_the_runners_spearman_for_this_input():
    at = open_view(open_app("families/transformer/page.py"), TAB)
    model, _, src_vocab, tgt_vocab = load_checkpoint("transformer-dates-h4", Transformer, TransformerConfig)
    src = held_out("dates", 1)[0].src  # the page's default input
    expected = transformer_importance.measure(model, TASKS["dates"], src, src_vocab, tgt_vocab).comparison(0)
    shown = dict(zip(at.table[0].value["measure"], at.table[0].value["Spearman, this input"], strict=True))
    assert set(shown) == set(expected.correlations)
    for name, value in expected.correlations.items():
        assert shown[name] == f"{value:+.3f}", name
