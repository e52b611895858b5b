"""The transformer on one input (or a small fixed batch) → numpy for the Transformer page.

Every array is batch row 0 of the model's own `TransformerTrace`; nothing is recomputed here.
Same lock and `inference_mode` as `runners.seq2seq`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from models.attention import NO_INTERVENTION, Interventions, MultiHeadTrace
from models.transformer import BLOCKS, Transformer
from runners.seq2seq import INFERENCE_LOCK
from tasks import Task
from tasks.common import BOS, EOS, EOS_ID, PAD, Example, Vocab
from training.train import batch_tensors


def _np(x: torch.Tensor | None) -> np.ndarray | None:
    return None if x is None else x.detach().float().cpu().numpy()


@dataclass(frozen=True)
class BlockTrace:
    """One attention block of one layer, batch row 0. h heads, Tq queries, Tk keys."""

    x_query: np.ndarray  # (Tq, d) the rows the queries were projected from
    x_key: np.ndarray  # (Tk, d)
    q: np.ndarray  # (h, Tq, d_head)
    k: np.ndarray  # (h, Tk, d_head)
    v: np.ndarray  # (h, Tk, d_head)
    raw_scores: np.ndarray  # (h, Tq, Tk) q·k
    scale: float
    temperature: float
    scaled_scores: np.ndarray  # (h, Tq, Tk) q·k × scale ÷ temperature
    masked_scores: np.ndarray  # (h, Tq, Tk) into the softmax, -inf where masked
    weights: np.ndarray  # (h, Tq, Tk)
    head_outputs: np.ndarray  # (h, Tq, d_head) weights @ v
    head_mask: np.ndarray | None  # (h,)
    concat: np.ndarray  # (Tq, d)
    output: np.ndarray  # (Tq, d) after W_O

    @classmethod
    def of(cls, t: MultiHeadTrace) -> BlockTrace:
        a = t.heads
        return cls(
            x_query=_np(t.x_query[0]),
            x_key=_np(t.x_key[0]),
            q=_np(a.query[0]),
            k=_np(a.key[0]),
            v=_np(a.value[0]),
            raw_scores=_np(a.raw_scores[0]),
            scale=a.scale,
            temperature=a.temperature,
            scaled_scores=_np(a.scaled_scores[0]),
            masked_scores=_np(a.masked_scores[0]),
            weights=_np(a.weights[0]),
            head_outputs=_np(a.output[0]),
            head_mask=_np(t.head_mask),
            concat=_np(t.concat[0]),
            output=_np(t.output[0]),
        )


@dataclass(frozen=True)
class TransformerRun:
    src: tuple[str, ...]  # encoder tokens (padding included when run in a padded batch)
    inputs: tuple[str, ...]  # decoder inputs: <s> y_1 … y_{T-1}
    rows: tuple[str, ...]  # decoder outputs y_1 … y_T (</s> included when reached)
    text: str
    predictions: tuple[str, ...]  # argmax at each position (differs from rows when teacher-forced)
    token_log_probs: np.ndarray  # (T,) log p(rows[t])
    blocks: dict[str, tuple[BlockTrace, ...]]  # BLOCKS → one per layer

    @property
    def log_prob(self) -> float:
        return float(self.token_log_probs.sum())


def _run(trace, src, inputs_ids, rows_ids, tgt_vocab: Vocab, joiner: str) -> TransformerRun:
    t_len = len(rows_ids)
    logp = torch.log_softmax(trace.logits[0, :t_len], -1)
    picked = logp.gather(-1, torch.tensor(rows_ids, device=logp.device)[:, None]).squeeze(-1)
    return TransformerRun(
        src=src,
        inputs=tuple(tgt_vocab.tokens[i] for i in inputs_ids),
        rows=tuple(tgt_vocab.tokens[i] for i in rows_ids),
        text=joiner.join(tgt_vocab.decode(rows_ids)),
        predictions=tuple(tgt_vocab.tokens[i] for i in logp.argmax(-1).tolist()),
        token_log_probs=_np(picked),
        blocks={b: tuple(BlockTrace.of(t) for t in trace.block(b)) for b in BLOCKS},
    )


def run(
    model: Transformer,
    task: Task,
    src: tuple[str, ...],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    iv: Interventions = NO_INTERVENTION,
    *,
    reference: tuple[str, ...] | None = None,
    pad_to: int = 0,
) -> TransformerRun:
    """Greedy decoding (or teacher forcing on ``reference``) of one source under ``iv``.

    ``pad_to`` > len(src) runs the source padded to that length, beside a dummy batch row of full
    length — the padded batch in which the padding mask matters.
    """
    device = next(model.parameters()).device
    ids = src_vocab.encode(src)
    n_pad = max(0, pad_to - len(ids))
    src_ids = torch.tensor([ids + [0] * n_pad], device=device)  # (1, S)
    lens = torch.tensor([len(ids)])
    shown_src = src + (PAD,) * n_pad
    with INFERENCE_LOCK, torch.inference_mode():
        if reference is not None:
            tgt = tgt_vocab.encode((BOS, *reference, EOS))
            _, trace = model(src_ids, lens, torch.tensor([tgt[:-1]], device=device), iv=iv, return_trace=True)
            return _run(trace, shown_src, tgt[:-1], tgt[1:], tgt_vocab, task.joiner)
        out, trace = model.greedy(src_ids, lens, max_len=task.max_target, iv=iv, return_trace=True)
    out_ids = out[0].tolist()
    t_len = out_ids.index(EOS_ID) + 1 if EOS_ID in out_ids else len(out_ids)
    inputs = [tgt_vocab.index[BOS]] + out_ids[: t_len - 1]
    return _run(trace, shown_src, inputs, out_ids[:t_len], tgt_vocab, task.joiner)


def exact_match(
    model: Transformer,
    task: Task,
    examples: list[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    iv: Interventions = NO_INTERVENTION,
) -> float:
    """Greedy exact match on ``examples`` (one padded batch) under ``iv``."""
    device = next(model.parameters()).device
    src, lens, _, _ = batch_tensors(examples, src_vocab, tgt_vocab, device)
    with INFERENCE_LOCK, torch.inference_mode():
        ids, _ = model.greedy(src, lens, max_len=task.max_target, iv=iv)
    hits = [tgt_vocab.decode(row) == list(ex.tgt) for row, ex in zip(ids.tolist(), examples, strict=True)]
    return sum(hits) / len(hits)


def head_ranking(
    model: Transformer,
    task: Task,
    examples: list[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    iv: Interventions = NO_INTERVENTION,
) -> list[tuple[str, int, int, float]]:
    """Each head ablated alone (on top of ``iv``): (block, layer, head, exact match), worst first."""
    rows = []
    for block in BLOCKS:
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                one = replace(iv, ablate=iv.ablate | {(block, layer, head)})
                acc = exact_match(model, task, examples, src_vocab, tgt_vocab, one)
                rows.append((block, layer, head, acc))
    return sorted(rows, key=lambda r: r[3])


def entropy(weights: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each attention row: (…, Tk) → (…). 0 = all on one key."""
    w = np.clip(weights, 1e-12, 1.0)
    return -(weights * np.log(w)).sum(-1)
