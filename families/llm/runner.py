"""The language-model page's runner: any decoder this machine offers (`models.lm_catalog`: the shipped
SmolLM2, folders and GGUF files named by ``ATTENTION_EXPLORER_LM_DIR`` / ``ATTENTION_EXPLORER_LM``, the
Hugging Face hub cache) through the one decoder-LM runner (`analysis.lm`), by name.

Models in memory. The family's loader (`LOAD`) is served from Streamlit's resource cache with
``max_entries=USER_MODELS``: an LRU of two entries (every served call touches its model's entry), so at most
two user models are held, the least recently used dropped first; the shipped model is pinned here
(`shipped_model`), so when two user models push its entry out it is not loaded again, and a page switching
between user models never holds more than the shipped one and two others. Why Streamlit's cache and not an
LRU of our own: it already loads a name once however many sessions ask at the same time, and the served
calls find the model through it (`views.serving.loaded_model`).
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from tokenizers import Tokenizer

from analysis import lm
from analysis.family import Served
from analysis.lm import LM, Prompt
from families.llm.shipped import SMOLLM2
from models.attention import NO_INTERVENTION, Interventions
from models.checkpoints import CheckpointError
from models.decoder_config import DecoderConfig
from models.llama import Llama, load
from models.lm_catalog import Catalog, discover, open_model
from models.lm_checkpoint import OpenedModel
from models.lm_tokenizer import gguf_special

WINDOW = 2048  # tokens a run reads at most (fewer where the model's context is shorter)
EXAMPLE = "The Eiffel Tower is in the city of"
USER_MODELS = 2  # user models held at once (the shipped one besides): the loader cache's entries
# Bytes of attention maps up to which a page run keeps every layer: SmolLM2's 30 × 9 maps of 128 tokens
# (17.7 MB); a model with more heads keeps them all up to fewer tokens.
MAP_BUDGET = 30 * 9 * 128 * 128 * 4
CATALOG_SECONDS = 30.0  # how long a listing of the models is trusted before the folders are read again
SETTINGS = ("ATTENTION_EXPLORER_LM_DIR", "ATTENTION_EXPLORER_LM", "ATTENTION_EXPLORER_LM_MAX_GB",
            "HF_HUB_CACHE", "HF_HOME", "HOME")  # fmt: skip


def empty_message() -> str:
    return f"Type a prompt — for example: “{EXAMPLE}”."


def vocabulary(tokenizer: Tokenizer, *, template: str | None, stop: frozenset[int], special: dict,
               context: int) -> lm.Vocabulary:  # fmt: skip
    """A checkpoint's tokenizer as the decoder runner reads it: its control tokens shown as spelt, its chat
    template with the special tokens it reads, its stop tokens, a window of at most `WINDOW` tokens."""
    specials = frozenset(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    return lm.Vocabulary.of(
        tokenizer, specials=specials, window=min(WINDOW, context), empty=empty_message(),
        chat_template=template, stop=stop, special=tuple((k, v) for k, v in special.items() if v is not None),
    )  # fmt: skip


def loaded_from(model: Llama, tokenizer: Tokenizer, meta: dict) -> LM:
    """What `models.llama.load` returned for the shipped SmolLM2, as the decoder runner reads it: the file's
    template and special tokens, and the end of an assistant's turn (`SMOLLM2.eos`) as its stop."""
    words = vocabulary(tokenizer, template=meta["tokenizer.chat_template"], stop=frozenset({SMOLLM2.eos}),
                       special=gguf_special(meta), context=model.cfg.max_len)  # fmt: skip
    return LM(model, words)


def opened_lm(opened: OpenedModel) -> LM:
    """A user's checkpoint (`models.lm_checkpoint.OpenedModel`) as the decoder runner reads it."""
    words = vocabulary(opened.tokenizer, template=opened.chat_template, stop=opened.stop_ids,
                       special=opened.special_tokens, context=opened.model.cfg.max_len)  # fmt: skip
    return LM(opened.model, words)


def load_all() -> LM:
    """The shipped SmolLM2, loaded (the 98 MB GGUF read and dequantised)."""
    return loaded_from(*load())


@functools.cache
def shipped_model() -> LM:
    """The shipped model, loaded once for the process and pinned (see the module's docstring); `load_all`
    looked up per call, so tests can hand the app the model they already loaded (then ``cache_clear``)."""
    return load_all()


