"""The Circuits tab (views/circuits.py) on the GPT page: every number shown is the runners' own, and a
bad pair gets a message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import circuits as C
from analysis import lm_circuits
from analysis import patching as P
from families.gpt import runner as gpt
from tasks import probes
from tests.helpers import array, chart, open_app, open_view, sent, sent_maps

GPT_PAGE = "families/gpt/page.py"


@pytest.fixture(scope="module")
def loaded():
    return gpt.load()


def ids_of(loaded, text: str) -> tuple[int, ...]:
    return gpt.prepare(loaded, text).ids


def circuits_tab():
    app = open_view(open_app(GPT_PAGE), "Circuits")
    assert not app.exception
    return app


def preset_pair(loaded) -> tuple[tuple[int, ...], tuple[int, ...], C.Pair]:
    """The tab's first preset, as it opens: the clean and corrupted ids and the preset's words."""
    preset = probes.CODE[0]
    clean, corrupt = ids_of(loaded, preset.prompt), ids_of(loaded, preset.corrupt)
    tokenizer = loaded.vocabulary.tokenizer
    target, rival = (tokenizer.encode(word).ids[0] for word in (preset.target, preset.rival))
    return clean, corrupt, C.Pair(target, rival)


def test_the_preset_pairs_metric_and_direct_effects_are_the_runners(loaded):
    model = loaded.model
    clean, corrupt, pair = preset_pair(loaded)
    app = circuits_tab()
    # Target and rival are offered from the preset's words, then the model's ten most likely next tokens.
    top = torch.topk(C.forward(model, clean, pair).logits[0, -1].float(), 10).indices.tolist()
    (target,) = [s for s in app.selectbox if s.label == "Target token"]
    assert target.options == [loaded.label(i) for i in dict.fromkeys([pair.target, pair.rival, *top])]
    metrics = {m.label: m.value for m in app.metric}
    label = f"logit({loaded.label(pair.target)}) − logit({loaded.label(pair.rival)}), clean"
    assert metrics[label] == f"{C.forward(model, clean, pair).value:+.3f}"
    assert metrics["…on the corrupted prompt"] == f"{C.forward(model, corrupt, pair).value:+.3f}"
    # The logit lens: the grid's last row is the model's own output at every position.
    lens = C.logit_lens(model, C.forward(model, clean, pair), pair)
    (heat,) = chart(app, "gpt_circ_lens_grid")["data"]
    np.testing.assert_array_equal(array(heat["z"]).reshape(lens.target_prob.shape), lens.target_prob)
    app.radio(key="gpt_circ_section").set_value("Direct attribution").run()
    direct = C.direct_attribution(model, C.forward(model, clean, pair), pair)
    (heat,) = chart(app, "gpt_circ_dla")["data"]
    shown = array(heat["z"]).reshape(direct.heads.shape)
    np.testing.assert_array_equal(shown, direct.heads.astype(np.float32))
    assert f"{direct.total:+.4f}" in app.caption[-1].value


def test_exact_patching_on_the_page_equals_the_sweep(loaded):
    model = loaded.model
    clean, corrupt, pair = preset_pair(loaded)
    app = circuits_tab()
    app.radio(key="gpt_circ_section").set_value("Patching").run()
    app.selectbox(key="gpt_circ_kind").set_value("each head, every position").run()
    assert any("patched copies" in c.value for c in app.caption)
    layout = chart(app, "gpt_circ_attr")["layout"]  # one row per layer, one column per head of the network
    assert layout["yaxis"]["ticktext"] == [f"L{i}" for i in range(len(model.blocks))]
    assert layout["xaxis"]["ticktext"] == [f"H{h}" for h in range(model.blocks[0].attn.n_heads)]
    app.toggle(key="gpt_circ_exact").set_value(True).run()
    assert not app.exception
    runs = C.forward(model, clean, pair), C.forward(model, corrupt, pair)
    sweep = P.head_sweep(model, *runs, pair)
    (heat,) = chart(app, "gpt_circ_sweep")["data"]
    # The page's sweep and this one batch the same copies the same way: equal to float32 rounding of the
    # division (the restored share is computed from the same values).
    np.testing.assert_allclose(array(heat["z"]).reshape(sweep.restored.shape), sweep.restored, atol=1e-5)
    assert chart(app, "gpt_circ_agree")["layout"]["title"]["text"].startswith("Attribution vs exact: r = ")


def test_ablation_names_its_method_and_a_bad_pair_gets_a_message(loaded):
    app = circuits_tab()
    app.radio(key="gpt_circ_section").set_value("Ablation").run()
    app.radio(key="gpt_circ_how").set_value("mean").run()
    assert not app.exception
    assert any("Mean ablation" in c.value and "preset prompts" in c.value for c in app.caption)
    (corrupt_box,) = [t for t in app.text_area if t.label.startswith("Corrupted prompt")]
    corrupt_box.set_value("x = 1").run()
    assert not app.exception
    assert any("needs the same count" in w.value for w in app.warning)
    (clean_box,) = [t for t in app.text_area if t.label == "Clean prompt"]
    clean_box.set_value("   ").run()
    assert not app.exception and app.info


def test_value_weighted_attention_draws_the_runners_two_maps(loaded):
    model = loaded.model
    clean, _, _ = preset_pair(loaded)
    app = circuits_tab()
    app.radio(key="gpt_circ_section").set_value("Value-weighted attention").run()
    app.number_input(key="gpt_circ_vw_layer").set_value(1).run()
    weights, norms = C.value_weighted(model, clean, 1)
    header, _, _ = sent(app, "gpt_circ_vw")
    assert header["layer_names"] == ["α", "‖α·v·W_O‖"] and header["rows"] == len(clean)
    np.testing.assert_array_equal(sent_maps(app, "gpt_circ_vw"), np.stack([weights, norms]))
    shares = app.dataframe[-1].value["attention on the first token"]
    np.testing.assert_allclose(shares, weights[:, 1:, 0].mean(-1), rtol=1e-6)  # rows with a choice


def test_a_served_call_reads_the_run_it_is_handed_or_traces_its_own(loaded):
    """`analysis.lm_circuits`: a call handed the traced run of its ids gives what it gives tracing the
    prompt itself (the same forward); a run of another prompt is refused, so no result is cached under
    the wrong prompt."""
    clean, corrupt, pair = preset_pair(loaded)
    run, seconds = lm_circuits.traced(loaded, clean)
    assert seconds > 0 and run.layers_heads == (len(loaded.model.blocks), loaded.model.blocks[0].attn.n_heads)
    handed, own = lm_circuits.direct(loaded, clean, pair, _clean=run), lm_circuits.direct(loaded, clean, pair)
    np.testing.assert_array_equal(handed.effects, own.effects)
    with pytest.raises(ValueError, match="another prompt"):
        lm_circuits.lens(loaded, corrupt, pair, _clean=run)
