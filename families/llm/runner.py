"""The language-model page's runner: any decoder this machine offers (`models.lm_catalog`: the shipped
SmolLM2, folders and GGUF files named by ``ATTENTION_EXPLORER_LM_DIR`` / ``ATTENTION_EXPLORER_LM``, the
Hugging Face hub cache) through the one decoder-LM runner (`analysis.lm`), by name.

Models in memory: an explicit LRU here (`Held`), not Streamlit's cache alone. At most `USER_MODELS` user
models are held; the least recently used is dropped — and its memory handed back (`release_memory`) —
*before* another loads, one load at a time, so even while a model loads no more than two are in memory; the
shipped model is pinned apart (`shipped_model`). Streamlit's cache (`views.serving.loaded_model`, which every
served call goes through) keeps only the last model asked for (``max_entries=1``): always one this LRU holds
too, so it adds no model; a miss there costs a dictionary lookup here. Streamlit's cache alone could not
promise this: it evicts after the new entry is computed (three models at the peak of a load), and an entry
of its own for the shipped model would count against the two.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from tokenizers import Tokenizer

from analysis import lm
from analysis.family import Served
from analysis.lm import LM, Prompt
from families.llm.shipped import SMOLLM2
from models.attention import NO_INTERVENTION, Interventions
from models.checkpoints import CheckpointError
from models.decoder_config import DecoderConfig
from models.device import release_memory
from models.llama import Llama, load
from models.lm_catalog import Catalog, discover, open_model
from models.lm_checkpoint import OpenedModel
from models.lm_tokenizer import gguf_special
from models.sampling import GREEDY, Sampling

WINDOW = 2048  # tokens a run reads at most (fewer where the model's context is shorter)
EXAMPLE = "The Eiffel Tower is in the city of"
USER_MODELS = 2  # user models held at once (the shipped one besides)
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


def open_user_model(name: str) -> LM:
    """A user's model, opened from what the catalog lists. A name no longer listed, a file that vanished,
    changed or broke since it was listed, a model now over the size limit: a `CheckpointError` whose text
    names the file (no server path) and the fix."""
    found = catalog()
    if name not in found.names:
        raise CheckpointError(Path(name), "no model of that name is offered now", "pick one from the list")
    return opened_lm(open_model(found, name))


class Held:
    """User models in memory, least recently used first: at most ``capacity``, the oldest dropped before
    another loads (one load at a time; a model already held is returned at once, even during a load)."""

    def __init__(self, capacity: int, load: Callable[[str], LM]):
        self.capacity, self.load = capacity, load
        self._models: OrderedDict[str, LM] = OrderedDict()
        self._guard, self._loading = threading.Lock(), threading.Lock()

    def __call__(self, name: str) -> LM:
        with self._guard:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
        with self._loading:
            with self._guard:
                if name in self._models:  # loaded by another session while this one waited
                    return self._models[name]
                excess = len(self._models) - self.capacity + 1  # room for the one about to load
                for _ in range(excess):
                    self._models.popitem(last=False)  # the least recently used, dropped
            if excess > 0:
                release_memory()
            loaded = self.load(name)
            with self._guard:
                self._models[name] = loaded
            return loaded

    @property
    def names(self) -> tuple[str, ...]:
        """The models held, least recently used first."""
        with self._guard:
            return tuple(self._models)

    def clear(self) -> None:
        with self._guard:
            self._models.clear()


held = Held(USER_MODELS, lambda name: open_user_model(name))  # looked up per call: tests may patch it


def open_lm(name: str) -> LM:
    """The model called ``name``: the shipped one (pinned), else a user's (`held`, the LRU)."""
    return shipped_model() if name == SMOLLM2.name else held(name)


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
             sampling: Sampling = GREEDY,
             layers: Collection[int] | None = None) -> Iterator[lm.Generated]:  # fmt: skip
    """Tokens after the prompt, one at a time (a stop at the model's end of turn), each as soon as chosen."""
    return lm.generate(loaded, prompt, iv, new_tokens=new_tokens, sampling=sampling, layers=layers)


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


# One entry: the last model asked for, which `held` (or the pin) holds too (see the module's docstring).
LOAD = Served(open_lm, max_entries=1, spinner="Loading the model (its weights read into float32)…")
SERVED = {
    # With maps: a 2,048-token run of one SmolLM2 layer is 9 × 2048² × 4 B = 151 MB, a run of every layer up
    # to `all_layers_up_to` tokens 17.7 MB: few kept.
    "run": Served(_served_run, max_entries=6, spinner="Running the model on the prompt…"),
    # Without maps (layers=()): losses, top-k and the last distribution for the interventions' table.
    "scores": Served(_served_scores, max_entries=32, spinner="Running the model under each intervention…"),
}
