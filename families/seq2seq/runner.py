"""Seq2seq family runner: one GRU encoder–decoder on one input → view-ready numpy (no Streamlit).

Every array comes straight out of the model's own trace (`DecodeTrace`); nothing is recomputed
for display. Inference runs under `torch.inference_mode()` (thread-local); how many runs may share
the CPU at once is the app's policy (`views.serving`), not the runner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from analysis.family import Served
from analysis.protocol import AttentionMaps, to_numpy
from models.checkpoints import load_checkpoint
from models.seq2seq import DecodeTrace, Seq2Seq, Seq2SeqConfig
from tasks import TASKS, Task, held_out
from tasks.common import BOS, EOS, Vocab, length_to_eos

TOP_K = 5
DEFAULT = "seq2seq-dates-additive"


@dataclass(frozen=True)
class Seq2SeqRun:
    """One decoded (or teacher-forced) output and every step's numbers. T steps, S source tokens."""

    source: tuple[str, ...]
    output: tuple[str, ...]  # the T emitted/forced tokens, "</s>" included when reached
    text: str  # the output joined, without </s>
    log_prob: float  # Σ log p over the T tokens
    token_log_probs: np.ndarray  # (T,)
    weights: np.ndarray | None  # (T, S) α; None for the no-attention baseline
    raw_scores: np.ndarray | None  # (T, S) e before scaling
    masked_scores: np.ndarray | None  # (T, S) scaled, then masked: what went into the softmax
    scale: float
    queries: np.ndarray  # (T, 2H) s_{t-1}
    contexts: np.ndarray  # (T, 2H) c_t
    states: np.ndarray  # (T, 2H) s_t
    memory: np.ndarray  # (S, 2H) encoder annotations h_i
    top_tokens: tuple[tuple[str, ...], ...]  # per step, the TOP_K most likely next tokens
    top_probs: np.ndarray  # (T, TOP_K)
    maps: dict[str, AttentionMaps] = field(default_factory=dict)  # {"alignment": α} (none: baseline)


def _run(
    trace: DecodeTrace,
    ids: list[int],
    src: tuple[str, ...],
    memory: torch.Tensor,
    tgt_vocab: Vocab,
    joiner: str,
) -> Seq2SeqRun:
    """Batch row 0 of ``trace`` → a run (steps after the first </s> are dropped)."""
    t_len = length_to_eos(ids)
    probs = torch.softmax(trace.logits[0, :t_len], -1)  # (T, V)
    top = probs.topk(min(TOP_K, probs.shape[-1]), -1)

    def cut(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else to_numpy(x[0, :t_len])

    output = tuple(tgt_vocab.tokens[i] for i in ids[:t_len])
    weights = cut(trace.weights)
    return Seq2SeqRun(
        source=src,
        output=output,
        text=joiner.join(tgt_vocab.decode(ids[:t_len])),
        log_prob=float(trace.log_probs[0, :t_len].sum()),
        token_log_probs=cut(trace.log_probs),
        weights=weights,
        raw_scores=cut(trace.raw_scores),
        masked_scores=cut(trace.masked_scores),
        scale=trace.scale,
        queries=cut(trace.queries),
        contexts=cut(trace.contexts),
        states=cut(trace.states),
        memory=to_numpy(memory[0]),
        top_tokens=tuple(tuple(tgt_vocab.tokens[i] for i in row) for row in top.indices.tolist()),
        top_probs=to_numpy(top.values),
        maps={}
        if weights is None
        else {"alignment": AttentionMaps.single("alignment α (decoder step → source)", weights, output, src)},
    )


def run(
    model: Seq2Seq,
    task: Task,
    src: tuple[str, ...],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    beam: int = 1,
    reference: tuple[str, ...] | None = None,
) -> list[Seq2SeqRun]:
    """Free-running decoding (greedy when ``beam`` is 1, else the ``beam`` best hypotheses), or
    teacher forcing on ``reference`` (one Run whose log p is the reference's)."""
    device = next(model.parameters()).device
    src_ids = torch.tensor([src_vocab.encode(src)], device=device)  # (1, S)
    lens = torch.tensor([len(src)])
    with torch.inference_mode():
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


def example() -> Seq2SeqRun:
    """The default checkpoint on the first held-out example (tests and warm-up)."""
    model, card, src_vocab, tgt_vocab = load_checkpoint(DEFAULT, Seq2Seq, Seq2SeqConfig)
    task = TASKS[card["task"]]
    return run(model, task, held_out(task.name, 1)[0].src, src_vocab, tgt_vocab)[0]


# --- What the app serves cached (`views.serving.cached`): (model, card, vocabularies) first --------
def _served_runs(
    loaded, src: tuple[str, ...], beam: int = 1, reference: tuple[str, ...] | None = None
) -> list[Seq2SeqRun]:
    model, card, src_vocab, tgt_vocab = loaded
    return run(model, TASKS[card["task"]], src, src_vocab, tgt_vocab, beam=beam, reference=reference)


SERVED = {"runs": Served(_served_runs, max_entries=256)}
