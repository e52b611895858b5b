"""Circuits without code: the logit lens, direct logit attribution and value-weighted attention, and
the runs activation patching reads (`runners.patching`) — one implementation for every decoder on
the core (the real LLM, `models.llama`, and our GPT, `models.gpt`).

A model brings what these need by name, not by family: ``embedding_terms`` (the stream entering
layer 0 as the terms it sums), ``readout`` (the final norm and unembedding the forward ends with),
``final_norm``, ``unembedding``, ``blocks[i].attn`` (the core's `MultiHeadAttention`), and a forward
taking ``patch``, ``resume`` and ``logits="last"``; its trace has ``streams`` and ``attentions``.

The metric is logit(target) − logit(rival) at the last position. Every number comes from the model's
own forward passes; the only arithmetic of ours is the final norm written as a linear map with the
scale the run computed (direct attribution), and gradient × difference (attribution patching).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, Interventions
from models.kv_cache import KVCache
from runners.protocol import to_numpy


@dataclass(frozen=True)
class Pair:
    """The metric's two tokens: logit(target) − logit(rival) at the last position."""

    target: int
    rival: int

    def __post_init__(self) -> None:
        if self.target == self.rival:
            raise ValueError("target and rival are the same token: pick two different tokens.")


def metric(logits: Tensor, pair: Pair) -> Tensor:
    """(B, T, V) → (B,) logit(target) − logit(rival) at the last position."""
    last = logits[:, -1].float()
    return last[:, pair.target] - last[:, pair.rival]


@dataclass(frozen=True)
class Run:
    """One prompt's forward, kept for the analyses: the trace (residual streams and every head's
    context) and the metric. Tensors, batch row 0."""

    ids: Tensor  # (1, T)
    logits: Tensor  # (1, T, V)
    streams: tuple[tuple[Tensor, Tensor, Tensor], ...]  # per layer (resid_pre, mid, post), each (1, T, d)
    contexts: Tensor  # (L, h, T, d_head) every head's context before W_O
    value: float  # the metric
    cache: KVCache | None  # every layer's keys and values, for a model with a KV cache (`new_cache`)


def scored(run: Run, pair: Pair) -> Run:
    """``run`` with its metric for ``pair`` (the same forward: nothing runs again)."""
    return replace(run, value=float(metric(run.logits, pair)[0]))


def forward(model: nn.Module, ids: Sequence[int], pair: Pair | None,
            iv: Interventions = NO_INTERVENTION) -> Run:  # fmt: skip
    """The model on ``ids`` with every layer traced (and its keys and values cached, where it can);
    without a ``pair`` the metric is NaN until `scored`."""
    x = torch.tensor([list(ids)], device=model.unembedding.device)
    cache = model.new_cache(x.shape[1]) if hasattr(model, "new_cache") else None
    cached = {} if cache is None else {"cache": cache}
    with torch.inference_mode():
        logits, trace = model(x, iv=iv, return_trace=True, capture="weights", **cached)
    value = math.nan if pair is None else float(metric(logits, pair)[0])
    return Run(x, logits, trace.streams, _contexts(model, trace), value, cache)


def _contexts(model: nn.Module, trace) -> Tensor:
    """(L, h, T, d_head): each head's context, read off the concat each layer fed W_O (batch row 0)."""
    attn = model.blocks[0].attn
    out = []
    for a in trace.attentions:
        b, t, _ = a.concat.shape
        out.append(a.concat[0].view(t, attn.n_heads, attn.d_head).transpose(0, 1))  # (h, T, d_head)
    return torch.stack(out)


LENS_ROWS = 1024  # stream rows read out per matmul in the logit lens (1,024 × 49,152 logits: 200 MB)


# --- Logit lens -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lens:
    """Each layer's residual stream read out by the final norm and the unembedding, at every position.
    S stages (the embedding; after each layer's attention; after each layer's MLP), T positions."""

    stages: tuple[str, ...]  # (S,)
    target_prob: np.ndarray  # (S, T)
    rival_prob: np.ndarray  # (S, T)
    target_rank: np.ndarray  # (S, T) 0 = the most likely token
    rival_rank: np.ndarray  # (S, T)
    logit_diff: np.ndarray  # (S, T) logit(target) − logit(rival)
    top_ids: np.ndarray  # (S, T, k)
    top_probs: np.ndarray  # (S, T, k)
    last_logits: np.ndarray  # (T, V) the last stage's read-out: the model's own output


