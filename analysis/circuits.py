"""Circuits without code: the logit lens, direct logit attribution and value-weighted attention, and
the runs activation patching reads (`analysis.patching`) — one implementation for every decoder on
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor, nn

from analysis.protocol import to_numpy
from models.attention import NO_INTERVENTION, Interventions
from models.kv_cache import KVCache


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

    @property
    def layers_heads(self) -> tuple[int, int]:
        """(L, h): the model's layers and its (query) heads per layer, as the run traced them."""
        n_layers, n_heads = self.contexts.shape[:2]
        return n_layers, n_heads


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


def candidates(run: Run, k: int) -> np.ndarray:
    """(k,) int64: the ids of the k most likely next tokens after the prompt, best first (the last
    position's logits, in `torch.topk`'s order)."""
    return torch.topk(run.logits[0, -1].float(), k).indices.cpu().numpy()


def _contexts(model: nn.Module, trace) -> Tensor:
    """(L, h, T, d_head): each head's context, read off the concat each layer fed W_O (batch row 0)."""
    attn = model.blocks[0].attn
    out = []
    for a in trace.attentions:
        b, t, _ = a.concat.shape
        out.append(a.concat[0].view(t, attn.n_heads, attn.d_head).transpose(0, 1))  # (h, T, d_head)
    return torch.stack(out)


LENS_ROWS = 2048  # stream rows read out together in the logit lens
VOCAB_CHUNK = 2048  # unembedding rows per matmul: at most 2,048 × 2,048 logits (16 MB) live at once, not × V


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


@dataclass(frozen=True)
class _Readings:
    """What the lens keeps of N rows of logits: the pair's logits and ranks, the softmax's shift and
    denominator, and the top k. Probabilities are exp(logit − peak) / mass, as softmax computes them."""

    target: Tensor  # (N,) logit(target)
    rival: Tensor  # (N,)
    peak: Tensor  # (N,) the largest logit
    mass: Tensor  # (N,) Σ exp(logit − peak) over the vocabulary
    target_rank: Tensor  # (N,) float32 count of the tokens with a larger logit
    rival_rank: Tensor  # (N,)
    top_ids: Tensor  # (N, k)
    top_logits: Tensor  # (N, k)


def _count_above(logits: Tensor, bar: Tensor, scratch: Tensor | None = None) -> Tensor:
    """(N, C) logits, (N,) bar → (N,) how many logits in each row are larger, as float32: the comparison
    written as 1.0/0.0 floats (into ``scratch``, N·C floats or more, when given) and summed, exact
    below 2²⁴ tokens (5× faster here than summing a bool tensor, which is first copied to integers)."""
    out = torch.empty_like(logits) if scratch is None else _rows_of(scratch, logits.shape)
    return torch.gt(logits, bar[:, None], out=out).sum(-1)


def _rows_of(buffer: Tensor, shape: torch.Size | tuple[int, int]) -> Tensor:
    """A contiguous (N, C) view of the first N·C floats of the flat ``buffer``."""
    return buffer[: shape[0] * shape[1]].view(shape)


def _readings(logits: Tensor, pair: Pair, k: int) -> _Readings:
    """(N, V) logits → their `_Readings`."""
    t, r = logits[:, pair.target], logits[:, pair.rival]  # (N,)
    top = torch.topk(logits, min(k, logits.shape[-1]), -1)
    peak = top.values[:, 0]
    return _Readings(
        target=t, rival=r, peak=peak, mass=(logits - peak[:, None]).exp_().sum(-1),
        target_rank=_count_above(logits, t), rival_rank=_count_above(logits, r),
        top_ids=top.indices, top_logits=top.values,
    )  # fmt: skip


