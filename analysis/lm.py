"""Decoder language models, whichever family brings one (our GPT, a pretrained LLM): a prompt → next-token
top-k per position, the log p of each prompt token, the attention maps; generation one token at a time.

One runner for every decoder: a family loads its model into an `LM` (the network and its `Vocabulary`:
how text becomes ids, what is special, how long a prompt may be) and serves these calls. A run is teacher
forcing on the prompt: row t's distribution is over the token after position t. Every array is batch row 0
of the model's own logits and trace; nothing is recomputed. Sampling is `models.sampling`'s (a frozen
`Sampling` per call), from a generator seeded per call, never the global seed.

What the model must offer is what `models.contracts` names for decoders: ``model(ids, iv=…,
return_trace=…, capture="weights", trace_layers=…, logits=…)`` → (logits, trace with ``weights``), its
``cfg`` (``n_layers``, ``n_heads``, ``max_len``), ``blocks[i].attn.kv_heads``, and ``stream(…)``
yielding `models.sampling.Step`s (token, log_prob, start, weights, logits).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from analysis.protocol import AttentionMaps, to_numpy
from analysis.token_labels import readable, spelt
from models.attention import NO_INTERVENTION, Interventions
from models.lm_tokenizer import render_chat
from models.sampling import GREEDY, Sampling
from tasks import InputError

TOP_K = 10  # next-token candidates kept per position
MAX_CHARS = 20_000  # characters of a prompt read at all (a window holds far fewer tokens)
_NEWLINES = re.compile(r"\r\n?")


# --- The model and its vocabulary -----------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """How text becomes the ids a decoder reads, and ids become what the page shows."""

    tokenizer: Tokenizer  # the model's own: control tokens (<|im_start|>, <s>) read whole
    text_tokenizer: Tokenizer  # the same, reading control tokens typed in user text as plain characters
    specials: frozenset[int]  # ids shown as they are spelt (control tokens), never as bytes
    window: int  # tokens a prompt keeps (<s> included where there is one); the rest are cut, and said so
    empty: str  # the message when a prompt has nothing to read
    bos: int | None = None  # prepended to every prompt (our GPT's <s>); None: the text's own tokens only
    chat_template: str | None = None  # a Jinja chat template, when the checkpoint has one
    stop: frozenset[int] = frozenset()  # ids that end a generation (an assistant's end of turn)
    special: tuple[tuple[str, str], ...] = ()  # (bos_token, "<s>") …: the variables the chat template reads
    byte_level: bool = True  # pieces spelt byte by byte (GPT-2's alphabet); else SentencePiece-style ("▁")

    @classmethod
    def of(cls, tokenizer: Tokenizer, **fields) -> Vocabulary:
        """The vocabulary of ``tokenizer``, with a copy of it for visitors' text: "<|im_end|>" typed by a
        visitor is text, not a turn boundary."""
        spec = tokenizer.to_str()
        plain = Tokenizer.from_str(spec)
        plain.encode_special_tokens = True
        byte_level = "ByteLevel" in json.dumps(json.loads(spec).get("decoder"))  # how its pieces are spelt
        return cls(tokenizer, plain, **{"byte_level": byte_level, **fields})

    def label(self, token_id: int) -> str:
        """A token as the page shows it: a special token as it is spelt, any other as readable text
        (spaces, newlines and tabs as ␣ ↵ ⇥; a piece of a multi-byte character as its bytes)."""
        piece = self.tokenizer.id_to_token(int(token_id))
        if piece is None:
            return f"<{token_id}>"
        if token_id in self.specials:
            return piece
        return readable(piece) if self.byte_level else spelt(piece)

    def word(self, text: str) -> int | None:
        """``text`` (e.g. " Paris") as its one token id, None when it is several."""
        ids = self.text_tokenizer.encode(text, add_special_tokens=False).ids  # no BOS: the word alone
        return ids[0] if len(ids) == 1 else None


@dataclass(frozen=True)
class LM:
    """What a decoder page caches once per process: the network (eval mode, on its device), how it reads
    text, and its card (None where it has none)."""

    model: nn.Module
    vocabulary: Vocabulary
    card: dict | None = field(default=None, compare=False)
    slides: bool = False  # past its context a generation reads the last max_len tokens (else it stops there)

    def label(self, token_id: int) -> str:
        return self.vocabulary.label(token_id)


# --- Input ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """What the model reads, and what was changed to get there."""

    ids: tuple[int, ...]  # <s> first where the vocabulary has one
    dropped: int = 0  # tokens past the window, cut off
    unread: int = 0  # characters past MAX_CHARS, never tokenized
    removed: int = 0  # control characters removed from the text
    non_ascii: bool = False  # characters a byte-level BPE reads as several byte tokens


def clean(text: str, empty: str) -> tuple[str, int, int]:
    """(text without control characters but newline and tab, characters unread, characters removed);
    `InputError` with ``empty`` when nothing is left to read."""
    unread = max(0, len(text) - MAX_CHARS)
    text = _NEWLINES.sub("\n", text[:MAX_CHARS])
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    if not kept.strip():
        raise InputError(empty)
    return kept, unread, len(text) - len(kept)


def prepare(lm: LM, text: str, *, chat: bool = False) -> Prompt:
    """User text → the ids the model reads (as a chat: the checkpoint's template around one user message,
    with the assistant's turn opened). Raises `InputError` with the message to show."""
    v = lm.vocabulary
    kept, unread, removed = clean(text, v.empty)
    if chat:
        if v.chat_template is None:
            raise InputError("This model has no chat template: type a prompt for it to continue.")
        marker = "\x00message\x00"  # never in cleaned text: the template and the message are encoded apart
        try:
            message = [{"role": "user", "content": marker}]
            rendered = render_chat(v.chat_template, message, special=dict(v.special))
        except ValueError as err:  # the template's own raise_exception, or a template that does not parse
            raise InputError(f"{err}. Type a prompt instead.") from err
        if rendered.count(marker) != 1:
            raise InputError("This model's chat template does not write the message once: type a prompt.")
        before, after = rendered.split(marker)
        # As transformers' apply_chat_template: the template writes every special token (BOS included), so
        # nothing is added around it.
        ids = [*v.tokenizer.encode(before, add_special_tokens=False).ids,
               *v.text_tokenizer.encode(kept, add_special_tokens=False).ids,
               *v.tokenizer.encode(after, add_special_tokens=False).ids]  # fmt: skip
    else:
        ids = v.text_tokenizer.encode(kept).ids
    first = () if v.bos is None else (v.bos,)
    room = v.window - len(first)
    return Prompt(ids=(*first, *ids[:room]), dropped=max(0, len(ids) - room), unread=unread,
                  removed=removed, non_ascii=not kept.isascii())  # fmt: skip


# --- A run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LMRun:
    """One prompt under teacher forcing. T positions, L layers shown, h heads."""

    ids: tuple[int, ...]
    inputs: tuple[str, ...]  # (T,) each position's token: the maps' queries and keys
    output: tuple[str, ...]  # (T − 1,) the prompt's tokens after the first: what each position predicted
    token_log_probs: np.ndarray  # (T − 1,) log p of each, from the positions before it
    top_ids: np.ndarray  # (T, TOP_K) the most likely next tokens, best first
    top_tokens: tuple[tuple[str, ...], ...]  # (T, TOP_K) their labels
    top_probs: np.ndarray  # (T, TOP_K) their probabilities
    maps: dict[str, AttentionMaps]  # "self": (L shown, h, T, T) causal self-attention
    layers: tuple[int, ...]  # the layers the maps hold
    kv_heads: tuple[int, ...]  # query head → the K/V head it reads (the core's)
    next_log_probs: np.ndarray  # (V,) the whole next-token distribution after the prompt
    every_log_prob: np.ndarray | None = None  # (T, V) every position's, where the run keeps them
    head_scores: dict[str, np.ndarray] = field(default_factory=dict)  # ROLES → (L shown, h) on this prompt

    @property
    def loss(self) -> float:
        """Mean cross-entropy of the prompt's tokens (nats); NaN for a prompt of one token."""
        return float(-self.token_log_probs.mean()) if len(self.token_log_probs) else float("nan")

    @property
    def text(self) -> str:
        return "".join(self.output)


ROLES = {"previous_token": "previous-token", "induction": "induction", "first_token": "first-token sink"}


def head_scores(weights: np.ndarray, ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Per head (L, h), measured on these weights (L, h, T, T): mean attention to the token before
    (previous-token) and to the first token (first-token), over every query after it; and over the
    queries whose token occurred earlier, the attention on the tokens right after its earlier occurrences
    (induction; NaN when no token repeats)."""
    t_len = len(ids)
    if t_len < 2:
        nan = np.full(weights.shape[:2], np.nan, dtype=np.float32)
        return {"previous_token": nan, "first_token": nan, "induction": nan}
    q = np.arange(1, t_len)
    arr = np.asarray(ids)
    after = (arr[None, :-1] == arr[:, None]) & (np.arange(t_len - 1)[None] < np.arange(t_len)[:, None])
    targets = np.zeros((t_len, t_len), dtype=bool)  # (query i, key j + 1) for earlier j with ids[j] = ids[i]
    targets[:, 1:] = after
    rows = targets.any(-1)
    induction = (
        (weights * targets).sum(-1)[..., rows].mean(-1) if rows.any() else np.full(weights.shape[:2], np.nan)
    )
    return {
        "previous_token": weights[..., q, q - 1].mean(-1),
        "first_token": weights[..., q, 0].mean(-1),
        "induction": induction.astype(np.float32),
    }


def run(lm: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION, layers: Collection[int] | None = None,
        *, every_position: bool = False, roles: bool = False) -> LMRun:  # fmt: skip
    """Teacher forcing on ``prompt`` under ``iv`` (the causal mask may be off here); maps of ``layers``
    only (None: all; (): none, for a run whose losses and next tokens are all that is wanted).
    ``every_position`` keeps every position's whole distribution (T × V floats: a small vocabulary's);
    ``roles`` measures each head's `head_scores` on this prompt (a pass over every map kept)."""
    model, cfg = lm.model, lm.model.cfg
    ids = torch.tensor([prompt.ids], device=next(model.parameters()).device)  # (1, T)
    shown = tuple(range(cfg.n_layers)) if layers is None else tuple(sorted(layers))
    with torch.inference_mode():
        logits, trace = model(ids, iv=iv, return_trace=bool(shown), capture="weights", trace_layers=shown)
        logp = torch.log_softmax(logits[0].float(), -1)  # (T, V)
        picked = logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)  # (T − 1,)
        top = torch.topk(logp, min(TOP_K, logp.shape[-1]), -1)
    inputs = tuple(lm.label(i) for i in prompt.ids)
    special = np.array([i in lm.vocabulary.specials for i in prompt.ids])
    t = len(prompt.ids)
    weights = to_numpy(trace.weights[0]) if shown else np.zeros((0, cfg.n_heads, t, t), np.float32)
    return LMRun(
        ids=prompt.ids,
        inputs=inputs,
        output=inputs[1:],
        token_log_probs=to_numpy(picked),
        top_ids=top.indices.cpu().numpy(),
        top_tokens=tuple(tuple(lm.label(i) for i in row) for row in top.indices.tolist()),
        top_probs=to_numpy(top.values.exp()),
        maps={"self": AttentionMaps("causal self-attention", weights, inputs, inputs, special)},
        layers=shown,
        kv_heads=model.blocks[0].attn.kv_heads,  # query head → the K/V head it reads (every layer's)
        next_log_probs=to_numpy(logp[-1]),
        every_log_prob=to_numpy(logp) if every_position else None,
        head_scores=head_scores(weights, prompt.ids) if roles else {},
    )


