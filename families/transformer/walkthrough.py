"""The transformer walkthrough's checks: one head's computation (q from x and W_Q, Σ w v, concat W_O)
and the rest of its layer (residual adds, layer norms, the feed-forward network), each recomposed
from the model's own weights and trace and compared with the model's tensor.

Numpy on a `families.transformer.runner.TransformerRun`; `views/walkthrough.py` only shows the results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.protocol import to_numpy
from families.transformer.runner import BlockTrace, LayerSteps, Sublayer, TransformerRun
from models.transformer import Transformer


def layer_module(model: Transformer, block: str, layer: int):
    """The `nn.Module` of ``layer`` in the stack that runs ``block`` (the encoder's, or the decoder's
    for its self- and cross-attention)."""
    return (model.encoder if block == "encoder" else model.decoder)[layer]


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
    module = layer_module(model, name, layer)
    mha = module.cross_attn if name == "cross" else module.self_attn
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
    module, steps = layer_module(model, block, layer), run.layers[stack][layer]
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