def _read_out(model: nn.Module, streams: Sequence[Tensor], t_len: int) -> Iterator[Tensor]:
    """Each stream's (T, V) logits in order: all but the last a few at a time (one larger matmul is ~2.5×
    faster than one per stream on 2 cores, and at most ``LENS_ROWS`` rows of logits live at once); the
    last as the forward reads it out, (1, T, d), so that it is the model's output bit for bit."""
    per, first = max(1, LENS_ROWS // t_len), streams[:-1]  # streams per matmul, the streams before the last
    for i in range(0, len(first), per):
        yield from model.readout(torch.cat([x[0] for x in first[i : i + per]])).float().split(t_len)
    yield model.readout(streams[-1])[0].float()


def logit_lens(model: nn.Module, run: Run, pair: Pair, *, k: int = 5) -> Lens:
    """The lens over ``run``'s streams. The last stage is the final stream read out by the model's own
    ``readout``, so its row is the model's output."""
    terms = model.embedding_terms(run.ids)
    stages = [("embedding", sum(terms.values()))]
    for i, (_, mid, post) in enumerate(run.streams):
        stages += [(f"L{i} attn", mid), (f"L{i} mlp", post)]
    with torch.inference_mode():
        read = _read_out(model, [x for _, x in stages], run.ids.shape[1])
        return lens_of([name for name, _ in stages], read, pair, k=k)


def lens_of(stages: Sequence[str], read_out: Iterable[Tensor], pair: Pair, *, k: int = 5) -> Lens:
    """The `Lens` of each stage's read-out logits (T, V), in ``stages``' order: probabilities, ranks and
    logit difference of the pair, and the top ``k`` tokens, per stage and position."""
    cols = {name: [] for name in ("tp", "rp", "tr", "rr", "diff", "ids", "probs")}
    for logits in read_out:  # (T, V) per stage
        logp = torch.log_softmax(logits, -1)
        t, r = logits[:, pair.target], logits[:, pair.rival]  # (T,)
        cols["tp"].append(logp[:, pair.target].exp())
        cols["rp"].append(logp[:, pair.rival].exp())
        # Ranks: tokens with a larger logit, counted in int32 (a bool tensor's default int64 sum is ~1.7×
        # slower here, and these two counts were a third of the lens's time on 2 cores).
        cols["tr"].append((logits > t[:, None]).sum(-1, dtype=torch.int32))
        cols["rr"].append((logits > r[:, None]).sum(-1, dtype=torch.int32))
        cols["diff"].append(t - r)
        top = torch.topk(logp, min(k, logits.shape[-1]), -1)
        cols["ids"].append(top.indices)
        cols["probs"].append(top.values.exp())
    stack = {name: torch.stack(v).cpu().numpy() for name, v in cols.items()}
    return Lens(
        stages=tuple(stages), target_prob=stack["tp"], rival_prob=stack["rp"], target_rank=stack["tr"],
        rival_rank=stack["rr"], logit_diff=stack["diff"], top_ids=stack["ids"], top_probs=stack["probs"],
        last_logits=to_numpy(logits),
    )  # fmt: skip


# --- Direct logit attribution ---------------------------------------------------------------------
@dataclass(frozen=True)
class Direct:
    """The final residual at the last position as a sum of terms — the embedding(s), each head's output
    (its slice of W_O), each attention bias, each MLP's output — and each term's direct effect on the
    metric through the final norm (as a linear map, with the scale the run computed) and the
    unembedding. ``effects`` sum to ``total`` (float32 sums in another order: within 1e-3)."""

    names: tuple[str, ...]  # every term
    effects: np.ndarray  # (n,) direct effect on logit(target) − logit(rival)
    heads: np.ndarray  # (L, h) the heads' effects (also in ``effects``)
    mlps: np.ndarray  # (L,)
    total: float  # the model's own metric
    scale: float  # the final norm's 1/rms (or 1/σ) from the run


def norm_as_linear(norm: nn.Module, x: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor | None, float]:
    """The final norm at stream ``x`` (d,) as (a linear map f, its constant or None, the scale): for
    this x, norm(x) = f(x) + constant, and f applies to each term alone. RMSNorm: γ ⊙ c / rms(x);
    LayerNorm: γ ⊙ (c − mean c) / σ(x), plus β."""
    if isinstance(norm, nn.RMSNorm):
        eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (1,)
        return (lambda c: norm.weight * (c * scale)), None, float(scale)
    if isinstance(norm, nn.LayerNorm):
        scale = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
        return (lambda c: norm.weight * ((c - c.mean(-1, keepdim=True)) * scale)), norm.bias, float(scale)
    raise TypeError(f"no linear form for {type(norm).__name__}; add one to runners.circuits.norm_as_linear.")


def direct_attribution(model: nn.Module, run: Run, pair: Pair) -> Direct:
    """Each term's direct effect on the metric at the last position."""
    terms: dict[str, Tensor] = {}
    with torch.inference_mode():
        for name, term in model.embedding_terms(run.ids).items():
            terms[name] = term[0, -1]
        n_layers = len(run.streams)
        for i, (_, mid, post) in enumerate(run.streams):
            terms |= head_terms(f"L{i}", model.blocks[i].attn, run.contexts[i, :, -1])
            terms[f"L{i} MLP"] = post[0, -1] - mid[0, -1]
        final = run.streams[-1][2][0, -1]  # (d,)
        names, effects, scale = term_effects(model.final_norm, final, model.unembedding, pair, terms)
    index = {n: j for j, n in enumerate(names)}
    n_heads = run.contexts.shape[1]
    heads = np.array([[effects[index[f"L{i} H{h}"]] for h in range(n_heads)] for i in range(n_layers)])
    mlps = np.array([effects[index[f"L{i} MLP"]] for i in range(n_layers)])
    return Direct(names, effects, heads, mlps, run.value, scale)


def head_terms(prefix: str, attn: nn.Module, contexts: Tensor) -> dict[str, Tensor]:
    """One attention layer's output at one position as terms: each head's context (h, d_head) through its
    slice of W_O (``"{prefix} H{h}"``), and W_O's bias (``"{prefix} attention bias"``) where it has one."""
    n_heads = contexts.shape[0]
    w_o = attn.w_o.weight.view(attn.d_model, n_heads, attn.d_head)  # (d, h, d_head)
    per_head = torch.einsum("dhk,hk->hd", w_o, contexts)  # (h, d)
    terms = {f"{prefix} H{h}": per_head[h] for h in range(n_heads)}
    if attn.w_o.bias is not None:
        terms[f"{prefix} attention bias"] = attn.w_o.bias
    return terms


def term_effects(norm: nn.Module, final: Tensor, unembedding: Tensor, pair: Pair, terms: dict[str, Tensor],
                 bias: Tensor | None = None) -> tuple[tuple[str, ...], np.ndarray, float]:  # fmt: skip
    """(names, direct effects, the norm's scale) of ``terms`` (name → (d,)), which sum to the ``final``
    stream (d,): each through the final norm as a linear map at ``final``'s scale and the unembedding
    rows (V, d) of the pair; the norm's constant and the unembedding's ``bias`` (V,) as terms of their own."""
    f, constant, scale = norm_as_linear(norm, final)
    w = unembedding[pair.target] - unembedding[pair.rival]  # (d,)
    names = list(terms)
    effects = (f(torch.stack(list(terms.values()))) @ w).float()  # (n,)
    if constant is not None:
        names.append("final norm bias")
        effects = torch.cat([effects, (constant @ w).float()[None]])
    if bias is not None:
        names.append("unembedding bias")
        effects = torch.cat([effects, (bias[pair.target] - bias[pair.rival]).float()[None]])
    return tuple(names), effects.cpu().numpy(), scale


# --- Value-weighted attention ---------------------------------------------------------------------
def value_norms(attention, attn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(weights α (h, Tq, Tk), norms ‖α_ij · v_j W_O^h‖ (h, Tq, Tk)) of one layer's trace of the core's
    `MultiHeadAttention` (Kobayashi et al. 2020): how much of each key actually reaches the head's
    output, not only how much it is looked at. Any family whose layer is the core's block: the
    decoders here, BERT (`runners.bert.value_weighted`)."""
    values = attention.heads.value[0][list(attention.kv_heads) if attention.kv_heads else slice(None)]
    w_o = attn.w_o.weight.view(attn.d_model, attn.n_heads, attn.d_head)  # (d, h, d_head)
    moved = torch.einsum("dhk,htk->htd", w_o, values).norm(dim=-1)  # (h, Tk): ‖v_j W_O^h‖
    weights = attention.heads.weights[0]  # (h, Tq, Tk)
    return to_numpy(weights), to_numpy(weights * moved[:, None, :])


def value_weighted(model: nn.Module, ids: Sequence[int], layer: int, iv: Interventions = NO_INTERVENTION
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """`value_norms` of a decoder's ``layer`` on ``ids``."""
    x = torch.tensor([list(ids)], device=model.unembedding.device)
    with torch.inference_mode():
        _, trace = model(x, iv=iv, return_trace=True, capture="weights")
        return value_norms(trace.attentions[layer], model.blocks[layer].attn)
