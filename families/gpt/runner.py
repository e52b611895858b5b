"""GPT family runner: a prompt → next-token probabilities, loss and attention as numpy; generation.

A run is teacher forcing on the prompt: position t reads <s> and the prompt up to t, and its
distribution is over the token after it. ``output`` is the prompt's own tokens, each with the log p
the model gave it from the tokens before (so the loss is −mean ``token_log_probs``); the last
position's distribution is the next token after the prompt. Every array is batch row 0 of the
model's own logits and `GPTTrace`; nothing is recomputed. Sampling uses a local `torch.Generator`
seeded per call, never the global seed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from analysis.projections import RawVsProjected, raw_vs_projected
from analysis.protocol import AttentionMaps, Served, to_numpy
from analysis.token_labels import readable
from models.attention import NO_INTERVENTION, Interventions
from models.checkpoints import ASSETS, CheckpointError, load_checkpoint, retrain_fix
from models.gpt import GPT, GPTConfig
from tasks import InputError, stdlib
from tasks.common import BOS_ID, SPECIALS

DEFAULT = "gpt-stdlib"
TOP_K = 10  # next-token candidates kept per position
MAX_CHARS = 20_000  # characters of a prompt read at all (the context holds far fewer tokens)
ROLE_MIN = 0.3  # a head's strongest measured pattern names its role from here …
WEAK_MIN = 0.1  # … and, marked "(weak)", from here (uniform attention scores about 0.04 on the probe)
ROLES = {"previous_token": "previous-token", "induction": "induction", "first_token": "first-token sink"}
EXAMPLE = '''def add(self, item):
    """Add an item."""
    self.items.append(item)

def remove(self, item):
    """Remove an item."""
    self.items.remove(item)
'''


def load(name: str = DEFAULT, folder: Path = ASSETS) -> tuple[GPT, dict, Tokenizer]:
    """A ready GPT, its card and its tokenizer: the file the card names, beside the weights (else
    the task's shipped one, for a checkpoint trained into another folder), holding the card's
    vocabulary. Raises `CheckpointError` naming the file and the fix for anything missing or wrong."""
    model, card, _, vocab = load_checkpoint(name, GPT, GPTConfig, folder)
    path = folder / card.get("tokenizer", {}).get("file", stdlib.TOKENIZER_FILE.name)
    path = path if path.is_file() or folder == ASSETS else stdlib.TOKENIZER_FILE
    fix = retrain_fix(name, folder)
    try:
        tokenizer = stdlib.load_tokenizer(path)
    except FileNotFoundError as err:
        raise CheckpointError(path, "the tokenizer file is missing", fix) from err
    except ValueError as err:
        raise CheckpointError(path, "not a readable tokenizer file", fix) from err
    if stdlib.tokens_of(tokenizer) != vocab.tokens:
        raise CheckpointError(path, "its vocabulary is not the one the model card lists", fix)
    return model, card, tokenizer


# --- Tokens as the page shows them ----------------------------------------------------------------
def label(tokenizer: Tokenizer, token_id: int) -> str:
    """A token as text a learner can read: spaces, newlines and tabs as ␣ ↵ ⇥, other control
    characters escaped, and a piece of a multi-byte character as its bytes (\\xf0\\x9f)."""
    piece = tokenizer.id_to_token(int(token_id))
    if piece is None or piece in SPECIALS:
        return piece or f"<{token_id}>"
    return readable(piece)


# --- Input ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """What the model reads: <s> and at most context − 1 tokens, and what was changed to get there."""

    ids: tuple[int, ...]  # <s> first
    dropped: int = 0  # tokens past the context, cut off
    unread: int = 0  # characters past MAX_CHARS, never tokenized
    removed: int = 0  # control characters removed from the text
    non_ascii: bool = False  # characters read as several byte tokens


_NEWLINES = re.compile(r"\r\n?")


def prepare(tokenizer: Tokenizer, text: str, context: int) -> Prompt:
    """User text → the prompt the model reads; raises `InputError` with the message to show."""
    unread = max(0, len(text) - MAX_CHARS)
    text = _NEWLINES.sub("\n", text[:MAX_CHARS])
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    if not kept.strip():
        raise InputError("Type a prompt — some Python, for example: “def add(self, item):”.")
    ids = tokenizer.encode(kept).ids
    room = context - 1
    return Prompt(
        ids=(BOS_ID, *ids[:room]),
        dropped=max(0, len(ids) - room),
        unread=unread,
        removed=len(text) - len(kept),
        non_ascii=not kept.isascii(),
    )


def random_repeat(length: int, seed: int, vocab: int) -> Prompt:
    """<s>, ``length`` uniformly random tokens, the same again (the card's induction probe)."""
    return Prompt(ids=tuple(int(i) for i in stdlib.repeated_random(1, length, seed, vocab)[0]))


# --- A run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTRun:
    """One prompt under teacher forcing. T positions (<s> included), V tokens, L layers, h heads."""

    ids: tuple[int, ...]  # (T,) <s> and the prompt's ids
    inputs: tuple[str, ...]  # (T,) their labels: the maps' queries and keys
    output: tuple[str, ...]  # (T − 1,) the prompt's tokens, each predicted from the ones before
    token_log_probs: np.ndarray  # (T − 1,) log p of each, from the positions before it
    next_log_probs: np.ndarray  # (T, V) log p of every token after each position
    top_tokens: tuple[tuple[str, ...], ...]  # (T, TOP_K) the most likely next tokens, best first
    top_probs: np.ndarray  # (T, TOP_K) their probabilities
    maps: dict[str, AttentionMaps]  # "self": every layer's causal self-attention (L, h, T, T)
    head_scores: dict[str, np.ndarray]  # ROLES → (L, h) measured on this prompt (NaN: no such query)

    @property
    def loss(self) -> float:
        """Mean cross-entropy of the prompt's tokens (nats); NaN for a prompt of one token."""
        return float(-self.token_log_probs.mean()) if len(self.token_log_probs) else float("nan")

    @property
    def text(self) -> str:
        return "".join(self.output)


def head_scores(weights: np.ndarray, ids: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per head (L, h), measured on these weights (L, h, T, T): mean attention to the token before
    (previous-token) and to <s> (first-token), over every query after <s>; and over the queries whose
    token occurred earlier, the attention on the tokens right after its earlier occurrences
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


def run(model: GPT, tokenizer: Tokenizer, prompt: Prompt, iv: Interventions = NO_INTERVENTION) -> GPTRun:
    """Teacher forcing on ``prompt`` under ``iv`` (the causal mask may be off here)."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt.ids], device=device)  # (1, T)
    with torch.inference_mode():
        logits, trace = model(ids, iv=iv, return_trace=True, capture="weights")
    logp = torch.log_softmax(logits[0].float(), -1)  # (T, V)
    picked = logp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)  # (T − 1,)
    top = torch.topk(logp.exp(), min(TOP_K, logp.shape[-1]), -1)
    inputs = tuple(label(tokenizer, i) for i in prompt.ids)
    weights = to_numpy(trace.weights[0])  # (L, h, T, T)
    return GPTRun(
        ids=prompt.ids,
        inputs=inputs,
        output=inputs[1:],
        token_log_probs=to_numpy(picked),
        next_log_probs=to_numpy(logp),
        top_tokens=tuple(tuple(label(tokenizer, i) for i in row) for row in top.indices.tolist()),
        top_probs=to_numpy(top.values),
        maps={
            "self": AttentionMaps(
                title="causal self-attention",
                weights=weights,
                queries=inputs,
                keys=inputs,
                special_keys=np.array([i < len(SPECIALS) for i in prompt.ids]),
            )
        },
        head_scores=head_scores(weights, prompt.ids),
    )


X_IS = (
    "LN(residual stream), the rows W_Q and W_V read (the keys the model scores are these rows smeared with "
    "the row before: the raw map uses X itself)"
)


def projections(model: GPT, tokenizer: Tokenizer, prompt: Prompt, iv: Interventions = NO_INTERVENTION
                ) -> list[RawVsProjected]:  # fmt: skip
    """Per layer, softmax(X Xᵀ) on the rows its W_Q and W_V read (LN of the stream; the keys the model
    scores are those rows smeared with the previous one), under the same causal mask, beside the
    learned heads."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt.ids], device=device)  # (1, T)
    with torch.inference_mode():
        _, trace = model(ids, iv=iv, return_trace=True, capture="weights")
        mask = to_numpy(model.attention_mask(len(prompt.ids), iv, device)[0, 0]).astype(bool)  # (T, T)
    tokens = tuple(label(tokenizer, i) for i in prompt.ids)
    return [
        raw_vs_projected(
            tokens,
            to_numpy(t.x_query[0]),
            to_numpy(t.heads.weights[0]),
            mask,
            x_is=X_IS,
        )
        for t in trace.layers
    ]


@dataclass(frozen=True)
class Change:
    """What an intervention did to a run, against the run without it (same prompt)."""

    loss: float  # Δ mean cross-entropy of the prompt's tokens (nats)
    kl: float  # mean over positions of KL(without ‖ with) of the next-token distribution (nats)
    top1_changed: int  # positions whose most likely next token changed
    next_before: tuple[str, float]  # after the prompt: the top token and its probability, without
    next_after: tuple[str, float]  # … and with the intervention


def compare(run_: GPTRun, base: GPTRun) -> Change:
    p, q = np.exp(base.next_log_probs.astype(np.float64)), run_.next_log_probs.astype(np.float64)
    kl = (p * (base.next_log_probs - q)).sum(-1)
    return Change(
        loss=run_.loss - base.loss,
        kl=float(kl.mean()),
        top1_changed=int((base.next_log_probs.argmax(-1) != run_.next_log_probs.argmax(-1)).sum()),
        next_before=(base.top_tokens[-1][0], float(base.top_probs[-1, 0])),
        next_after=(run_.top_tokens[-1][0], float(run_.top_probs[-1, 0])),
    )


def head_roles(card: dict) -> dict[tuple[int, int], tuple[str, float]]:
    """(layer, head) → (role, score) from the card's measured per-head tables (random repeated
    sequences): the strongest of previous-token, induction and first-token sink, as it is from
    `ROLE_MIN`, "(weak)" from `WEAK_MIN`, else "—" (diffuse), with that score."""
    tables = {name: np.asarray(card["test"][f"{name}_scores"]) for name in ROLES}
    roles = {}
    for (layer, head), _ in np.ndenumerate(tables["induction"]):
        name = max(ROLES, key=lambda n: tables[n][layer, head])
        score = float(tables[name][layer, head])
        role = ROLES[name] if score >= ROLE_MIN else f"{ROLES[name]} (weak)" if score >= WEAK_MIN else "—"
        roles[(layer, head)] = (role, score)
    return roles


# --- Generation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """Tokens sampled after a prompt: what `views.outputs.model_output` shows."""

    output: tuple[str, ...]  # the new tokens' labels
    token_log_probs: np.ndarray  # (N,) the model's own log p of each (temperature 1, all tokens)
    text: str  # the new tokens decoded


def generate(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: Prompt,
    iv: Interventions = NO_INTERVENTION,
    *,
    new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
) -> Sample:
    """``new_tokens`` sampled after the prompt (temperature 0: greedy), seeded by ``seed`` alone."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    new, logp = model.generate(
        torch.tensor([prompt.ids], device=device),
        new_tokens=new_tokens,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
        iv=iv,
    )
    ids = new[0].tolist()
    return Sample(
        output=tuple(label(tokenizer, i) for i in ids),
        token_log_probs=to_numpy(logp[0]),
        text=tokenizer.decode(ids),
    )


def example() -> GPTRun:
    """The default checkpoint on the default prompt (tests and warm-up)."""
    model, _, tokenizer = load()
    return run(model, tokenizer, prepare(tokenizer, EXAMPLE, model.cfg.max_len))


# --- What the app serves cached (`views.serving.cached`): (model, card, tokenizer) first ----------
def _served_run(loaded, ids: tuple[int, ...], iv: Interventions) -> GPTRun:
    model, _, tokenizer = loaded
    return run(model, tokenizer, Prompt(ids), iv)


def _served_sample(
    loaded, ids: tuple[int, ...], iv: Interventions, new: int, temp: float, top_k: int, seed: int
) -> Sample:
    model, _, tokenizer = loaded
    return generate(model, tokenizer, Prompt(ids), iv, new_tokens=new, temperature=temp, top_k=top_k or None,
                    seed=seed)  # fmt: skip


LOAD = Served(load, spinner="Loading the GPT…")
SERVED = {
    "run": Served(_served_run, max_entries=64),
    "sample": Served(_served_sample, max_entries=32, spinner="Sampling…"),
}
