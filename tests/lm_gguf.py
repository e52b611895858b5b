"""GGUF files written at test time with ``gguf.GGUFWriter`` in llama.cpp's conventions (what its
``convert_hf_to_gguf.py`` writes): its tensor names (``gguf.get_tensor_name_map``), its metadata keys, W_Q/W_K
rows permuted for the ``llama`` architecture, Gemma's norms stored as 1 + w, GPT-2's Conv1D weights
transposed to (out, in), Llama 3's frequency factors as ``rope_freqs``, the vocabulary in the metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer

# Our architectures → llama.cpp's (Mistral is its "llama", run without a sliding window).
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
             "gpt2": "gpt2"}  # fmt: skip
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's row order for W_Q / W_K: per head, (2, pair) → (pair, 2)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_freqs(cfg) -> np.ndarray:
    """Llama 3's frequency factors as llama.cpp's converter computes them (``rope_freqs.weight``)."""
    rope, dim = cfg.rope_parameters, cfg.head_dim
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for freq in 1.0 / (rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def vocabulary(tokenizer: Tokenizer, byte_level: bool) -> dict:
    """tokens, types, scores (SentencePiece) or merges (byte-level), as llama.cpp writes them."""
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    if byte_level:
        merges = json.loads(tokenizer.to_str())["model"]["merges"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
        return dict(
            tokens=tokens, types=[CONTROL if t in specials else NORMAL for t in tokens], merges=merges
        )
    kinds = {"<unk>": UNKNOWN} | dict.fromkeys(specials - {"<unk>"}, CONTROL)
    types = [BYTE if t.startswith("<0x") else kinds.get(t, NORMAL) for t in tokens]
    return dict(
        tokens=tokens, types=types, scores=[0.0 if k != NORMAL else -float(i) for i, k in enumerate(types)]
    )


def _metadata(w: gguf.GGUFWriter, arch: str, cfg) -> None:
    if arch == "gpt2":
        w.add_context_length(cfg.n_positions)
        w.add_embedding_length(cfg.n_embd)
        w.add_feed_forward_length(4 * cfg.n_embd)
        w.add_block_count(cfg.n_layer)
        w.add_head_count(cfg.n_head)
        w.add_layer_norm_eps(cfg.layer_norm_epsilon)
        return
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_rope_dimension_count(d_head)
    if GGUF_ARCH[arch] != "llama":
        w.add_key_length(d_head)
        w.add_value_length(d_head)
    if arch == "gemma2":
        w.add_sliding_window(cfg.sliding_window)
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)


def write_gguf(model, tokenizer: Tokenizer, arch: str, path: Path, *, quantize: bool = True,
               with_rope_freqs: bool = False, chat_template: str | None = None) -> Path:  # fmt: skip
    """``model`` (transformers', tiny) and ``tokenizer`` as llama.cpp would convert them. ``quantize``: 2-D
    weights as Q8_0 blocks (dequantised alike by us and by transformers), the rest F32."""
    name = GGUF_ARCH[arch]
    cfg = model.config
    w = gguf.GGUFWriter(str(path), name)
    # Named "mistral", a llama GGUF is read by transformers as Mistral, which its gguf-py lookup then fails
    # on ("Unknown gguf model_type: mistral"): real files carry longer names, read as Llama, as here.
    w.add_name(f"tiny {arch}")
    w.add_vocab_size(cfg.vocab_size)
    _metadata(w, arch, cfg)
    enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == name)
    names = gguf.get_tensor_name_map(enum, cfg.num_hidden_layers)
    tied = getattr(cfg, "tie_word_embeddings", True)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        stem, kind = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(stem)
        if gguf_name is None or ".attn.bias" in hf_name:
            continue
        x = tensor.detach().float().numpy().copy()
        if name == "llama" and gguf_name.endswith(("attn_q", "attn_k")):
            x = permute(
                x, cfg.num_attention_heads if gguf_name.endswith("attn_q") else cfg.num_key_value_heads
            )
        if arch == "gemma2" and gguf_name.endswith("norm"):
            x = x + 1.0
        if arch == "gpt2" and x.ndim == 2 and gguf_name.startswith("blk."):
            x = x.T.copy()  # Conv1D (in, out) → (out, in)
        full = f"{gguf_name}.{kind}"
        if quantize and x.ndim == 2 and x.shape[1] % 32 == 0:
            w.add_tensor(full, gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # fmt: skip
        else:
            w.add_tensor(full, x)
    if with_rope_freqs:
        w.add_tensor("rope_freqs.weight", rope_freqs(cfg))
    byte_level = arch in ("qwen2", "qwen3", "gpt2")
    vocab = vocabulary(tokenizer, byte_level)
    w.add_tokenizer_model("gpt2" if byte_level else "llama")
    w.add_tokenizer_pre({"qwen2": "qwen2", "qwen3": "qwen2", "gpt2": "gpt-2"}.get(arch, "default"))
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    if byte_level:
        w.add_token_merges(vocab["merges"])
        ids = tokenizer.get_vocab()
        w.add_eos_token_id(ids["<|im_end|>"])
        w.add_pad_token_id(ids["<|endoftext|>"])
        w.add_add_bos_token(False)
    else:
        w.add_token_scores(vocab["scores"])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)
    if chat_template:
        w.add_chat_template(chat_template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def hf_model_for_gguf(arch: str, seed: int = 0):
    """A tiny random model whose options transformers' GGUF reader can state: it reads no Gemma 2 attention
    scale (takes 256, where llama.cpp takes d_head), nor its soft caps (50, 30), nor Qwen 3's d_head (128),
    nor GPT-2's context (1024: a GPT-2 GGUF of another length fails to load there)."""
    from tests import lm_checkpoints as lm

    overrides = {"gemma2": dict(head_dim=256, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
                                final_logit_softcapping=30.0),
                 "qwen3": dict(head_dim=128), "gpt2": dict(n_positions=1024)}.get(arch, {})  # fmt: skip
    return lm.random_model(arch, seed, **overrides)
