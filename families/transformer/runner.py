"""Transformer family runner: the encoder–decoder on one input (or a small fixed batch) → numpy.

Every array is batch row 0 of the model's own `TransformerTrace`; nothing is recomputed here.
Inference runs under `torch.inference_mode()`; how many runs share the CPU is the app's policy
(`views.serving`), not the runner's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis import projections as diagonal
from analysis.family import Served
from analysis.projections import RawVsProjected, raw_vs_projected, rows_with_a_choice
from analysis.protocol import AttentionMaps, to_numpy
from analysis.stats import rank_heads
from families.transformer import circuits
from models.attention import NO_INTERVENTION, Interventions, MultiHeadTrace
from models.checkpoints import ASSETS, load_checkpoint, trained, write_entry
from models.transformer import BLOCKS, VARIANTS, LayerTrace, SublayerTrace, Transformer, TransformerConfig
from tasks import TASKS, Task, held_out
from tasks.batching import batch_tensors
from tasks.common import BOS, EOS, PAD, Example, Vocab, length_to_eos

DEFAULT = "transformer-dates-h4"
FIXED_BATCH = 100  # held-out examples the transformer page scores interventions on
SPECIALS = (BOS, EOS, PAD)
BLOCK_TITLES = {
    "encoder": "encoder self-attention",
    "decoder_self": "decoder masked self-attention",
    "cross": "cross-attention (decoder → encoder)",
}


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
            x_query=to_numpy(t.x_query[0]),
            x_key=to_numpy(t.x_key[0]),
            q=to_numpy(a.query[0]),
            k=to_numpy(a.key[0]),
            v=to_numpy(a.value[0]),
            raw_scores=to_numpy(a.raw_scores[0]),
            scale=a.scale,
            temperature=a.temperature,
            scaled_scores=to_numpy(a.scaled_scores[0]),
            masked_scores=to_numpy(a.masked_scores[0]),
            weights=to_numpy(a.weights[0]),
            head_outputs=to_numpy(a.output[0]),
            head_mask=to_numpy(t.head_mask),
            concat=to_numpy(t.concat[0]),
            output=to_numpy(t.output[0]),
        )


@dataclass(frozen=True)
class Sublayer:
    """One residual sublayer of one layer, batch row 0 (see `models.transformer.SublayerTrace`)."""

    x_in: np.ndarray  # (T, d) the residual stream entering
    f_in: np.ndarray  # (T, d) what f read: LN(x_in) (pre-norm) or x_in (post-norm)
    f_out: np.ndarray  # (T, d) attention after W_O, or the feed-forward network's output
    x_out: np.ndarray  # (T, d) the residual stream leaving
    hidden: np.ndarray | None  # (T, d_ff) feed-forward activations after ReLU

    @classmethod
    def of(cls, t: SublayerTrace | None) -> Sublayer | None:
        if t is None:
            return None
        hidden = None if t.hidden is None else to_numpy(t.hidden[0])
        return cls(*(to_numpy(x[0]) for x in (t.x_in, t.f_in, t.f_out, t.x_out)), hidden)


@dataclass(frozen=True)
class LayerSteps:
    """One layer's residual sublayers, in the order they run."""

    self_attention: Sublayer
    cross_attention: Sublayer | None  # decoder layers only
    feed_forward: Sublayer

    @classmethod
    def of(cls, t: LayerTrace) -> LayerSteps:
        return cls(Sublayer.of(t.self_attention), Sublayer.of(t.cross_attention), Sublayer.of(t.feed_forward))


