"""One seq2seq model on one input → the numbers a page shows, as CPU numpy (no Streamlit here).

Every array comes straight out of the model's own trace (`DecodeTrace`); nothing is recomputed
for display. Inference runs under `torch.inference_mode()` (thread-local) and one lock: cached models
are shared by all sessions, and on 2 cores two concurrent forwards only slow each other down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from models.seq2seq import DecodeTrace, Seq2Seq
from tasks import Task
from tasks.common import BOS, EOS, EOS_ID, Vocab

INFERENCE_LOCK = threading.Lock()
TOP_K = 5


class InputError(ValueError):
    """Input the page should refuse with this message (empty, too long)."""


@dataclass(frozen=True)
class Prepared:
    tokens: tuple[str, ...]  # source tokens as the model reads them
    unknown: tuple[str, ...]  # tokens the vocabulary lacks (read as <unk>)


def prepare(task: Task, text: str, src_vocab: Vocab) -> Prepared:
    """User text → source tokens; raises InputError with the message to show."""
    tokens = task.tokenize(text)
    if not tokens:
        raise InputError(f"Type a source text, for example: “{task.placeholder}”.")
    if len(tokens) > task.max_source:
        raise InputError(
            f"That input is {len(tokens)} {task.unit} long; this model accepts at most "
            f"{task.max_source} {task.unit}. Shorten it and try again."
        )
    return Prepared(tokens, tuple(src_vocab.unknown(tokens)))


@dataclass(frozen=True)
class Run:
    """One decoded (or teacher-forced) output and every step's numbers. T steps, S source tokens."""

    src: tuple[str, ...]
    rows: tuple[str, ...]  # the T emitted/forced tokens, "</s>" included when reached
    text: str  # the output joined, without </s>
    log_prob: float  # Σ log p over the T tokens
    token_log_probs: np.ndarray  # (T,)
    weights: np.ndarray | None  # (T, S) α; None for the no-attention baseline
    raw_scores: np.ndarray | None  # (T, S) e before scaling
    scaled_scores: np.ndarray | None  # (T, S) into the softmax
    scale: float
    queries: np.ndarray  # (T, 2H) s_{t-1}
    contexts: np.ndarray  # (T, 2H) c_t
    states: np.ndarray  # (T, 2H) s_t
    memory: np.ndarray  # (S, 2H) encoder annotations h_i
    top_tokens: tuple[tuple[str, ...], ...]  # per step, the TOP_K most likely next tokens
    top_probs: np.ndarray  # (T, TOP_K)


def _run(
    trace: DecodeTrace,
    ids: list[int],
    src: tuple[str, ...],
    memory: torch.Tensor,
    tgt_vocab: Vocab,
    joiner: str,
) -> Run:
    """Batch row 0 of ``trace`` → a Run (steps after the first </s> are dropped)."""
    t_len = ids.index(EOS_ID) + 1 if EOS_ID in ids else len(ids)
    probs = torch.softmax(trace.logits[0, :t_len], -1)  # (T, V)
    top = probs.topk(min(TOP_K, probs.shape[-1]), -1)

    def cut(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else x[0, :t_len].detach().float().cpu().numpy()

    return Run(
        src=src,
        rows=tuple(tgt_vocab.tokens[i] for i in ids[:t_len]),
        text=joiner.join(tgt_vocab.decode(ids[:t_len])),
        log_prob=float(trace.log_probs[0, :t_len].sum()),
        token_log_probs=cut(trace.log_probs),
        weights=cut(trace.weights),
        raw_scores=cut(trace.raw_scores),
        scaled_scores=cut(trace.scaled_scores),
        scale=trace.scale,
        queries=cut(trace.queries),
        contexts=cut(trace.contexts),
        states=cut(trace.states),
        memory=memory[0].detach().float().cpu().numpy(),
        top_tokens=tuple(tuple(tgt_vocab.tokens[i] for i in row) for row in top.indices.tolist()),
        top_probs=top.values.float().cpu().numpy(),
    )


def decode(
    model: Seq2Seq,
    task: Task,
    src: tuple[str, ...],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    beam: int = 1,
    reference: tuple[str, ...] | None = None,
) -> list[Run]:
    """Free-running decoding (greedy when ``beam`` is 1, else the ``beam`` best hypotheses), or
    teacher forcing on ``reference`` (one Run whose log p is the reference's)."""
    device = next(model.parameters()).device
    src_ids = torch.tensor([src_vocab.encode(src)], device=device)  # (1, S)
    lens = torch.tensor([len(src)])
    with INFERENCE_LOCK, torch.inference_mode():
        memory = model.encode(src_ids, lens).memory
        if reference is not None:
            ids = tgt_vocab.encode((BOS, *reference, EOS))
            _, trace = model(src_ids, lens, torch.tensor([ids[:-1]], device=device), return_trace=True)
            return [_run(trace, ids[1:], src, memory, tgt_vocab, task.joiner)]
        if beam <= 1:
            out, trace = model.greedy(src_ids, lens, max_len=task.max_target, return_trace=True)
            return [_run(trace, out[0].tolist(), src, memory, tgt_vocab, task.joiner)]
        hyps = model.beam(src_ids, k=beam, max_len=task.max_target)
        return [_run(h.trace, h.tokens, src, memory, tgt_vocab, task.joiner) for h in hyps]