@dataclass(frozen=True)
class Change:
    """What an intervention did to a run, against the run without it (same prompt)."""

    loss: float  # Δ mean cross-entropy of the prompt's tokens (nats)
    kl_after_prompt: float  # KL(without ‖ with) of the next-token distribution after the prompt (nats)
    kl_mean_over_positions: float | None  # the same KL averaged over every position (None: not kept)
    top1_changed: int  # positions whose most likely next token changed
    next_before: tuple[str, float]  # after the prompt: the top token and its probability, without
    next_after: tuple[str, float]  # … and with the intervention


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) over the last axis, from log probabilities, in float64."""
    p, q = p.astype(np.float64), q.astype(np.float64)
    return (np.exp(p) * (p - q)).sum(-1)


def compare(run_: LMRun, base: LMRun) -> Change:
    """``run_`` against ``base``: the KL after the prompt always; over every position where both runs kept
    every position's distribution."""
    every = base.every_log_prob is not None and run_.every_log_prob is not None
    return Change(
        loss=run_.loss - base.loss,
        kl_after_prompt=float(_kl(base.next_log_probs, run_.next_log_probs)),
        kl_mean_over_positions=float(_kl(base.every_log_prob, run_.every_log_prob).mean()) if every else None,
        top1_changed=int((base.top_ids[:, 0] != run_.top_ids[:, 0]).sum()),
        next_before=(base.top_tokens[-1][0], float(base.top_probs[-1, 0])),
        next_after=(run_.top_tokens[-1][0], float(run_.top_probs[-1, 0])),
    )


