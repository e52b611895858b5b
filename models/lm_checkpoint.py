"""Opening a language model on this machine: a Hugging Face folder (or hub-cache entry) or a GGUF file →
a `Decoder` in eval mode with its tokenizer and chat template. Nothing is downloaded, ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from models.checkpoints import CheckpointError, CheckpointFileMissing, load_weights, read_json
from models.decoder import Decoder
from models.decoder_config import DecoderConfig
from models.device import pick_device


@dataclass(frozen=True)
class OpenedModel:
    """What one checkpoint gives the app: the network, its tokenizer, its chat template (None if it has none),
    the token ids that end a turn, and where it came from."""

    model: Decoder
    tokenizer: Tokenizer  # its own: control tokens stay whole, BOS added where the checkpoint adds it
    chat_template: str | None
    stop_ids: frozenset[int]  # end-of-sequence / end-of-turn tokens
    special_tokens: dict  # bos_token, eos_token, … as the chat template reads them
    path: Path
    format: str  # "hf" or "gguf"


def build_decoder(cfg: DecoderConfig, state: dict[str, Tensor], path: Path, fix: str,
                  device: torch.device | None = None) -> Decoder:  # fmt: skip
    """A `Decoder` of ``cfg`` holding ``state`` (no second copy: the tensors are assigned), in eval mode
    on ``device``. Weights that do not fit the config are one `CheckpointError` naming them."""
    try:
        with torch.device("meta"):
            model = Decoder(cfg)
    except (ValueError, RuntimeError) as err:
        raise CheckpointError(path, f"the config describes no model we can build ({err})", fix) from err
    ours = model.state_dict()
    missing, unexpected = sorted(ours.keys() - state.keys()), sorted(state.keys() - ours.keys())
    shapes = [f"{k} is {tuple(state[k].shape)}, the config needs {tuple(ours[k].shape)}"
              for k in sorted(ours.keys() & state.keys()) if state[k].shape != ours[k].shape]  # fmt: skip
    if missing or unexpected or shapes:
        with torch.device("meta"):  # load_weights names every missing, unexpected or mis-shaped weight
            load_weights(model, {k: v.to("meta") for k, v in state.items()}, path, fix)
    model.load_state_dict(state, assign=True, strict=True)
    return model.to(device or pick_device()).eval().requires_grad_(False)


def open_checkpoint(path: Path, device: torch.device | None = None) -> OpenedModel:
    """The model at ``path``: a ``.gguf`` file, a checkpoint folder, or a hub-cache ``models--org--name``
    folder. Raises `CheckpointError` (naming the file, the problem and the fix) for anything unusable."""
    from models.gguf_checkpoint import GGUF_FIX, read_gguf
    from models.hf_checkpoint import FIX, checkpoint_folder, read_hf
    from models.lm_tokenizer import gguf_tokenizer, hf_tokenizer

    path = Path(path)
    if path.suffix == ".gguf":
        cfg, state, meta = read_gguf(path)
        model = build_decoder(cfg, state, path, GGUF_FIX, device)
        tokens = gguf_tokenizer(meta, path)
        return OpenedModel(
            model, tokens.tokenizer, tokens.chat_template, tokens.stop_ids, tokens.special, path, "gguf"
        )
    folder = checkpoint_folder(path)
    if not folder.is_dir():
        problem = "the checkpoint folder is missing" + (
            " (a broken or looping link)" if folder.is_symlink() else ""
        )
        raise CheckpointFileMissing(folder, problem, "pick a model that is on this machine")
    tokens = hf_tokenizer(folder)  # first: a model without its tokenizer is refused before its weights load
    cfg, state, raw = read_hf(folder)
    model = build_decoder(cfg, state, folder, FIX, device)
    stops = set(tokens.stop_ids)  # the tokenizer's end of sequence, and config.json's / generation_config's
    generation = folder / "generation_config.json"
    for source in (raw, read_json(generation, FIX) if generation.is_file() else {}):
        eos = source.get("eos_token_id")
        stops.update(
            i for i in (eos if isinstance(eos, list) else [eos]) if isinstance(i, int) and 0 <= i < cfg.vocab
        )
    return OpenedModel(
        model, tokens.tokenizer, tokens.chat_template, frozenset(stops), tokens.special, folder, "hf"
    )
