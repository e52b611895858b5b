"""Hugging Face checkpoint folders: ``config.json``, the weights as ``model.safetensors`` or shards listed by
``model.safetensors.index.json``, read one tensor at a time from the memory-mapped files (never pickle:
a ``pytorch_model.bin`` is refused with the fix), and the hub cache's layout
(``models--org--name/snapshots/<revision>/``, files symlinked into ``blobs/``), read only.

Weights are renamed into `models.decoder.Decoder`'s names and changed where the architecture stores them
differently: Gemma's RMSNorm weights w become 1 + w (what its norm multiplies by, in float32 as
transformers computes it), GPT-2's Conv1D weights (in, out) are transposed to torch's (out, in) and its
fused ``c_attn`` is split into W_Q, W_K, W_V. Half-precision weights become float32.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from models.checkpoints import CheckpointError, CheckpointFileMissing, read_json
from models.decoder_config import DecoderConfig, config_from_hf

INDEX, SINGLE = "model.safetensors.index.json", "model.safetensors"
FIX = "re-download or re-save the checkpoint (`save_pretrained` writes config.json and model.safetensors)"
# Hugging Face's per-layer names → ours, for the Llama family (Gemma 2's four norms named apart below).
LAYER = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn.w_q", "self_attn.k_proj": "attn.w_k",
         "self_attn.v_proj": "attn.w_v", "self_attn.o_proj": "attn.w_o", "self_attn.q_norm": "attn.q_norm",
         "self_attn.k_norm": "attn.k_norm", "post_attention_layernorm": "mlp_norm", "mlp.gate_proj": "gate",
         "mlp.up_proj": "up", "mlp.down_proj": "down"}  # fmt: skip
GEMMA_LAYER = {**LAYER, "post_attention_layernorm": "post_attn_norm", "pre_feedforward_layernorm": "mlp_norm",
               "post_feedforward_layernorm": "post_mlp_norm"}  # fmt: skip
GPT2_LAYER = {"ln_1": "attn_norm", "attn.c_proj": "attn.w_o", "ln_2": "mlp_norm", "mlp.c_fc": "up",
              "mlp.c_proj": "down"}  # fmt: skip
# Tensors a checkpoint may carry that are not weights (old GPT-2's causal-mask buffers, old RoPE tables).
IGNORED = re.compile(r".*(\.attn\.bias|\.attn\.masked_bias|rotary_emb\.inv_freq)$")


def hub_snapshot(repo: Path) -> Path:
    """The snapshot folder of a hub-cache repository ``models--org--name``: the revision ``refs/main`` names,
    else the only (or most recently changed) one. Raises `CheckpointError` if it has none."""
    ref = repo / "refs" / "main"
    try:
        if ref.is_file():
            folder = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
            if folder.is_dir():
                return folder
        snapshots = sorted(
            (p for p in (repo / "snapshots").iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
    except OSError as err:  # unreadable, or a symlink loop
        raise CheckpointError(
            repo, f"the hub cache entry cannot be read ({err})", "fix or remove the entry"
        ) from err
    if not snapshots:
        raise CheckpointError(repo, "the hub cache entry holds no snapshot", "download the model again")
    return snapshots[-1]


def checkpoint_folder(path: Path) -> Path:
    """A checkpoint folder itself, or a hub-cache repository's snapshot."""
    path = Path(path)
    return hub_snapshot(path) if path.name.startswith("models--") and (path / "snapshots").exists() else path


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: the index's shards, or the single file."""
    index = folder / INDEX
    if index.exists():
        shards = read_json(index, FIX).get("weight_map")
        if not isinstance(shards, dict) or not shards:
            raise CheckpointError(index, "the index lists no weights", FIX)
        return [folder / name for name in sorted(set(shards.values()))]
    if (folder / SINGLE).exists():
        return [folder / SINGLE]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise CheckpointError(folder, "its weights are pickled (.bin), which we never load",
                              "convert them to safetensors (`save_pretrained` writes them)")  # fmt: skip
    raise CheckpointFileMissing(folder / SINGLE, "no model.safetensors or model.safetensors.index.json", FIX)


DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes), read without touching the weights."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError(f"a header of {size} bytes")
            header = json.loads(f.read(size))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as err:
        problem = (
            "missing" if isinstance(err, FileNotFoundError) else f"not a readable safetensors file ({err})"
        )
        raise CheckpointError(path, problem, FIX) from err
    header.pop("__metadata__", None)
    return header


def hf_weight_bytes(folder: Path) -> int:
    """Bytes the weights take as float32, from the safetensors headers alone."""
    total = 0
    for path in weight_files(folder):
        for info in safetensors_header(path).values():
            total += 4 * int(torch.Size(info["shape"]).numel())
    return total


def _renamed(cfg: DecoderConfig, name: str) -> list[tuple[str, str]]:
    """[(our name, how to change it)] for a Hugging Face weight name; [] to skip it. KeyError: unknown."""
    if IGNORED.match(name) or (cfg.tied and name == "lm_head.weight"):
        return []
    if cfg.arch == "gpt2":
        name = name.removeprefix("transformer.")
        top = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight", "ln_f.weight": "norm.weight",
               "ln_f.bias": "norm.bias", "lm_head.weight": "head.weight"}  # fmt: skip
        if name in top:
            return [(top[name], "")]
        _, layer, part, kind = re.fullmatch(r"(h)\.(\d+)\.(.+)\.(weight|bias)", name).groups()
        if part == "attn.c_attn":
            return [(f"blocks.{layer}.attn.w_{p}.{kind}", f"split{i}") for i, p in enumerate("qkv")]
        return [
            (
                f"blocks.{layer}.{GPT2_LAYER[part]}.{kind}",
                "transpose" if kind == "weight" and "ln" not in part else "",
            )
        ]
    gemma = cfg.arch == "gemma2"
    top = {"model.embed_tokens.weight": "tok_emb.weight", "model.norm.weight": "norm.weight",
           "lm_head.weight": "head.weight"}  # fmt: skip
    if name in top:
        return [(top[name], "plus_one" if gemma and name == "model.norm.weight" else "")]
    layer, part, kind = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)", name).groups()
    ours = (GEMMA_LAYER if gemma else LAYER)[part]
    return [(f"blocks.{layer}.{ours}.{kind}", "plus_one" if gemma and part.endswith("layernorm") else "")]


def _changed(cfg: DecoderConfig, w: Tensor, how: str) -> Tensor:
    w = w.float()  # a no-op for float32 tensors
    if how == "plus_one":
        return 1.0 + w  # Gemma's norm multiplies by (1 + w), in float32
    if how == "transpose":
        return w.T.contiguous()
    if how.startswith("split"):  # GPT-2's c_attn: (in, 3·d) columns q, k, v; its bias (3·d,)
        rows = w.T if w.dim() == 2 else w  # (3·d, in) or (3·d,)
        return rows[int(how[-1]) * cfg.d_model : (int(how[-1]) + 1) * cfg.d_model].contiguous()
    return w


def read_hf(folder: Path) -> tuple[DecoderConfig, dict[str, Tensor], dict]:
    """(config, state dict in `Decoder`'s names, the raw config.json) of a Hugging Face checkpoint folder (or
    a hub-cache repository). Every problem is a `CheckpointError` naming the file and the fix."""
    folder = checkpoint_folder(folder)
    if not folder.is_dir():
        raise CheckpointFileMissing(
            folder, "the checkpoint folder is missing", "pick a model that is on this machine"
        )
    raw = read_json(folder / "config.json", FIX)
    cfg = config_from_hf(raw, folder / "config.json")
    state: dict[str, Tensor] = {}
    for path in weight_files(folder):
        if not path.is_file():
            raise CheckpointFileMissing(path, "a weights file is missing (or a broken link)", FIX)
        try:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    renames = _renamed(cfg, name)
                    tensor = f.get_tensor(name) if renames else None
                    for ours, how in renames:
                        state[ours] = _changed(cfg, tensor, how)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(path, f"not a readable safetensors file ({err})", FIX) from err
        except (KeyError, AttributeError) as err:  # a name that is not this architecture's
            raise CheckpointError(path, f"a weight {cfg.arch} does not have ({err})",
                                  "check that config.json belongs to these weights") from err  # fmt: skip
    return cfg, state, raw