# --- Generation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Generated:
    """One generated token, as a page streams it."""

    id: int
    token: str  # its label
    text: str  # the text so far (decoded: whole characters only)
    log_prob: float  # the model's own log p of it (temperature 1, every token)
    start: int  # the first position this step's attention rows belong to
    weights: np.ndarray | None  # (L shown, h, rows, keys): the attention of the rows this step read


def generate(lm: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION, *, new_tokens: int,
             sampling: Sampling = GREEDY,
             layers: Collection[int] | None = None) -> Iterator[Generated]:  # fmt: skip
    """Tokens after the prompt, one at a time (a stop token ends it), each as soon as it is chosen; the
    attention of ``layers`` (None: all; (): none) kept per step. Always causal."""
    if not lm.slides:
        new_tokens = min(new_tokens, lm.model.cfg.max_len - len(prompt.ids))
    chosen: list[int] = []
    for step in lm.model.stream(list(prompt.ids), new_tokens=new_tokens, sampling=sampling,
                                stop=lm.vocabulary.stop, iv=iv, trace_layers=layers):  # fmt: skip
        chosen.append(step.token)
        yield Generated(step.token, lm.label(step.token), lm.vocabulary.tokenizer.decode(chosen),
                        step.log_prob, step.start, to_numpy(step.weights))  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """Tokens sampled after a prompt, whole: what `views.outputs.model_output` shows."""

    output: tuple[str, ...]  # the new tokens' labels
    token_log_probs: np.ndarray  # (N,) the model's own log p of each (temperature 1, all tokens)
    text: str  # the new tokens decoded


