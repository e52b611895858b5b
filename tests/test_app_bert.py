"""The Pretrained BERT page through AppTest: views show the model's own weights; controls work."""

import json

import numpy as np
import pytest

from families.bert.runner import encode, run, value_weighted
from models.attention import Interventions
from models.bert import default_folder, load_bert
from tests.helpers import open_app, open_view, sent, sent_maps


@pytest.fixture(scope="module")
def bert():
    return load_bert(default_folder())


@pytest.fixture
def at():
    return open_app("families/bert/page.py")


def metric(app, label):
    (m,) = [m for m in app.metric if m.label.startswith(label)]
    return m


def texts(app):
    b = app.text_input(key="b").value
    return app.text_area(key="a").value, b or None


def test_zoomed_head_is_the_models_own(at, bert):
    open_view(at, "Model view")
    expected = run(bert, encode(bert, *texts(at))).weights
    panels = sent_maps(at, "bert_model")  # all 72 heads sent exact, each the model's own
    np.testing.assert_array_equal(panels, expected)


def test_interventions_change_the_embedding_and_similarity(at, bert):
    assert metric(at, "cos(embedding").value == "1.0000"
    at.sidebar.multiselect(key="bert_ablate").set_value([(5, h) for h in range(12)]).run()
    enc = encode(bert, *texts(at))
    iv = Interventions(ablate=frozenset(("encoder", 5, h) for h in range(12)))
    expected = float(run(bert, enc, iv).embedding @ run(bert, enc).embedding)
    assert metric(at, "cos(embedding").value == f"{expected:.4f}" and expected < 0.9999
    assert metric(at, "Pair similarity").delta is not None


def test_neuron_view_and_token_mask(at):
    open_view(at, "Neuron view")
    at.selectbox(key="bert_nv_layer").set_value(1).run()
    caption = [c.value for c in at.caption if "Σ of each q ⊙ k row" in c.value]
    assert caption and float(caption[0].rsplit("=", 1)[1]) < 1e-4
    at.sidebar.multiselect[0].set_value([1]).run()
    open_view(at, "Model view")
    z = sent_maps(at, "bert_model")  # (L, h, T, T): every query of every head, key 1 hidden
    assert z.ndim == 4 and (z[..., 1] == 0).all() and (z[..., 0] > 0).all()


def test_long_empty_and_hostile_text(at):
    at.text_area(key="a").set_value("<script>alert(1)</script> " + "token " * 900).run()
    assert not at.exception
    assert any("longer than the model's 512 tokens" in w.value for w in at.warning)
    assert metric(at, "Tokens").value == "512"
    assert at.slider(key="bert_window").max == 512 - 64  # the long input is windowed, not a 512² wall
    at.text_area(key="a").set_value("   ").run()
    assert any("Type a sentence" in i.value for i in at.info)


def test_bad_checkpoint_folder_gets_a_message(tmp_path, monkeypatch):
    (tmp_path / "empty-folder").mkdir()
    monkeypatch.setenv("ATTENTION_EXPLORER_BERT_DIR", str(tmp_path))  # the operator's folder; visitors pick
    at = open_app("families/bert/page.py")
    at.selectbox(key="bert_folder").set_value(str(tmp_path / "empty-folder")).run()
    assert not at.exception
    assert any("lacks config" in e.value for e in at.error)


def test_export_buttons_and_svg(at):
    at.sidebar.radio(key="bert_fmt").set_value("svg").run()
    open_view(at, "Neuron view")  # a Plotly chart: the attention component exports its own PNG
    cfg = json.loads([c for c in at.get("plotly_chart") if "bert_nv_bars" in c.proto.id][0].proto.config)
    assert cfg["toImageButtonOptions"]["format"] == "svg"
    open_view(at, "Export")
    assert len(at.get("download_button")) == 2


def test_value_weighted_tab_draws_the_runners_two_maps_per_head(at, bert):
    open_view(at, "Value-weighted")
    at.selectbox(key="bert_vw_layer").set_value(2).run()
    weights, norms = value_weighted(bert, encode(bert, *texts(at)), 2)
    header, _, _ = sent(at, "bert_vw")
    assert header["layer_names"] == ["α", "‖α·v·W_O‖"]
    np.testing.assert_array_equal(sent_maps(at, "bert_vw"), np.stack([weights, norms]))
    table = at.dataframe[-1].value
    assert len(table) == 12
    special = encode(bert, *texts(at)).special
    on_special = weights[..., special].sum(-1).mean(-1)  # (12,): float32 sums in the view's order too
    np.testing.assert_allclose(table["attention on [CLS]/[SEP]"], on_special, rtol=1e-6)