# --- Which models are offered -----------------------------------------------------------------------
_listed: dict[tuple, tuple[float, Catalog]] = {}
_listed_guard = threading.Lock()


def catalog() -> Catalog:
    """`models.lm_catalog.discover` under this process's settings, read again after `CATALOG_SECONDS` or
    when a setting changes (a model dropped into the folder appears, a removed one goes)."""
    key = tuple(os.environ.get(k) for k in SETTINGS)
    with _listed_guard:
        hit = _listed.get(key)
        if hit is not None and time.monotonic() - hit[0] < CATALOG_SECONDS:
            return hit[1]
    found = discover()
    with _listed_guard:
        _listed.clear()
        _listed[key] = (time.monotonic(), found)
    return found


def forget_catalog() -> None:
    """The next `catalog` reads the folders again (tests, after changing them)."""
    with _listed_guard:
        _listed.clear()


def open_lm(name: str) -> LM:
    """The model called ``name``: the shipped one (pinned), else opened from what the catalog lists. A name
    no longer listed, a file that vanished, changed or broke since it was listed, a model now over the size
    limit: a `CheckpointError` whose text names the file (no server path) and the fix."""
    if name == SMOLLM2.name:
        return shipped_model()
    found = catalog()
    if name not in found.names:
        raise CheckpointError(Path(name), "no model of that name is offered now", "pick one from the list")
    return opened_lm(open_model(found, name))


# --- Runs -------------------------------------------------------------------------------------------
def prepare(loaded: LM, text: str, *, chat: bool = False) -> Prompt:
    """User text → the ids the model reads (as a chat: the checkpoint's template around one user message,
    with the assistant's turn opened). Raises `InputError` with the message to show."""
    return lm.prepare(loaded, text, chat=chat)


def run(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION,
        layers: Collection[int] | None = None) -> lm.LMRun:  # fmt: skip
    """Teacher forcing on ``prompt`` under ``iv``; maps of ``layers`` only (None: all; (): none)."""
    return lm.run(loaded, prompt, iv, layers)


def generate(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION, *, new_tokens: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             layers: Collection[int] | None = None) -> Iterator[lm.Generated]:  # fmt: skip
    """Tokens after the prompt, one at a time (a stop at the model's end of turn), each as soon as chosen."""
    return lm.generate(loaded, prompt, iv, new_tokens=new_tokens, temperature=temperature, top_k=top_k,
                       top_p=top_p, seed=seed, layers=layers)  # fmt: skip


def all_layers_up_to(cfg: DecoderConfig) -> int:
    """Prompt tokens up to which a page run keeps every layer's maps: L · h · T² · 4 bytes ≤ `MAP_BUDGET`
    (128 tokens for SmolLM2's 270 heads)."""
    return math.isqrt(MAP_BUDGET // (cfg.n_layers * cfg.n_heads * 4))


def page_layers(cfg: DecoderConfig, n_tokens: int, layer: int) -> tuple[int, ...] | None:
    """The layers a page run keeps maps of: every layer up to `all_layers_up_to` tokens (a layer or head
    picked next costs no forward), beyond that the picked one alone (all 30 of SmolLM2 at 2,048 tokens would
    be 4.5 GB)."""
    return None if n_tokens <= all_layers_up_to(cfg) else (layer,)


def example() -> lm.LMRun:
    """The shipped model on the default prompt (tests and warm-up)."""
    loaded = shipped_model()
    return run(loaded, prepare(loaded, EXAMPLE))


# --- What the app serves cached (`views.serving.cached`): the `LM` first ----------------------------
def _served_run(loaded: LM, ids: tuple[int, ...], iv: Interventions, layers: tuple[int, ...] | None):
    return run(loaded, Prompt(ids), iv, layers)


def _served_scores(loaded: LM, ids: tuple[int, ...], iv: Interventions) -> lm.LMRun:
    return run(loaded, Prompt(ids), iv, layers=())


LOAD = Served(open_lm, max_entries=USER_MODELS, spinner="Loading the model (its weights read into float32)…")
SERVED = {
    # With maps: a 2,048-token run of one SmolLM2 layer is 9 × 2048² × 4 B = 151 MB, a run of every layer up
    # to `all_layers_up_to` tokens 17.7 MB: few kept.
    "run": Served(_served_run, max_entries=6, spinner="Running the model on the prompt…"),
    # Without maps (layers=()): losses, top-k and the last distribution for the interventions' table.
    "scores": Served(_served_scores, max_entries=32, spinner="Running the model under each intervention…"),
}