def _readings_by_chunk(normed: Tensor, unembedding: Tensor, pair: Pair, k: int,
                       softcap: float | None = None) -> _Readings:  # fmt: skip
    """The `_Readings` of ``normed`` (N, d) @ ``unembedding``ᵀ (V, d) — soft-capped to c · tanh(· / c)
    where the model caps its logits (``softcap`` c, Gemma 2), as its readout does — VOCAB_CHUNK tokens at a
    time, so that each block of logits is reduced while it is in cache and the (N, V) logits never exist: the
    chunks' softmax sums, rank counts and top k combine as over the whole row. The chunks that
    hold the target and the rival are read first, so the pair's logits are those very numbers.

    Speed: the blocks are written into buffers made once (a fresh 9 MB block per matmul costs its
    page faults: 20% of the read-out), and a chunk's top k is sorted only in the rows whose chunk
    maximum beats that row's k-th best so far (after the first chunks, few do: a row maximum is 30×
    cheaper than a row top k)."""
    vocab, n = unembedding.shape[0], normed.shape[0]
    k = min(k, vocab)
    chunks = [(a, min(a + VOCAB_CHUNK, vocab)) for a in range(0, vocab, VOCAB_CHUNK)]
    first = list(dict.fromkeys((pair.target // VOCAB_CHUNK, pair.rival // VOCAB_CHUNK)))
    buffers = [normed.new_empty(n * (chunks[0][1] - chunks[0][0])) for _ in range(len(first) + 1)]
    scratch = buffers.pop()  # the rank counts' 1.0/0.0 comparisons

    def read(i: int, buffer: Tensor) -> Tensor:  # (N, chunk) logits of chunk i, written into buffer
        a, b = chunks[i]
        logits = torch.mm(normed, unembedding[a:b].T, out=_rows_of(buffer, (n, b - a)))
        # The cap in place, op for op as `models.decoder.soft_cap` (÷ c, tanh, × c): the same floats.
        return logits if softcap is None else logits.div_(softcap).tanh_().mul_(softcap)

    ready = {i: read(i, buffer) for i, buffer in zip(first, buffers, strict=True)}
    t = ready[first[0]][:, pair.target - chunks[first[0]][0]].clone()  # (N,), not a view: chunks are
    r = ready[first[-1]][:, pair.rival - chunks[first[-1]][0]].clone()  # turned into exp in place below
    counts = [torch.zeros_like(t) for _ in range(2)]
    best = torch.full((n, k), -math.inf, dtype=normed.dtype, device=normed.device)  # (N, k) descending
    best_ids = torch.zeros((n, k), dtype=torch.long, device=normed.device)
    peaks, masses = [], []
    for i in first + [i for i in range(len(chunks)) if i not in ready]:
        a, b = chunks[i]
        logits = ready.pop(i) if i in ready else read(i, buffers[0])  # (N, b − a)
        for count, bar in zip(counts, (t, r), strict=True):
            count += _count_above(logits, bar, scratch)
        peak = logits.amax(-1)  # (N,)
        rows = torch.nonzero(peak > best[:, -1]).squeeze(1)  # the rows whose top k this chunk changes
        if len(rows):
            top = torch.topk(logits[rows], min(k, b - a), -1)
            merged = torch.topk(torch.cat([best[rows], top.values], 1), k, -1)
            best[rows] = merged.values
            best_ids[rows] = torch.cat([best_ids[rows], top.indices + a], 1).gather(1, merged.indices)
        peaks.append(peak)
        masses.append(logits.sub_(peak[:, None]).exp_().sum(-1))  # in place: the chunk is done with
    rescale = (torch.stack(peaks, 1) - best[:, :1]).exp()  # (N, chunks): each chunk's sum onto the peak
    return _Readings(
        target=t, rival=r, peak=best[:, 0], mass=(torch.stack(masses, 1) * rescale).sum(1),
        target_rank=counts[0], rival_rank=counts[1], top_ids=best_ids, top_logits=best,
    )  # fmt: skip


def lens_of(stages: Sequence[str], readings: Sequence[_Readings], last_logits: Tensor) -> Lens:
    """The `Lens` of stage-major ``readings`` (S·T rows in all, T = ``last_logits``' rows) of ``stages``."""
    got = {f.name: torch.cat([getattr(x, f.name) for x in readings]).unflatten(0, (len(stages), -1))
           for f in fields(_Readings)}  # (S, T, …) each  # fmt: skip
    numpy = lambda x: x.cpu().numpy()  # noqa: E731
    prob = lambda logit: numpy((logit - got["peak"]).exp() / got["mass"])  # noqa: E731
    return Lens(
        stages=tuple(stages), target_prob=prob(got["target"]), rival_prob=prob(got["rival"]),
        target_rank=numpy(got["target_rank"].int()), rival_rank=numpy(got["rival_rank"].int()),
        logit_diff=numpy(got["target"] - got["rival"]), top_ids=numpy(got["top_ids"]),
        top_probs=numpy((got["top_logits"] - got["peak"][..., None]).exp() / got["mass"][..., None]),
        last_logits=to_numpy(last_logits),
    )  # fmt: skip


def lens_of_logits(stages: Sequence[str], read_out: Iterable[Tensor], pair: Pair, *, k: int = 5) -> Lens:
    """The `Lens` of each stage's read-out logits (T, V), in ``stages``' order."""
    logits = list(read_out)  # small vocabularies: every stage's logits at once is little
    return lens_of(stages, [_readings(x, pair, k) for x in logits], logits[-1])


def logit_lens(model: nn.Module, run: Run, pair: Pair, *, k: int = 5) -> Lens:
    """The lens over ``run``'s streams: each stream through the model's ``final_norm``, ``unembedding`` and
    ``logit_softcap`` where it has one (what its ``readout`` applies), LENS_ROWS rows at a time. The last
    stage is the final stream read out by ``readout`` itself, as the forward does, so its row is the model's
    output bit for bit."""
    terms = model.embedding_terms(run.ids)
    stages = [("embedding", sum(terms.values()))]
    for i, (_, mid, post) in enumerate(run.streams):
        stages += [(f"L{i} attn", mid), (f"L{i} mlp", post)]
    with torch.inference_mode():
        rows = model.final_norm(torch.cat([x[0] for _, x in stages[:-1]]))  # ((S − 1)·T, d)
        blocks = math.ceil(len(rows) / LENS_ROWS)  # even blocks: 2,100 rows go as 2 × 1,050, not 2,048 + 52
        cap, unembedding = model.logit_softcap, model.unembedding
        readings = [_readings_by_chunk(b, unembedding, pair, k, cap) for b in rows.tensor_split(blocks)]
        last = model.readout(stages[-1][1])[0].float()  # (T, V)
        return lens_of([name for name, _ in stages], [*readings, _readings(last, pair, k)], last)


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
    raise TypeError(f"no linear form for {type(norm).__name__}; add one to analysis.circuits.norm_as_linear.")


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
    decoders here, BERT (`families.bert.runner.value_weighted`)."""
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
