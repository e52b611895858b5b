"""Tiny language-model checkpoints written at test time, one per architecture: transformers builds each from
random weights (nothing is downloaded) and saves it as a Hugging Face folder with a tokenizer trained here
on text every Python has (the pydoc topics). Shared by the decoder, format and catalog tests.

Random initialisation leaves norms at 1, biases at 0 and attention maps near uniform, where a wrong norm
order, a missing bias, a wrong RoPE or window would hide under the tolerance: every 1-D weight gets noise
and W_Q, W_K are scaled up (SHARPEN) so that the maps are sharp.
"""

from __future__ import annotations

import json
import pydoc_data.topics
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SHARPEN = 6.0  # W_Q and W_K × this: logits ~36× the random init's, maps far from uniform
VOCAB = 512
WINDOW = 5  # sliding windows shorter than every test prompt
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")  # fmt: skip
INST = ("{{ bos_token }}{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}{% if m['role'] == 'user' %}"
        "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}"
        "{% endfor %}")  # fmt: skip
# Each architecture at 2 layers, d 64, with the options that make it what it is switched on.
TINY = {
    "llama": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0,
                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 64}),
    "mistral": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, max_position_embeddings=256, sliding_window=WINDOW, head_dim=16),
    "qwen2": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, use_sliding_window=True,
                  sliding_window=WINDOW, max_window_layers=1, tie_word_embeddings=True),
    "qwen3": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, max_position_embeddings=256, tie_word_embeddings=True),
    "gemma2": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, max_position_embeddings=256,
                   sliding_window=WINDOW, attn_logit_softcapping=4.0, final_logit_softcapping=3.0),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=256),
}  # fmt: skip
BYTE_LEVEL = {"qwen2", "qwen3", "gpt2"}  # the rest have SentencePiece-style vocabularies
TOKENS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}


def corpus() -> list[str]:
    return [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:60]]


def train_tokenizer(byte_level: bool) -> Tokenizer:
    """A 512-token BPE: byte-level (GPT-2, Qwen) with ChatML's control tokens, or SentencePiece-style with
    byte fallback and a BOS post-processor (Llama, Mistral, Gemma)."""
    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        chatml = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB, special_tokens=chatml, initial_alphabet=alphabet, show_progress=False
        )
        tok.train_from_iterator(corpus(), trainer)
        return tok
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])  # fmt: skip
    specials = ["<unk>", "<s>", "</s>", *[f"<0x{i:02X}>" for i in range(256)]]
    tok.train_from_iterator(
        corpus(), trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


def hf_config(arch: str, **overrides):
    from transformers import AutoConfig

    tokens = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0} if arch not in BYTE_LEVEL else {
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0}  # fmt: skip
    return AutoConfig.for_model(arch, vocab_size=VOCAB, **{**TINY[arch], **overrides}, **tokens)


@torch.no_grad()
def random_model(arch: str, seed: int = 0, **overrides):
    """transformers' model of ``arch`` with random weights, sharpened (see the module's docstring)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = hf_config(arch, **overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            p.add_(0.2 * torch.randn_like(p))  # norms away from 1 (Gemma's from 0), biases away from 0
        if any(part in name for part in ("q_proj.weight", "k_proj.weight")):
            p.mul_(SHARPEN)
        if "c_attn.weight" in name:  # GPT-2's fused (in, 3·d): q and k are the first two thirds
            p[:, : 2 * p.shape[0]].mul_(SHARPEN)
    return model.eval()


def save_tokenizer(arch: str, folder: Path, tokenizer: Tokenizer) -> None:
    tokenizer.save(str(folder / "tokenizer.json"))
    byte_level = arch in BYTE_LEVEL
    config = {"tokenizer_class": "PreTrainedTokenizerFast" if byte_level else "LlamaTokenizer",
              "chat_template": CHATML if byte_level else INST}  # fmt: skip
    if byte_level:
        config.update(bos_token=None, eos_token="<|im_end|>", unk_token=None, pad_token="<|endoftext|>")
    else:
        config.update(bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def write_checkpoint(arch: str, folder: Path, tokenizer: Tokenizer, seed: int = 0, **save) -> Path:
    """A Hugging Face folder of a tiny random ``arch`` with ``tokenizer``; ``save`` goes to save_pretrained
    (e.g. ``max_shard_size`` for a sharded checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    random_model(arch, seed).save_pretrained(folder, **save)
    save_tokenizer(arch, folder, tokenizer)
    return folder


def reference(folder: Path, gguf_file: str | None = None):
    """transformers' eager float32 model, loaded back from what is on disk."""
    from transformers import AutoModelForCausalLM

    extra = {} if gguf_file is None else {"gguf_file": gguf_file}
    return AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager", **extra
    ).eval()
