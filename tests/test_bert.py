"""Our BERT encoder against Hugging Face transformers and sentence-transformers (test-time only)."""

import json
import shutil

import numpy as np
import pytest
import torch

from analysis.stats import rollout
from families.bert.runner import encode, neuron_layer, pair_similarity, run, value_weighted
from models.attention import Interventions
from models.bert import default_folder, load_bert
from tests.helpers import run_together

TOL = 1e-4  # hidden states and attention weights, absolute
SENTENCES = {
    "english": ("The animal didn't cross the street because it was too tired.", None),
    "pair": ("A man is playing a guitar.", "Someone plays an instrument."),
    "korean": ("나는 오늘 학교에 갔다.", None),
    "emoji": ("I love pizza 🍕🍕 so much 😍!", None),
    "punctuation": ("?!... ,;:", None),
    "long": (" ".join(["attention is all you need, said the paper"] * 80), None),  # > 512 pieces
}


@pytest.fixture(scope="module")
def ours():
    return load_bert(default_folder())


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    return transformers.BertModel.from_pretrained(str(default_folder()), attn_implementation="eager").eval()


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_hidden_states_and_all_72_attention_maps_match_transformers(ours, reference, name):
    a, b = SENTENCES[name]
    enc = encode(ours, a, b)
    ids, types = torch.tensor([enc.ids]), torch.tensor([enc.type_ids])
    with torch.inference_mode():
        mine = ours.model(ids, token_type_ids=types, return_trace=True)
        ref = reference(
            input_ids=ids, token_type_ids=types, output_attentions=True, output_hidden_states=True
        )
    assert len(mine.attentions) == 6 and mine.attentions[0].heads.weights.shape[1] == 12
    for h_ours, h_ref in zip(mine.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(h_ours, h_ref, atol=TOL, rtol=0)
    for t, a_ref in zip(mine.attentions, ref.attentions, strict=True):
        torch.testing.assert_close(t.heads.weights, a_ref, atol=TOL, rtol=0)
    if name == "long":
        assert len(enc.tokens) == 512 and enc.dropped > 0


def test_sentence_embeddings_match_sentence_transformers(ours):
    st_mod = pytest.importorskip("sentence_transformers")
    model = st_mod.SentenceTransformer(str(default_folder()), device="cpu")
    texts = [SENTENCES[k][0] for k in ("english", "korean", "emoji", "punctuation")]
    ref = model.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    for text, r in zip(texts, ref, strict=True):
        np.testing.assert_allclose(run(ours, encode(ours, text)).embedding, r, atol=TOL)
    a, b = SENTENCES["pair"]
    ea, eb = model.encode([a, b])
    assert pair_similarity(ours, encode(ours, a, b), a, b, Interventions()) == pytest.approx(
        float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)), abs=TOL
    )


def test_tokenisation_matches_the_tokenizer_template(ours):
    for a, b in [
        SENTENCES["pair"],
        (SENTENCES["korean"][0], None),
        (SENTENCES["emoji"][0], None),
        ("", None),
    ]:
        mine = encode(ours, a, b)
        ref = ours.tokenizer.encode(a, b) if b else ours.tokenizer.encode(a)
        assert list(mine.ids) == ref.ids and list(mine.type_ids) == ref.type_ids
    assert encode(ours, "", None).tokens == ("[CLS]", "[SEP]")
    assert "[UNK]" in encode(ours, "🍕").tokens
    assert len(encode(ours, "한국어 문장입니다").tokens) > 3  # Korean is spelled in word pieces


def test_interventions_and_rollout(ours):
    enc = encode(ours, "The cat sat on the mat.")
    base = run(ours, enc)
    masked = run(ours, enc, Interventions(hidden_keys=(2, 3)))
    assert (masked.weights[..., [2, 3]] == 0).all()
    ablated = run(ours, enc, Interventions(ablate=frozenset({("encoder", 5, h) for h in range(12)})))
    assert float(ablated.embedding @ base.embedding) < 0.999
    np.testing.assert_allclose(base.weights.sum(-1), 1.0, atol=1e-5)
    roll = rollout(base.weights)
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-5)
    nv = neuron_layer(ours, enc, Interventions(), 2).at(7, 3)
    np.testing.assert_allclose(nv.q @ nv.k.T, nv.raw_scores, atol=1e-4)
    np.testing.assert_allclose(nv.weights, base.weights[2, 7, 3], atol=1e-6)


def test_bring_your_own_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_bert(tmp_path)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(default_folder() / f, tmp_path / f)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**cfg, "hidden_act": "relu", "position_embedding_type": "rotary"})
    )
    with pytest.raises(ValueError, match="hidden_act 'relu'.*position_embedding_type 'rotary'"):
        load_bert(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_bert(tmp_path).config.num_hidden_layers == 6


def test_threads_on_one_shared_bert_get_their_own_maps(ours):
    """Sessions share one loaded BERT with no lock here: concurrent runs with different texts and
    interventions each get exactly the maps the same run gives alone."""
    jobs = [
        (text, Interventions(temperature=t))
        for text in ("The bank raised rates.", "나는 오늘 학교에 갔다.", "I love pizza 🍕 so much!")
        for t in (1.0, 2.5)
    ]
    with torch.inference_mode():
        alone = [run(ours, encode(ours, text), iv).weights for text, iv in jobs]
    got: list = [None] * len(jobs)

    def work(i: int) -> None:
        text, iv = jobs[i]
        with torch.inference_mode():
            for _ in range(3):
                w = run(ours, encode(ours, text), iv).weights
                got[i] = w if got[i] is None or np.array_equal(got[i], w) else "mixed"

    run_together(work, len(jobs))
    for g, a in zip(got, alone, strict=True):
        assert not isinstance(g, str) and np.array_equal(g, a)


def test_value_weighted_norms_are_recomputed_from_the_layers_own_weights(ours):
    """‖α_ij · v_j W_O^h‖ with v_j = x_j W_Vᵀ + b_V from the hidden state that enters the layer (the
    trace is not read here), per head's slice of W_O; [CLS] and [SEP] move less than they are looked
    at (Kobayashi et al. 2020), on this sentence, summed over every head of layer 3."""
    enc = encode(ours, "The bank raised interest rates again.")
    weights, norms = value_weighted(ours, enc, 3)
    attn = ours.model.layers[3].attention
    with torch.inference_mode():
        out = ours.model(torch.tensor([enc.ids]), token_type_ids=torch.tensor([enc.type_ids]))
        v = attn.w_v(out.hidden_states[3])[0].view(len(enc.ids), attn.n_heads, attn.d_head)  # (T, h, d_head)
        w_o = attn.w_o.weight.view(attn.d_model, attn.n_heads, attn.d_head)
        moved = torch.stack([v[:, h] @ w_o[:, h].T for h in range(attn.n_heads)]).norm(dim=-1)  # (h, T)
    np.testing.assert_array_equal(weights, run(ours, enc).weights[3])  # the same forward as the run
    np.testing.assert_allclose(norms, weights * moved.numpy()[:, None, :], rtol=1e-4, atol=1e-6)
    special = enc.special
    looked = weights[..., special].sum(-1).mean()
    moved_share = (norms[..., special].sum(-1) / norms.sum(-1)).mean()
    assert moved_share < looked
