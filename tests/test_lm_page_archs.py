"""Every view of the language-model page on every architecture the core runs (tests/lm_checkpoints.py's tiny
Llama, Mistral, Qwen 2, Qwen 3, Gemma 2 and GPT-2), through AppTest: the page opens, each tab opens without
an exception, the maps drawn are the runner's own, and what an architecture lacks is said in a sentence —
Gemma 2's direct attribution (its heads do not sum to the stream), GPT-2's RoPE (learned positions, whose
similarity is shown from its own weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import circuits as C
from families.llm import runner
from tests import lm_checkpoints as lm
from tests import lm_offered
from tests.helpers import array, chart, open_app, open_view, sent_maps
from views.circuits import NOT_ADDITIVE

pytest.importorskip("transformers")

PAGE = "families/llm/page.py"
ARCHS = list(lm.TINY)
SHARING = {"llama": "Grouped-query", "mistral": "Multi-query", "qwen2": "Grouped-query",
           "qwen3": "Grouped-query", "gemma2": "Grouped-query", "gpt2": "Multi-head"}  # fmt: skip
WINDOWED = {"mistral": "every layer", "qwen2": "layers L1", "gemma2": "layers L0"}  # lm_checkpoints.TINY


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return lm_offered.write_models(tmp_path_factory.mktemp("lm-archs") / "models", ARCHS)


@pytest.fixture(scope="module")
def offered(folder):
    with lm_offered.offered(folder, ATTENTION_EXPLORER_LM=str(folder / "tiny-llama")):
        yield folder


def page_run(arch: str):
    loaded = runner.open_lm(f"tiny-{arch}")
    prompt = runner.prepare(loaded, runner.EXAMPLE)
    return loaded, prompt, runner.run(loaded, prompt)


def texts(at) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "info", "error", "warning") for e in at.get(kind)]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_view_opens_on_each_architecture_with_the_runners_maps(offered, arch):
    at = open_view(open_app(PAGE, llm_checkpoint=f"tiny-{arch}"), "Attention")
    loaded, prompt, run = page_run(arch)
    weights = run.maps["self"].weights  # (L, h, T, T): the model's own, every layer at this length
    np.testing.assert_array_equal(sent_maps(at, "llm_map"), weights)
    np.testing.assert_array_equal(sent_maps(open_view(at, "Model view"), "llm_model"), weights)
    checks = [c.label for c in at.sidebar.checkbox]
    assert ("RoPE (rotary positions)" in checks) == (arch != "gpt2")  # RoPE off only where there is RoPE
    for label in [t.label for t in at.tabs]:
        open_view(at, label)
        assert not at.exception and not at.error, (label, [e.value for e in at.exception])
    open_view(at, "GQA")
    assert any(t.startswith(f"**{SHARING[arch]} attention.**") for t in texts(at))
    windowed = [t for t in texts(at) if "sliding window" in t and "the KV cache here still keeps every" in t]
    assert bool(windowed) == (arch in WINDOWED) and all(WINDOWED[arch] in t for t in windowed)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "gpt2"])
def test_the_rope_tab_checks_its_sweep_against_the_models_own_score(offered, arch):
    """Llama's llama3 frequency scaling, Gemma 2's own scale and soft cap, Qwen 3's q/k norms: the sweep at
    the real offset is the model's pre-softmax score (the ✅ of the view's check)."""
    at = open_view(open_app(PAGE, llm_checkpoint=f"tiny-{arch}"), "RoPE")
    checks = [t for t in texts(at) if "Check: the sweep at the real offset" in t]
    assert len(checks) == 1 and checks[0].startswith("✅"), checks


def test_gpt2s_rope_tab_says_why_not_and_shows_its_position_vectors(offered, folder):
    at = open_view(open_app(PAGE, llm_checkpoint="tiny-gpt2"), "RoPE")
    assert any(t.startswith("**This model has no RoPE.**") for t in texts(at))
    shown = array(chart(at, "llm_positions")["data"][0]["z"])
    wpe = lm.reference(folder / "tiny-gpt2").transformer.wpe.weight.detach().double().numpy()[: len(shown)]
    unit = wpe / np.linalg.norm(wpe, axis=1, keepdims=True)
    np.testing.assert_allclose(shown, unit @ unit.T, atol=1e-6)  # float32 against float64: rounding only


def circuits(at, section: str):
    open_view(at, "Circuits")
    at.radio(key="llm_circ_section").set_value(section).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("arch", ARCHS)
def test_direct_attribution_adds_up_or_says_why_not(offered, arch):
    at = circuits(open_app(PAGE, llm_checkpoint=f"tiny-{arch}"), "Direct attribution")
    said = [i.value for i in at.info if i.value == NOT_ADDITIVE]
    if arch == "gemma2":  # the post-attention norm: no term per head adds up to the logit difference
        assert said and not at.get("plotly_chart")
        return
    assert not said
    (caption,) = [c.value for c in at.caption if "their effects sum to" in c.value]
    total, own = (float(caption.split(w)[1].split()[0].rstrip(";.")) for w in ("sum to", "difference is"))
    assert abs(total - own) <= 2e-3  # four decimals shown; float32 sums in another order


@pytest.mark.parametrize("arch", ["gemma2", "llama"])
def test_the_logit_lens_reads_every_stage_through_the_models_own_readout(offered, arch):
    """Gemma 2 caps its logits (final_logit_softcapping): each stage of the lens is capped as the model's
    readout caps, not only the last."""
    loaded, prompt, _ = page_run(arch)
    model = loaded.model
    run = C.forward(model, prompt.ids, None)
    top = C.candidates(run, 2)
    pair = C.Pair(int(top[0]), int(top[1]))
    lens = C.logit_lens(model, C.scored(run, pair), pair)
    with torch.inference_mode():
        first = sum(model.embedding_terms(run.ids).values())
        stages = [first] + [x for _, mid, post in run.streams for x in (mid, post)]
        read = torch.stack([model.readout(x)[0] for x in stages])  # (S, T, V): the forward's own ending
    want = (read[..., pair.target] - read[..., pair.rival]).numpy()
    np.testing.assert_allclose(lens.logit_diff, want, atol=1e-5)  # chunked matmuls: float order only
    if arch == "gemma2":
        cap = model.logit_softcap
        assert np.abs(read.numpy()).max() <= cap and np.abs(lens.logit_diff).max() <= 2 * cap


def test_a_sliding_window_models_generation_is_the_runners_through_its_cache(offered):
    at = open_view(open_app(PAGE, llm_checkpoint="tiny-mistral"), "Generate")
    assert any("the KV cache keeps every key" in c.value for c in at.caption)
    at.slider(key="llm_new").set_value(8)
    at.button(key="llm_go").click().run()
    assert not at.exception
    loaded, prompt, _ = page_run("mistral")
    want = [g.id for g in runner.generate(loaded, prompt, new_tokens=8)]
    assert [t[0] for t in at.session_state["llm_generated"]["tokens"]] == want