@dataclass(frozen=True)
class TransformerRun:
    source: tuple[str, ...]  # encoder tokens (padding included when run in a padded batch)
    inputs: tuple[str, ...]  # decoder inputs: <s> y_1 … y_{T-1}
    output: tuple[str, ...]  # decoder outputs y_1 … y_T (</s> included when reached)
    text: str
    predictions: tuple[str, ...]  # argmax at each position (differs from rows when teacher-forced)
    token_log_probs: np.ndarray  # (T,) log p(rows[t])
    blocks: dict[str, tuple[BlockTrace, ...]]  # BLOCKS → one per layer
    maps: dict[str, AttentionMaps]  # BLOCKS → every layer's weights (L, h, Tq, Tk)
    layers: dict[str, tuple[LayerSteps, ...]]  # "encoder", "decoder" → each layer's sublayers

    @property
    def log_prob(self) -> float:
        return float(self.token_log_probs.sum())

    def real_positions(self, n_source: int) -> dict[str, AttentionMaps]:
        """The maps without padding: the first ``n_source`` source positions as encoder queries and
        as keys. With the padding mask on, what a padded run shows there equals the unpadded run."""
        src, rows = range(n_source), range(len(self.inputs))
        encoder, cross = self.maps["encoder"], self.maps["cross"]
        return {
            "encoder": encoder.take(src, src),
            "decoder_self": self.maps["decoder_self"],
            "cross": cross.take(rows, src),
        }


