"""Transformer family runner: the encoder–decoder on one input (or a small fixed batch) → numpy.

Every array is batch row 0 of the model's own `TransformerTrace`; nothing is recomputed here.
Inference runs under `torch.inference_mode()`; how many runs share the CPU is the app's policy
(`views.serving`), not the runner's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.attention import NO_INTERVENTION, Interventions, MultiHeadTrace
from models.checkpoints import load_checkpoint
from models.transformer import BLOCKS, LayerTrace, SublayerTrace, Transformer, TransformerConfig
from runners.projections import RawVsProjected, raw_vs_projected, rows_with_a_choice
from runners.protocol import AttentionMaps, to_numpy
from tasks import TASKS, Task, held_out
from tasks.batching import batch_tensors
from tasks.common import BOS, EOS, PAD, Example, Vocab, length_to_eos

DEFAULT = "transformer-dates-h4"
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


@dataclass(frozen=True)
class Walkthrough:
    """One head of one block for one query, with each step recomposed from the numbers shown and
    compared with the model's own tensor (the ``*_gap`` fields: max |recomposed − model's|)."""

    x: np.ndarray  # (d,) the query's input row
    w_q: np.ndarray  # (d_head, d) this head's rows of W_Q
    q: np.ndarray  # (d_head,) the model's q
    q_gap: float  # x W_Qᵀ + b_Q vs the model's q
    context_gap: float  # Σ_j w_j v_j vs the model's head output
    output_gap: float  # concat W_Oᵀ + b_O vs the model's block output


def walkthrough(
    model: Transformer, block: BlockTrace, name: str, layer: int, head: int, query: int
) -> Walkthrough:
    """The recomposition checks of the walkthrough, from the model's own weights and trace."""
    stack = model.encoder if name == "encoder" else model.decoder
    mha = stack[layer].cross_attn if name == "cross" else stack[layer].self_attn
    rows = mha.head_slice(head)
    w_q, b_q = to_numpy(mha.w_q.weight[rows]), to_numpy(mha.w_q.bias[rows])
    w_o, b_o = to_numpy(mha.w_o.weight), to_numpy(mha.w_o.bias)
    x = block.x_query[query]
    return Walkthrough(
        x=x,
        w_q=w_q,
        q=block.q[head, query],
        q_gap=float(np.abs(x @ w_q.T + b_q - block.q[head, query]).max()),
        context_gap=float(
            np.abs(block.weights[head, query] @ block.v[head] - block.head_outputs[head, query]).max()
        ),
        output_gap=float(np.abs(block.concat[query] @ w_o.T + b_o - block.output[query]).max()),
    )


SUBLAYER_TITLES = {"self_attention": "self-attention", "cross_attention": "cross-attention",
                   "feed_forward": "feed-forward"}  # fmt: skip


@dataclass(frozen=True)
class NormStep:
    """A layer norm on one row, recomputed from its numbers: (x − mean) / √(var + ε) · γ + β."""

    x: np.ndarray  # (d,) the row going in
    mean: float
    variance: float  # biased, as nn.LayerNorm
    eps: float
    gamma: np.ndarray  # (d,)
    beta: np.ndarray  # (d,)
    normalised: np.ndarray  # (d,) (x − mean) / √(var + ε)
    output: np.ndarray  # (d,) the model's output row
    gap: float  # max |recomputed − the model's output|


def norm_step(norm: torch.nn.LayerNorm, x: np.ndarray, output: np.ndarray) -> NormStep:
    x64 = x.astype(np.float64)
    mean, variance = float(x64.mean()), float(x64.var())
    normalised = (x64 - mean) / np.sqrt(variance + norm.eps)
    gamma, beta = to_numpy(norm.weight), to_numpy(norm.bias)
    return NormStep(
        x=x,
        mean=mean,
        variance=variance,
        eps=norm.eps,
        gamma=gamma,
        beta=beta,
        normalised=normalised.astype(np.float32),
        output=output,
        gap=float(np.abs(normalised * gamma + beta - output).max()),
    )


@dataclass(frozen=True)
class FeedForwardStep:
    """W₂ ReLU(W₁ x + b₁) + b₂ on one row, recomputed from the weights and checked."""

    x: np.ndarray  # (d,) what the network read
    pre_activation: np.ndarray  # (d_ff,) W₁ x + b₁, recomputed
    hidden: np.ndarray  # (d_ff,) the model's ReLU output
    output: np.ndarray  # (d,) the model's W₂ h + b₂
    hidden_gap: float  # ReLU(recomputed pre-activation) vs the model's hidden
    output_gap: float  # W₂ (model's hidden) + b₂ vs the model's output

    @property
    def share_zero(self) -> float:
        """Share of hidden units the ReLU set to 0 (their pre-activation was ≤ 0)."""
        return float((self.hidden == 0).mean())


