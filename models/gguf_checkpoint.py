"""GGUF files (llama.cpp's format): the config, the weights dequantised to float32 by ``gguf``, and the
metadata (the tokenizer's vocabulary, merges and chat template live there too).

llama.cpp's converter changes some tensors on the way in; each change is undone here, per architecture,
as transformers' GGUF loader undoes it (``modeling_gguf_pytorch_utils.TENSOR_PROCESSORS``):
- ``llama`` (also Mistral, SmolLM, TinyLlama): the rows of W_Q and W_K (and their biases) of each head are
  permuted to llama.cpp's RoPE layout, pairs (2i, 2i + 1) instead of Hugging Face's (i, i + d/2):
  `unpermute` restores them. Qwen 2/3 and Gemma 2 use llama.cpp's NeoX RoPE, Hugging Face's layout: no
  permutation there.
- ``gemma2``: every norm weight is stored as 1 + w, which is what our RMSNorm multiplies by: kept as is
  (transformers subtracts 1 and adds it back in its norm).
- ``gpt2``: W_Q, W_K, W_V are one fused ``attn_qkv`` (rows q, k, v) stored as torch's (out, in), not as
  GPT-2's transposed Conv1D: split, not transposed (transformers transposes them back into Conv1D).
- ``rope_freqs`` (Llama 3.1's frequency factors) becomes the config's RoPE scaling; transformers ignores it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.checkpoints import CheckpointError
from models.decoder_config import DecoderConfig, config_from_gguf
from models.positions import RopeScaling

# llama.cpp's tensor names → ours (`models.decoder.Decoder`); within a block: blk.N.<part>.{weight,bias}.
TOP = {"token_embd": "tok_emb", "position_embd": "pos_emb", "output_norm": "norm", "output": "head"}
PARTS = {"attn_norm": "attn_norm", "attn_q": "attn.w_q", "attn_k": "attn.w_k", "attn_v": "attn.w_v",
         "attn_output": "attn.w_o", "attn_q_norm": "attn.q_norm", "attn_k_norm": "attn.k_norm",
         "post_attention_norm": "post_attn_norm", "ffn_norm": "mlp_norm", "ffn_gate": "gate", "ffn_up": "up",
         "ffn_down": "down", "post_ffw_norm": "post_mlp_norm"}  # fmt: skip
GGUF_FIX = "use an unquantised or llama.cpp-quantised GGUF of a supported architecture, or the model's folder"


def unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row order for W_Q / W_K (its converter's ``permute``): per head, rows
    (pair, 2) → (2, pair), so channel i and i + d_head/2 form a RoPE pair, as Hugging Face has it."""
    rows = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, rows, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor(t) -> np.ndarray:
    """One GGUF tensor as float32 (rows as torch's (out, in)); quantised blocks dequantised by ``gguf``."""
    from gguf.quants import dequantize

    return dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)


def _ours(name: str, w: np.ndarray, cfg: DecoderConfig) -> dict[str, np.ndarray]:
    """Our name(s) for GGUF tensor ``name`` with its architecture's change undone. KeyError: unknown."""
    stem, kind = name.rsplit(".", 1)  # kind: weight or bias
    if not stem.startswith("blk."):
        return {f"{TOP[stem]}.{kind}": w}
    _, layer, part = stem.split(".")
    prefix = f"blocks.{int(layer)}."
    if part == "attn_qkv":  # GPT-2's fused projection: rows q, k, v
        q, k, v = np.split(w, [cfg.n_heads * cfg.d_head, (cfg.n_heads + cfg.n_kv_heads) * cfg.d_head])
        return {f"{prefix}attn.w_{p}.{kind}": x for p, x in zip("qkv", (q, k, v), strict=True)}
    if cfg.arch == "llama" and part in ("attn_q", "attn_k"):
        w = unpermute(w, cfg.n_heads if part == "attn_q" else cfg.n_kv_heads)
    return {f"{prefix}{PARTS[part]}.{kind}": w}


def read_gguf(path: Path) -> tuple[DecoderConfig, dict[str, Tensor], dict]:
    """(config, state dict in `Decoder`'s names, every metadata field) of a GGUF file. Any problem — missing,
    truncated, not a GGUF, an architecture or tensor we do not know — is a `CheckpointError` with the fix."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "the model file is missing", "check the path, or pick another model")
    try:
        reader = GGUFReader(path)
        meta = {k: f.contents() for k, f in reader.fields.items()}
        names = {t.name for t in reader.tensors}
        cfg = config_from_gguf(meta, names, path)
        state = {}
        for t in reader.tensors:
            w = _tensor(t)
            if t.name == "rope_freqs.weight":  # Llama 3.1's frequency factors: part of the config
                cfg = replace(cfg, rope_scaling=RopeScaling("factors", factors=tuple(float(f) for f in w)))
                continue
            for name, x in _ours(t.name, w, cfg).items():
                state[name] = torch.from_numpy(
                    x if x.flags.writeable else x.copy()
                )  # F32: the file's own map
    except CheckpointError:
        raise
    except KeyError as err:
        raise CheckpointError(path, f"a tensor or metadata key we do not know ({err})", GGUF_FIX) from err
    except Exception as err:  # gguf raises ValueError, struct and mmap errors on a bad file
        raise CheckpointError(
            path, f"not a readable GGUF file ({type(err).__name__}: {err})", GGUF_FIX
        ) from err
    return cfg, state, meta
