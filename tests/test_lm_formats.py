"""Where weights come from: GGUF files of every architecture transformers reads from GGUF (llama — also
Mistral —, qwen2, qwen3, gemma2, gpt2), sharded safetensors, the hub cache's layout; and the tokenizers and
chat templates that come with them, each against transformers on the same files.

Tolerances as tests/test_decoders.py: maps 1e-4, logits 1e-3, greedy continuations identical. The GGUF
files hold Q8_0 blocks, dequantised by ``gguf`` on both sides.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from models.lm_checkpoint import open_checkpoint
from models.lm_tokenizer import render_chat
from tests import lm_checkpoints as lm
from tests import lm_gguf

transformers = pytest.importorskip("transformers")

HIDDEN = {
    "english": "The quick brown fox jumps over the lazy dog, twice.",
    "code": 'def area(r):\n    """Circle."""\n    return 3.14159 * r ** 2\n\nprint(area(2))\n',
    "scripts": "Привет, мир! 東京は日本の首都です。 مرحبا بالعالم",
    "emoji": "I ❤️ pizza 🍕🇫🇷 and 😀👍🏽 too",
    "spaces": "  two  spaces\tand a tab\n\n  x =  12",
}
TEXT = "The sliding window hides keys that are further back than the window allows, and RoPE turns them."


@pytest.fixture(scope="module")
def tokenizers():
    return {byte_level: lm.train_tokenizer(byte_level) for byte_level in (True, False)}


def compare(ours, ref, ids):
    x = torch.tensor([ids])
    with torch.inference_mode():
        logits, trace = ours(x, return_trace=True, capture="weights")
        out = ref(x, output_attentions=True)
    maps = (trace.weights - torch.stack(out.attentions, 1)).abs().max().item()
    return maps, (logits - out.logits).abs().max().item()


def greedy_equal(ours, ref, ids, n: int = 12) -> bool:
    steps = [s.token for s in ours.stream(ids, new_tokens=n)]
    with torch.inference_mode():
        theirs = ref.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              eos_token_id=None, pad_token_id=0)  # fmt: skip
    return steps == theirs[0, len(ids) :].tolist()


# --- GGUF ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(lm.TINY))
def gguf_pair(request, tmp_path_factory, tokenizers):
    arch = request.param
    folder = tmp_path_factory.mktemp(f"gguf-{arch}")
    template = lm.CHATML if arch in lm.BYTE_LEVEL else lm.INST
    path = lm_gguf.write_gguf(lm_gguf.hf_model_for_gguf(arch), tokenizers[arch in lm.BYTE_LEVEL], arch,
                              folder / f"tiny-{arch}.gguf", chat_template=template)  # fmt: skip
    ref = lm.reference(folder, path.name)
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=path.name)
    return arch, open_checkpoint(path, torch.device("cpu")), ref, ref_tok


def test_gguf_maps_logits_and_greedy_equal_transformers(gguf_pair):
    arch, opened, ref, _ = gguf_pair
    ids = opened.tokenizer.encode(TEXT).ids[:24]
    maps, logits = compare(opened.model, ref, ids)
    print(f"gguf {arch}: maps {maps:.2e}, logits {logits:.2e}")
    assert maps <= 1e-4 and logits <= 1e-3
    assert greedy_equal(opened.model, ref, ids[:10])


@pytest.mark.parametrize("text", list(HIDDEN))
def test_gguf_tokenizer_equals_transformers(gguf_pair, text):
    arch, opened, _, ref_tok = gguf_pair
    ids = opened.tokenizer.encode(HIDDEN[text]).ids
    assert ids == ref_tok(HIDDEN[text])["input_ids"]
    assert opened.tokenizer.decode(ids) == ref_tok.decode(ids, skip_special_tokens=True)


def test_gguf_chat_template_renders_as_transformers(gguf_pair):
    arch, opened, _, ref_tok = gguf_pair
    chat = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"}]  # fmt: skip
    ours = render_chat(opened.chat_template, chat, special=opened.special_tokens)
    assert ours == ref_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def test_gguf_llama3_frequency_factors_equal_the_folders_rope_scaling(tmp_path, tokenizers):
    """llama.cpp stores Llama 3's RoPE scaling as ``rope_freqs`` factors, which transformers' GGUF reader
    ignores: ours applies them, so the GGUF runs as the original folder does (float32 factors: ~1e-7)."""
    model = lm.random_model("llama")
    folder = tmp_path / "folder"
    model.save_pretrained(folder)
    path = lm_gguf.write_gguf(model, tokenizers[False], "llama", tmp_path / "l3.gguf", quantize=False,
                              with_rope_freqs=True)  # fmt: skip
    ours = open_checkpoint(path, torch.device("cpu"))
    assert ours.model.cfg.rope_scaling.kind == "factors"
    maps, logits = compare(ours.model, lm.reference(folder), ours.tokenizer.encode(TEXT).ids[:24])
    assert maps <= 1e-4 and logits <= 1e-3


# --- Hugging Face folders --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory, tokenizers):
    return lm.write_checkpoint("qwen2", tmp_path_factory.mktemp("qwen2"), tokenizers[True])


@pytest.mark.parametrize("byte_level", [True, False])
@pytest.mark.parametrize("text", list(HIDDEN))
def test_folder_tokenizer_equals_transformers(tmp_path_factory, tokenizers, byte_level, text):
    folder = tmp_path_factory.getbasetemp() / f"tok-{byte_level}"
    if not folder.exists():
        folder.mkdir()
        lm.save_tokenizer("qwen2" if byte_level else "llama", folder, tokenizers[byte_level])
    from models.lm_tokenizer import hf_tokenizer

    ours = hf_tokenizer(folder).tokenizer
    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert ours.encode(HIDDEN[text]).ids == ref(HIDDEN[text])["input_ids"]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_folder_chat_template_renders_as_transformers(tmp_path, tokenizers, arch):
    lm.save_tokenizer(arch, tmp_path, tokenizers[arch in lm.BYTE_LEVEL])
    from models.lm_tokenizer import hf_tokenizer

    ours = hf_tokenizer(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    chat = [{"role": "user", "content": "Bonjour <b>&</b> 🍕"}]
    for prompt in (True, False):
        expected = ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt)
        assert (
            render_chat(ours.chat_template, chat, add_generation_prompt=prompt, special=ours.special)
            == expected
        )
    if arch == "llama":  # the template's own raise_exception: a clear ValueError, as transformers refuses it
        wrong = [{"role": "assistant", "content": "first"}]
        with pytest.raises(ValueError, match="roles must alternate"):
            render_chat(ours.chat_template, wrong, special=ours.special)


def test_sharded_and_half_precision_folders_load_the_same_numbers(tmp_path, tokenizers, qwen_folder):
    model = lm.random_model("qwen2")
    lm.write_checkpoint("qwen2", tmp_path / "sharded", tokenizers[True], max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 2
    single, sharded = (
        open_checkpoint(f, torch.device("cpu")).model for f in (qwen_folder, tmp_path / "sharded")
    )
    for (name, a), b in zip(single.state_dict().items(), sharded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    lm.save_tokenizer("qwen2", tmp_path / "bf16", tokenizers[True])
    half = open_checkpoint(tmp_path / "bf16", torch.device("cpu"))
    maps, logits = compare(half.model, lm.reference(tmp_path / "bf16"), half.tokenizer.encode(TEXT).ids[:24])
    assert half.model.tok_emb.weight.dtype == torch.float32 and maps <= 1e-4 and logits <= 1e-3


def hub_entry(cache, folder, name: str = "models--tiny-org--tiny-qwen", revision: str = "abc123"):
    """``folder`` laid out as the hub cache lays out a download: blobs by hash, a snapshot of symlinks."""
    repo = cache / name
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for i, f in enumerate(sorted(folder.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(f"../../blobs/{blob.name}")
    return repo


def test_hub_cache_entry_opens_its_snapshot(tmp_path, qwen_folder):
    repo = hub_entry(tmp_path / "hub", qwen_folder)
    opened = open_checkpoint(repo, torch.device("cpu"))
    direct = open_checkpoint(qwen_folder, torch.device("cpu"))
    assert opened.path == repo / "snapshots" / "abc123" and opened.format == "hf"
    assert all(
        torch.equal(a, b) for a, b in zip(opened.model.parameters(), direct.model.parameters(), strict=True)
    )
    assert opened.chat_template == lm.CHATML and opened.stop_ids == direct.stop_ids