def sample(lm: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION, *, new_tokens: int,
           sampling: Sampling) -> Sample:  # fmt: skip
    """``new_tokens`` after the prompt at once, chosen as ``sampling`` says."""
    steps = list(generate(lm, prompt, iv, new_tokens=new_tokens, sampling=sampling, layers=()))
    return Sample(
        output=tuple(s.token for s in steps),
        token_log_probs=np.array([s.log_prob for s in steps], dtype=np.float32),
        text=steps[-1].text if steps else "",
    )


def generated_attention(rows: Sequence[np.ndarray], layer: int, head: int) -> np.ndarray:
    """(new tokens, keys) the attention that chose each generated token (`Generated.weights[:, :, -1]`:
    the row of the position before it) in one ``layer`` (an index into the layers traced) and ``head``;
    keys are the prompt and every token generated but the last, and each row's future is 0."""
    grid = np.zeros((len(rows), rows[-1].shape[-1] if rows else 0), np.float32)
    for j, row in enumerate(rows):  # row: (L traced, h, keys before token j)
        grid[j, : row.shape[-1]] = row[layer, head]
    return grid


def top_heads(scores: Sequence[Sequence[float]], n: int) -> list[tuple[int, int, float]]:
    """(layer, head, score) of the ``n`` highest of a card's (layers, heads) scores, highest first."""
    s = np.asarray(scores)
    layers, heads = np.unravel_index(np.argsort(-s, None)[:n], s.shape)
    return [(int(i), int(h), float(s[i, h])) for i, h in zip(layers, heads, strict=True)]