@dataclass(frozen=True)
class BlockSteps:
    """Past W_O, for one query row: the attention sublayer's residual add and norm, the layer's
    feed-forward sublayer, its add and norm, and the whole layer recomposed."""

    pre_norm: bool
    attention: Sublayer  # the chosen attention sublayer
    attention_norm: NormStep  # pre-norm: LN(x_in) that attention read; post-norm: LN(x_in + f_out)
    feed_forward: Sublayer
    ffn_norm: NormStep  # pre-norm: LN before the FFN; post-norm: LN(x + FFN(x))
    ffn: FeedForwardStep
    residual_gaps: tuple[float, float]  # pre: x_in + f_out vs x_out; post: LN input check is in the norms
    layer_gap: float  # the layer's output recomposed (norms and FFN from the weights) vs the model's
    stream_labels: tuple[str, ...]  # the residual stream's checkpoints through the whole stack
    stream_norms: np.ndarray  # (len(stream_labels), T) ‖x‖ per position at each checkpoint


def _layer_module(model: Transformer, stack: str, layer: int):
    return (model.encoder if stack == "encoder" else model.decoder)[layer]


def _recompose_layer(module, steps: LayerSteps, pre: bool) -> np.ndarray:
    """The layer's output from its input: each attention sublayer's output as the model computed it
    (steps 1–8 check those), every norm, residual add and the feed-forward network from the weights."""

    def ln(norm, x):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + norm.eps) * to_numpy(norm.weight) + to_numpy(norm.bias)

    def ffn(x):
        w1, b1 = to_numpy(module.ff[0].weight).astype(np.float64), to_numpy(module.ff[0].bias)
        w2, b2 = to_numpy(module.ff[2].weight).astype(np.float64), to_numpy(module.ff[2].bias)
        return np.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2

    x = steps.self_attention.x_in.astype(np.float64)
    subs = [s for s in (steps.self_attention, steps.cross_attention) if s is not None]
    for i, norm in enumerate(module.norms):
        f = subs[i].f_out if i < len(subs) else ffn(ln(norm, x) if pre else x)
        x = x + f if pre else ln(norm, x + f)
    return x


def block_steps(model: Transformer, run: TransformerRun, block: str, layer: int, query: int) -> BlockSteps:
    """The rest of the layer after block ``block``'s W_O, for query row ``query``, every number the
    model's own, each recomposition compared with the model's tensor."""
    stack = "encoder" if block == "encoder" else "decoder"
    module, steps = _layer_module(model, stack, layer), run.layers[stack][layer]
    attention = steps.cross_attention if block == "cross" else steps.self_attention
    norm_index = 1 if block == "cross" else 0
    pre = model.cfg.norm == "pre"
    ff, ff_norm = steps.feed_forward, module.norms[len(module.norms) - 1]

    def around(sub: Sublayer, norm) -> tuple[NormStep, float]:
        if pre:  # the norm came before f: LN(x_in) = f_in; the add is plain
            added = sub.x_in[query] + sub.f_out[query]
            return norm_step(norm, sub.x_in[query], sub.f_in[query]), float(
                np.abs(added - sub.x_out[query]).max()
            )
        return norm_step(norm, sub.x_in[query] + sub.f_out[query], sub.x_out[query]), 0.0

    attention_norm, attention_gap = around(attention, module.norms[norm_index])
    ffn_norm, ffn_gap = around(ff, ff_norm)
    w1, b1 = to_numpy(module.ff[0].weight), to_numpy(module.ff[0].bias)
    w2, b2 = to_numpy(module.ff[2].weight), to_numpy(module.ff[2].bias)
    x_ff, hidden = ff.f_in[query], ff.hidden[query]
    pre_activation = x_ff @ w1.T + b1
    labels, norms = [], []
    for i, layer_steps in enumerate(run.layers[stack]):
        for name in ("self_attention", "cross_attention", "feed_forward"):
            sub = getattr(layer_steps, name)
            if sub is not None:
                labels.append(f"L{i} before {SUBLAYER_TITLES[name]}")
                norms.append(np.linalg.norm(sub.x_in, axis=-1))
    labels.append(f"L{len(run.layers[stack]) - 1} output")
    norms.append(np.linalg.norm(run.layers[stack][-1].feed_forward.x_out, axis=-1))
    return BlockSteps(
        pre_norm=pre,
        attention=attention,
        attention_norm=attention_norm,
        feed_forward=ff,
        ffn_norm=ffn_norm,
        ffn=FeedForwardStep(
            x=x_ff,
            pre_activation=pre_activation,
            hidden=hidden,
            output=ff.f_out[query],
            hidden_gap=float(np.abs(np.maximum(pre_activation, 0) - hidden).max()),
            output_gap=float(np.abs(hidden @ w2.T + b2 - ff.f_out[query]).max()),
        ),
        residual_gaps=(attention_gap, ffn_gap),
        layer_gap=float(np.abs(_recompose_layer(module, steps, pre) - ff.x_out).max()),
        stream_labels=tuple(labels),
        stream_norms=np.stack(norms).astype(np.float32),
    )


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