def _run(trace, src, inputs_ids, rows_ids, tgt_vocab: Vocab, joiner: str) -> TransformerRun:
    t_len = len(rows_ids)
    logp = torch.log_softmax(trace.logits[0, :t_len], -1)
    picked = logp.gather(-1, torch.tensor(rows_ids, device=logp.device)[:, None]).squeeze(-1)
    inputs = tuple(tgt_vocab.tokens[i] for i in inputs_ids)
    blocks = {b: tuple(BlockTrace.of(t) for t in trace.block(b)) for b in BLOCKS}
    axes = {"encoder": (src, src), "decoder_self": (inputs, inputs), "cross": (inputs, src)}
    return TransformerRun(
        source=src,
        inputs=inputs,
        output=tuple(tgt_vocab.tokens[i] for i in rows_ids),
        text=joiner.join(tgt_vocab.decode(rows_ids)),
        predictions=tuple(tgt_vocab.tokens[i] for i in logp.argmax(-1).tolist()),
        token_log_probs=to_numpy(picked),
        blocks=blocks,
        layers={
            "encoder": tuple(LayerSteps.of(t) for t in trace.encoder_layers),
            "decoder": tuple(LayerSteps.of(t) for t in trace.decoder_layers),
        },
        maps={
            b: AttentionMaps(
                title=BLOCK_TITLES[b],
                weights=np.stack([layer.weights for layer in blocks[b]]),
                queries=axes[b][0],
                keys=axes[b][1],
                special_keys=np.array([k in SPECIALS for k in axes[b][1]]),
            )
            for b in BLOCKS
        },
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
    with torch.inference_mode():
        if reference is not None:
            tgt = tgt_vocab.encode((BOS, *reference, EOS))
            _, trace = model(src_ids, lens, torch.tensor([tgt[:-1]], device=device), iv=iv, return_trace=True)
            return _run(trace, shown_src, tgt[:-1], tgt[1:], tgt_vocab, task.joiner)
        out, trace = model.greedy(src_ids, lens, max_len=task.max_target, iv=iv, return_trace=True)
    out_ids = out[0].tolist()
    t_len = length_to_eos(out_ids)
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
    with torch.inference_mode():
        ids, _ = model.greedy(src, lens, max_len=task.max_target, iv=iv)
    hits = [tgt_vocab.decode(row) == list(ex.tgt) for row, ex in zip(ids.tolist(), examples, strict=True)]
    return sum(hits) / len(hits)


SELF_ATTENTION_BLOCKS = ("encoder", "decoder_self")  # where queries and keys are one sequence


def projections(run: TransformerRun, block: str, layer: int, *, pre_norm: bool) -> RawVsProjected:
    """softmax(X Xᵀ) on the rows this self-attention layer's W_Q, W_K, W_V read, under the mask it
    used (read back from its masked scores), beside its learned heads."""
    if block not in SELF_ATTENTION_BLOCKS:
        raise ValueError(f"raw self-attention needs one sequence; choose a block of {SELF_ATTENTION_BLOCKS}.")
    trace, maps = run.blocks[block][layer], run.maps[block]
    mask = np.isfinite(trace.masked_scores[0])  # (T, T): the same mask for every head
    stream = (
        "the residual stream after a layer norm (pre-norm)" if pre_norm else "the residual stream (post-norm)"
    )
    first = " — in layer 0, token embeddings × √d + positions" if layer == 0 else ""
    x_is = f"the rows this layer's W_Q, W_K, W_V read: {stream}{first}"
    rows = rows_with_a_choice(mask) & (
        np.array(maps.queries) != PAD
    )  # a padded batch's <pad> rows: not input
    return raw_vs_projected(maps.queries, trace.x_query, trace.weights, mask, x_is=x_is, rows=rows)


def example() -> TransformerRun:
    """The default checkpoint on the first held-out example (tests and warm-up)."""
    model, card, src_vocab, tgt_vocab = load_checkpoint(DEFAULT, Transformer, TransformerConfig)
    task = TASKS[card["task"]]
    return run(model, task, held_out(task.name, 1)[0].src, src_vocab, tgt_vocab)


# --- What the app serves cached (`views.serving.cached`): (model, card, vocabularies) first --------
def _served_run(
    loaded, src: tuple[str, ...], iv: Interventions, reference: tuple[str, ...] | None = None, pad_to: int = 0
) -> TransformerRun:
    model, card, src_vocab, tgt_vocab = loaded
    return run(model, TASKS[card["task"]], src, src_vocab, tgt_vocab, iv, reference=reference, pad_to=pad_to)


@functools.cache
def fixed_batch(task_name: str) -> list[Example]:
    """The first `FIXED_BATCH` examples of the task's test split, generated once (a second or so)."""
    return held_out(task_name, FIXED_BATCH)


def _served_batch_accuracy(loaded, iv: Interventions) -> float:
    """Exact match on `fixed_batch`."""
    model, card, src_vocab, tgt_vocab = loaded
    batch = fixed_batch(card["task"])
    return exact_match(model, TASKS[card["task"]], batch, src_vocab, tgt_vocab, iv)


def _served_head_ranking(loaded, iv: Interventions) -> list[tuple[str, int, int, float]]:
    """Every head switched off alone on top of ``iv``: its exact match on the fixed batch, worst first."""
    model, card, src_vocab, tgt_vocab = loaded
    batch, cfg = fixed_batch(card["task"]), model.cfg

    def accuracy(one: Interventions) -> float:
        return exact_match(model, TASKS[card["task"]], batch, src_vocab, tgt_vocab, one)

    return rank_heads(accuracy, BLOCKS, cfg.n_layers, cfg.n_heads, iv)


def _on_model(fn):
    """A `families.transformer.circuits` measure as a served call, on the model as it is."""
    return lambda loaded, *inputs: fn(loaded[0], *inputs)


SERVED = {
    "run": Served(_served_run, max_entries=128),
    "step_logits": Served(_on_model(circuits.step_logits), max_entries=64),
    "lens": Served(_on_model(circuits.logit_lens), max_entries=32),
    "direct": Served(_on_model(circuits.direct_attribution), max_entries=32),
    "source_sweep": Served(_on_model(circuits.source_sweep), max_entries=32),
    "head_sweep": Served(_on_model(circuits.head_sweep), max_entries=32),
    "batch_accuracy": Served(
        _served_batch_accuracy, max_entries=64, spinner="Scoring the fixed test batch…", copied=True
    ),
    "head_ranking": Served(
        _served_head_ranking,
        max_entries=16,
        spinner="Ablating each head in turn on the fixed test batch…",
        copied=True,
    ),
}


def measure_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every transformer checkpoint: its self-attention blocks on the first ``n`` test sources (greedy
    decoding; the decoder's rows are the model's own output): the ``diagonal_mass`` card entry."""
    written = {}
    for name, task, model, src_vocab, tgt_vocab in trained("transformer", VARIANTS, Transformer,
                                                           TransformerConfig, folder):  # fmt: skip
        runs = [run(model, task, ex.src, src_vocab, tgt_vocab) for ex in held_out(task.name, n)]
        layers, pre_norm = range(model.cfg.n_layers), model.cfg.norm == "pre"
        entry = {
            block: diagonal.card_entry(
                [[projections(r, block, i, pre_norm=pre_norm) for i in layers] for r in runs],
                f"the first {n} test examples of the {task.name} task, decoded greedily",
            )
            for block in SELF_ATTENTION_BLOCKS
        }
        written |= write_entry(name, diagonal.CARD_KEY, entry, folder)
    return written
