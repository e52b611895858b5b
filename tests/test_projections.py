"""Raw vs projected self-attention: softmax(X Xᵀ) on the layer's real input, the weight on self, the
"projections off" intervention, the card's held-out means and the pages that show them."""

import json
import math

import numpy as np
import pytest
import torch

from analysis.projections import diagonal_mass, held_out_means, raw_vs_projected
from analysis.stats import head_statistics
from families.bert import runner as bert
from families.gpt import runner as gpt
from families.transformer import runner as transformer
from models.attention import Interventions, MultiHeadAttention
from models.checkpoints import ASSETS
from tasks import TASKS
from tests.helpers import open_app, open_view, sent_maps, shipped
from views.serving import held_out_examples


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(-1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(-1, keepdims=True)


def test_diagonal_mass_by_hand():
    w = np.array([[0.5, 0.5, 0.0], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    assert diagonal_mass(w) == pytest.approx((0.5 + 0.6 + 0.6) / 3)
    assert diagonal_mass(w, np.array([False, True, True])) == pytest.approx(0.6)
    # A hidden key: its column is masked out of the raw map too, and rows still sum to 1.
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    mask = np.ones((3, 3), dtype=bool)
    mask[:, 1] = False
    r = raw_vs_projected(("a", "b", "c"), x, w[None], mask, x_is="random rows")
    assert np.all(r.raw[:, 1] == 0) and np.allclose(r.raw.sum(-1), 1, atol=1e-6)


def test_transformer_raw_map_is_softmax_of_the_models_own_embeddings():
    model, _, sv, tv = shipped("transformer-dates-h4")
    src = held_out_examples("dates")[0].src
    r = transformer.run(model, TASKS["dates"], src, sv, tv)
    result = transformer.projections(r, "encoder", 0, pre_norm=True)
    # X from the weights: token embedding × √d + positions, then layer 0's pre-norm.
    with torch.no_grad():
        ids = torch.tensor([sv.encode(src)])
        x = model.encoder[0].norms[0](model.embed(model.src_emb, ids, Interventions()))[0].numpy()
    np.testing.assert_allclose(result.x, x, atol=1e-5)
    np.testing.assert_allclose(result.raw, softmax_rows(x.astype(np.float64) @ x.T), atol=1e-5)
    np.testing.assert_allclose(
        result.raw_scaled, softmax_rows(x.astype(np.float64) @ x.T / math.sqrt(64)), atol=1e-5
    )
    np.testing.assert_allclose(result.raw.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.raw_output, result.raw @ x, atol=1e-4)
    np.testing.assert_array_equal(result.learned, r.blocks["encoder"][0].weights)
    # The material's claim, measured: without projections the weight sits on the diagonal.
    assert result.diagonal["raw"] > 0.5 > result.diagonal["heads (mean)"]


def test_decoder_raw_map_keeps_the_causal_mask_and_skips_rows_without_a_choice():
    model, _, sv, tv = shipped("transformer-dates-h4")
    r = transformer.run(model, TASKS["dates"], held_out_examples("dates")[0].src, sv, tv)
    result = transformer.projections(r, "decoder_self", 1, pre_norm=True)
    assert np.all(np.triu(result.raw, 1) == 0)
    assert not result.rows[0] and result.rows[1:].all()
    with pytest.raises(ValueError, match="one sequence"):
        transformer.projections(r, "cross", 0, pre_norm=True)


def test_bert_raw_map_is_softmax_of_the_pretrained_embeddings():
    loaded = bert.load_bert(bert.default_folder())
    enc = bert.encode(loaded, "The bank of the river was muddy.")
    layers = bert.projections(loaded, enc)
    assert len(layers) == loaded.config.num_hidden_layers
    m = loaded.model
    with torch.no_grad():
        ids = torch.tensor([enc.ids])
        x = m.emb_norm(
            m.word(ids)
            + m.segment(torch.tensor([enc.type_ids]))
            + m.position(torch.arange(len(enc.ids)))[None]
        )
    x = x[0].numpy().astype(np.float64)
    np.testing.assert_allclose(layers[0].x, x, atol=1e-4)
    np.testing.assert_allclose(layers[0].raw, softmax_rows(x @ x.T), atol=1e-5)
    np.testing.assert_array_equal(layers[0].learned, bert.run(loaded, enc).weights[0])


def test_gpt_raw_map_is_causal_softmax_of_its_layer_input():
    loaded = gpt.load()
    model = loaded.model
    prompt = gpt.prepare(loaded, "def add(a, b):\n    return a + b\n")
    layers = gpt.projections(loaded, prompt)
    with torch.no_grad():
        ids = torch.tensor([prompt.ids])
        x = model.blocks[0].ln_1(model.tok_emb(ids) + model.pos_emb.weight[: len(prompt.ids)])[0].numpy()
    x = x.astype(np.float64)
    scores = np.where(np.tril(np.ones((len(x), len(x)), dtype=bool)), x @ x.T, -np.inf)
    np.testing.assert_allclose(layers[0].raw, softmax_rows(scores), atol=1e-5)
    assert np.all(np.triu(layers[0].raw, 1) == 0)


def test_projections_off_is_q_equals_k_equals_x_per_head():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval().requires_grad_(False)
    x = torch.randn(1, 5, 8)
    out, trace = mha(query=x, key=x, value=x, project_qk=False, return_trace=True)
    for h in range(2):
        xh = x[0, :, h * 4 : (h + 1) * 4].double()
        w = torch.softmax(xh @ xh.T / 2.0, -1)
        np.testing.assert_allclose(trace.heads.weights[0, h].double(), w, atol=1e-6)
    fused, _ = mha(query=x, key=x, value=x, project_qk=False)  # the fast path computes the same
    np.testing.assert_allclose(fused, out.detach(), atol=1e-5)
    projected, _ = mha(query=x, key=x, value=x)
    assert not torch.allclose(projected, out)
    kwargs = Interventions(unprojected=frozenset({("encoder", 1)})).attention_kwargs("encoder", 1, 2)
    assert kwargs["project_qk"] is False
    assert Interventions().attention_kwargs("encoder", 1, 2)["project_qk"] is True


def test_cards_hold_the_held_out_diagonal_mass_and_it_recomputes():
    names = [p.stem for p in ASSETS.glob("transformer-*.json")] + ["gpt-stdlib", "bert-minilm"]
    for name in names:
        card = json.loads((ASSETS / f"{name}.json").read_text())
        blocks = card["diagonal_mass"]
        assert set(blocks) == ({"encoder", "decoder_self"} if name.startswith("transformer") else {"self"})
        for entry in blocks.values():
            assert entry["n"] >= 50 and "definition" in entry
            for layer in entry["layers"]:
                assert layer["raw"] > np.mean(layer["heads"])  # raw piles onto itself more than the heads do
    model, card, sv, tv = shipped("transformer-dates-h4")
    runs = [transformer.run(model, TASKS["dates"], ex.src, sv, tv) for ex in held_out_examples("dates", 100)]
    again = held_out_means(
        [[transformer.projections(r, "encoder", i, pre_norm=True) for i in range(2)] for r in runs]
    )
    # Means of float32 softmax weights, measured on the machine that made the card: another CPU or
    # thread count rounds each weight differently in its last bits (~1e-7), and so their means.
    for ours, stored in zip(again["layers"], card["diagonal_mass"]["encoder"]["layers"], strict=True):
        assert ours["raw"] == pytest.approx(stored["raw"], abs=1e-5)
        assert ours["heads"] == pytest.approx(stored["heads"], abs=1e-5)


def test_head_statistics_report_the_weight_on_self():
    r = transformer.example()
    card = shipped("transformer-dates-h4")[1]
    rows = head_statistics(r.maps["encoder"], card["diagonal_mass"]["encoder"]["layers"])
    assert rows[5]["weight on self"] == pytest.approx(
        float(np.diagonal(r.maps["encoder"].weights[1, 1]).mean())
    )
    assert (
        rows[5]["weight on self, held-out mean"] == card["diagonal_mass"]["encoder"]["layers"][1]["heads"][1]
    )
    assert "weight on self" not in head_statistics(r.maps["cross"])[0]  # queries and keys differ
    # Causal self-attention: the first row (only itself, weight exactly 1) is left out, as in the card.
    g = gpt.example()
    first = head_statistics(g.maps["self"])[0]
    assert first["weight on self"] == pytest.approx(
        float(np.diagonal(g.maps["self"].weights[0, 0])[1:].mean())
    )


def default_layer0(page: str):
    """Layer 0's comparison on the page's default input, by the runner (the transformer's encoder)."""
    if "/transformer/" in page:
        model, _, sv, tv = shipped("transformer-dates-h4")
        r = transformer.run(model, TASKS["dates"], held_out_examples("dates")[0].src, sv, tv)
        return transformer.projections(r, "encoder", 0, pre_norm=True)
    if "/gpt/" in page:
        loaded = gpt.load()
        return gpt.projections(loaded, gpt.prepare(loaded, gpt.EXAMPLE))[0]
    loaded = bert.load_bert(bert.default_folder())
    return bert.projections(loaded, bert.encode(loaded, bert.EXAMPLE_TEXT[0], BERT_PAGE_B))[0]


BERT_PAGE_B = "The creature stayed on the pavement, exhausted."  # the BERT page's default sentence B


@pytest.mark.parametrize("page", [f"families/{f}/page.py" for f in ("transformer", "gpt", "bert")])
def test_pages_show_raw_vs_projected_with_the_runners_numbers(page):
    app = open_view(open_app(page), "Raw vs projected")
    values = {m.label: m.value for m in app.metric}
    expected = default_layer0(page).diagonal
    assert values["Weight on self, softmax(XXᵀ)"] == f"{expected['raw']:.3f}"
    assert values["… softmax(XXᵀ/√d)"] == f"{expected['raw ÷ √d']:.3f}"
    assert values["… learned head 0"] == f"{expected['head 0']:.3f}"
    assert values["… learned heads, mean"] == f"{expected['heads (mean)']:.3f}"
    result = default_layer0(page)  # the three maps drawn: head 0, softmax(XXᵀ), softmax(XXᵀ/√d), the runner's
    for i, want in enumerate((result.learned[0], result.raw, result.raw_scaled)):
        got = sent_maps(app, f"proj_map{i}")[0, 0]
        np.testing.assert_array_equal(got, want[: got.shape[0], : got.shape[1]])
    assert any("held-out inputs" in m.value for m in app.markdown)


def test_weight_on_self_leaves_out_rows_without_a_choice():
    # A hidden token's row (its own key masked) and a padded run's <pad> rows are not averaged.
    loaded = bert.load_bert(bert.default_folder())
    enc = bert.encode(loaded, "the river bank was muddy")
    plain, hidden = (
        bert.projections(loaded, enc)[0],
        bert.projections(loaded, enc, Interventions(hidden_keys=(2,)))[0],
    )
    assert plain.rows.all() and not hidden.rows[2] and hidden.rows.sum() == len(enc.ids) - 1
    assert hidden.diagonal["raw"] > 0.9  # not dragged towards 0 by the hidden row's exact 0
    model, _, sv, tv = shipped("transformer-dates-h4")
    src = held_out_examples("dates")[0].src
    r = transformer.run(model, TASKS["dates"], src, sv, tv)
    padded = transformer.run(model, TASKS["dates"], src, sv, tv, pad_to=len(src) + 20)
    one, two = (transformer.projections(x, "encoder", 0, pre_norm=True) for x in (r, padded))
    assert two.rows.sum() == one.rows.sum() == len(src)
    assert two.diagonal["raw"] == pytest.approx(one.diagonal["raw"], abs=1e-5)
    assert two.diagonal["heads (mean)"] == pytest.approx(one.diagonal["heads (mean)"], abs=1e-5)
    # One visible key per query: no choice anywhere, so NaN (the view says so instead of a number).
    x, learned, mask = np.ones((1, 4), dtype=np.float32), np.ones((1, 1, 1)), np.ones((1, 1), bool)
    lone = raw_vs_projected(("a",), x, learned, mask, x_is="one row")
    assert not lone.rows.any() and math.isnan(lone.diagonal["raw"]) and math.isnan(lone.self_similarity)


def test_the_view_says_when_there_is_no_choice():
    from streamlit.testing.v1 import AppTest

    def one_row() -> None:
        import numpy as np

        from analysis.projections import raw_vs_projected
        from views.projections import comparison

        result = raw_vs_projected(("a",), np.ones((1, 4), dtype=np.float32), np.ones((1, 1, 1)),
                                  np.ones((1, 1), bool), x_is="one row")  # fmt: skip
        comparison(result, "t", projections_off=True)

    app = AppTest.from_function(one_row).run()
    assert not app.exception
    assert any("sees only itself" in i.value for i in app.info)
    assert any("switched off in this layer" in w.value for w in app.warning)


def test_switching_projections_off_changes_output_and_exact_match():
    app = open_app("families/transformer/page.py")
    app.session_state["tf_unprojected"] = [("encoder", 0), ("encoder", 1)]
    app.run()
    assert not app.exception
    (exact,) = [m for m in app.metric if m.label.startswith("Exact match")]
    assert exact.delta is not None and exact.delta.startswith("-")


def test_the_measurement_cli_writes_its_own_card_key(tmp_path):
    import shutil

    from training.measure import main

    for name in ("gpt-stdlib.json", "gpt-stdlib.safetensors", "stdlib.tokenizer.json"):
        shutil.copy(ASSETS / name, tmp_path / name)
    before = json.loads((tmp_path / "gpt-stdlib.json").read_text())
    main(["--folder", str(tmp_path), "diagonal-mass", "--family", "gpt", "--n", "2"])
    after = json.loads((tmp_path / "gpt-stdlib.json").read_text())
    assert after["diagonal_mass"]["self"]["n"] == 2 and len(after["diagonal_mass"]["self"]["layers"]) == 2
    assert {k: v for k, v in after.items() if k != "diagonal_mass"} == {
        k: v for k, v in before.items() if k != "diagonal_mass"
    }
