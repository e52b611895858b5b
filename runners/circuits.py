"""Circuits without code: the logit lens, direct logit attribution, activation patching (exact and
attribution patching), ablations and value-weighted attention — one implementation for every
decoder on the core (the real LLM, `models.llama`, and our GPT, `models.gpt`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, Interventions
from models.kv_cache import KVCache
from models.patching import Patch
from runners.protocol import to_numpy

Progress = Callable[[float], None]  # called with the share done, 0…1
BATCH = 64  # patched copies per forward
Ablation = Literal["zero", "mean", "resample"]
ABLATIONS: dict[str, str] = {
    "zero": "the head's context set to 0",
    "mean": "the head's context replaced by its mean over the reference set, at every position",
    "resample": "the head's context replaced by the one it has on the corrupted prompt",
}


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


def forward(model: nn.Module, ids: Sequence[int], pair: Pair, iv: Interventions = NO_INTERVENTION) -> Run:
    """The model on ``ids`` with every layer traced (and its keys and values cached, where it can)."""
    x = torch.tensor([list(ids)], device=model.unembedding.device)
    cache = model.new_cache(x.shape[1]) if hasattr(model, "new_cache") else None
    cached = {} if cache is None else {"cache": cache}
    with torch.inference_mode():
        logits, trace = model(x, iv=iv, return_trace=True, capture="weights", **cached)
    return Run(x, logits, trace.streams, _contexts(model, trace), float(metric(logits, pair)[0]), cache)


def first_difference(a: Run, b: Run) -> int:
    """The first position where the two prompts' tokens differ (their length if none does). Before it
    both runs hold the same activations at every layer — the model is causal — so a patch there
    changes nothing."""
    if a.ids.shape != b.ids.shape:
        raise ValueError(
            f"the clean and corrupted prompts have {a.ids.shape[1]} and {b.ids.shape[1]} tokens; patching "
            "needs the same count: change the corrupted prompt so that only the clue's tokens differ."
        )
    differ = (a.ids[0] != b.ids[0]).nonzero()
    return int(differ[0]) if len(differ) else a.ids.shape[1]


def _prefix_cache(model: nn.Module, run: Run, length: int, batch: int) -> KVCache:
    """A cache for ``batch`` copies holding ``run``'s keys and values of positions 0…length − 1."""
    cache = model.new_cache(run.ids.shape[1], batch)
    cache.keys[:, :, :, :length] = run.cache.keys[:, :1, :, :length]
    cache.values[:, :, :, :length] = run.cache.values[:, :1, :, :length]
    cache.lengths = [length] * len(cache.lengths)
    return cache


def _contexts(model: nn.Module, trace) -> Tensor:
    """(L, h, T, d_head): each head's context, read off the concat each layer fed W_O (batch row 0)."""
    attn = model.blocks[0].attn
    out = []
    for a in trace.attentions:
        b, t, _ = a.concat.shape
        out.append(a.concat[0].view(t, attn.n_heads, attn.d_head).transpose(0, 1))  # (h, T, d_head)
    return torch.stack(out)


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


def logit_lens(model: nn.Module, run: Run, pair: Pair, *, k: int = 5) -> Lens:
    """The lens over ``run``'s streams. The last stage is the final stream read out by the model's own
    ``readout``, so its row is the model's output."""
    terms = model.embedding_terms(run.ids)
    stages = [("embedding", sum(terms.values()))]
    for i, (_, mid, post) in enumerate(run.streams):
        stages += [(f"L{i} attn", mid), (f"L{i} mlp", post)]
    cols = {name: [] for name in ("tp", "rp", "tr", "rr", "diff", "ids", "probs")}
    with torch.inference_mode():
        for _, x in stages:
            logits = model.readout(x)[0].float()  # (T, V)
            logp = torch.log_softmax(logits, -1)
            t, r = logits[:, pair.target], logits[:, pair.rival]  # (T,)
            cols["tp"].append(logp[:, pair.target].exp())
            cols["rp"].append(logp[:, pair.rival].exp())
            cols["tr"].append((logits > t[:, None]).sum(-1))
            cols["rr"].append((logits > r[:, None]).sum(-1))
            cols["diff"].append(t - r)
            top = torch.topk(logp, k, -1)
            cols["ids"].append(top.indices)
            cols["probs"].append(top.values.exp())
    stack = {name: torch.stack(v).cpu().numpy() for name, v in cols.items()}
    return Lens(
        stages=tuple(name for name, _ in stages), target_prob=stack["tp"], rival_prob=stack["rp"],
        target_rank=stack["tr"], rival_rank=stack["rr"], logit_diff=stack["diff"], top_ids=stack["ids"],
        top_probs=stack["probs"], last_logits=to_numpy(logits),
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
    final = run.streams[-1][2][0, -1]  # (d,)
    f, constant, scale = norm_as_linear(model.final_norm, final)
    w = model.unembedding[pair.target] - model.unembedding[pair.rival]  # (d,)
    names, terms = [], []
    with torch.inference_mode():
        for name, term in model.embedding_terms(run.ids).items():
            names.append(name)
            terms.append(term[0, -1])
        n_layers, n_heads = len(run.streams), run.contexts.shape[1]
        for i, (_, mid, post) in enumerate(run.streams):
            attn = model.blocks[i].attn
            w_o = attn.w_o.weight.view(attn.d_model, n_heads, attn.d_head)  # (d, h, d_head)
            per_head = torch.einsum("dhk,hk->hd", w_o, run.contexts[i, :, -1])  # (h, d)
            for h in range(n_heads):
                names.append(f"L{i} H{h}")
                terms.append(per_head[h])
            if attn.w_o.bias is not None:
                names.append(f"L{i} attention bias")
                terms.append(attn.w_o.bias)
            names.append(f"L{i} MLP")
            terms.append(post[0, -1] - mid[0, -1])
        stacked = torch.stack(terms)  # (n, d)
        effects = (f(stacked) @ w).float()  # (n,)
        if constant is not None:
            names.append("final norm bias")
            effects = torch.cat([effects, (constant @ w).float()[None]])
    effects = effects.cpu().numpy()
    index = {n: j for j, n in enumerate(names)}
    heads = np.array([[effects[index[f"L{i} H{h}"]] for h in range(n_heads)] for i in range(n_layers)])
    mlps = np.array([effects[index[f"L{i} MLP"]] for i in range(n_layers)])
    return Direct(tuple(names), effects, heads, mlps, run.value, scale)


# --- Value-weighted attention ---------------------------------------------------------------------
def value_weighted(model: nn.Module, ids: Sequence[int], layer: int, iv: Interventions = NO_INTERVENTION
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(weights α (h, T, T), norms ‖α_ij · v_j W_O^h‖ (h, T, T)) of one layer (Kobayashi et al. 2020):
    how much of each key actually reaches the head's output, not only how much it is looked at."""
    x = torch.tensor([list(ids)], device=model.unembedding.device)
    with torch.inference_mode():
        _, trace = model(x, iv=iv, return_trace=True, capture="weights")
        a = trace.attentions[layer]
        attn = model.blocks[layer].attn
        values = a.heads.value[0][list(a.kv_heads) if a.kv_heads else slice(None)]  # (h, T, d_head)
        w_o = attn.w_o.weight.view(attn.d_model, attn.n_heads, attn.d_head)  # (d, h, d_head)
        moved = torch.einsum("dhk,htk->htd", w_o, values).norm(dim=-1)  # (h, T): ‖v_j W_O^h‖
        weights = a.heads.weights[0]  # (h, T, T)
        return to_numpy(weights), to_numpy(weights * moved[:, None, :])


# --- Activation patching --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """Patched metric per cell: the corrupted prompt run with one cell's activations from the clean
    one (rows: layers; columns: positions or heads)."""

    site: str
    values: np.ndarray  # (rows, cols) the metric of each patched run
    clean: float
    corrupt: float

    @property
    def restored(self) -> np.ndarray:
        """(patched − corrupt) / (clean − corrupt): the share of the metric each patch restores."""
        gap = self.clean - self.corrupt
        return (self.values - self.corrupt) / gap if gap else np.full_like(self.values, np.nan)


def _source(run: Run, site: str) -> Tensor:
    """What a patch writes at ``site``: (L, T, d) streams or outputs, (L, h, T, d_head) contexts."""
    if site == "head":
        return run.contexts
    index = {"resid_pre": lambda pre, mid, post: pre, "attn_out": lambda pre, mid, post: mid - pre,
             "mlp_out": lambda pre, mid, post: post - mid}[site]  # fmt: skip
    return torch.stack([index(*(s[0] for s in layer)) for layer in run.streams])


def patched(model: nn.Module, clean: Run, corrupt: Run, pair: Pair, patch_site: str,
            cells: Sequence[tuple[int, Tensor]], *, iv: Interventions = NO_INTERVENTION,
            progress: Progress | None = None, batch: int = BATCH) -> np.ndarray:  # fmt: skip
    """The metric of the corrupted prompt with each cell patched from the clean run: a cell is (layer,
    where) — ``where`` (T,) bool positions, or (h, T) heads × positions for ``head``.

    Batched, and only what a patch can change is computed: copies patched at the same layer share the
    corrupted run up to it (each forward resumes there), and positions before the prompts' first
    difference hold the same activations in both runs, so a cell there is the corrupted run's value
    by definition, and a model with a KV cache starts every copy after them, reading their keys and
    values from the corrupted run."""
    source = _source(clean, patch_site)
    n_layers = len(corrupt.streams)
    start = first_difference(clean, corrupt) if corrupt.cache is not None else 0
    out = np.full(len(cells), corrupt.value)  # a cell before the first difference changes nothing
    live = [c for c in range(len(cells)) if bool(cells[c][1][..., first_difference(clean, corrupt):].any())]
    done = len(cells) - len(live)
    for layer in sorted({cells[c][0] for c in live}):
        members = [c for c in live if cells[c][0] == layer]
        for first in range(0, len(members), batch):
            chunk = members[first : first + batch]
            b = len(chunk)
            where = torch.stack([cells[c][1][..., start:] for c in chunk])  # (B, T′) or (B, h, T′)
            select = torch.zeros((b, n_layers, *where.shape[1:]), dtype=torch.bool)
            select[:, layer] = where
            patch = Patch(patch_site, select.to(source.device), source[..., start:, :])
            stream = corrupt.streams[layer][0][:, start:].expand(b, -1, -1)  # (B, T′, d)
            cache = {"cache": _prefix_cache(model, corrupt, start, b)} if start else {}
            with torch.inference_mode():
                ids = corrupt.ids[:, start:].expand(b, -1)
                logits, _ = model(ids, iv=iv, patch=patch, resume=(layer, stream), logits="last", **cache)
            out[chunk] = metric(logits, pair).cpu().numpy()
            done += b
            if progress is not None:
                progress(done / len(cells))
    return out


StreamSite = Literal["resid_pre", "attn_out", "mlp_out"]


def residual_sweep(model: nn.Module, clean: Run, corrupt: Run, pair: Pair, site: StreamSite = "resid_pre",
                   **kw) -> Sweep:  # fmt: skip
    """Every (layer, position) of ``site`` patched from clean into corrupt, one at a time."""
    n_layers, t = len(clean.streams), clean.ids.shape[1]
    eye = torch.eye(t, dtype=torch.bool)
    cells = [(layer, eye[p]) for layer in range(n_layers) for p in range(t)]
    values = patched(model, clean, corrupt, pair, site, cells, **kw)
    return Sweep(site, values.reshape(n_layers, t), clean.value, corrupt.value)


def head_sweep(model: nn.Module, clean: Run, corrupt: Run, pair: Pair, *, position: int | None = None,
               layer: int | None = None, **kw) -> Sweep:  # fmt: skip
    """Each head's context patched from clean into corrupt at every position (or at ``position``
    only): rows layers, columns heads. With ``layer``, that layer's heads at each position: rows
    heads, columns positions."""
    n_layers, n_heads, t = clean.contexts.shape[:3]
    if layer is not None:
        cells = []
        for h in range(n_heads):
            for p in range(t):
                where = torch.zeros(n_heads, t, dtype=torch.bool)
                where[h, p] = True
                cells.append((layer, where))
        values = patched(model, clean, corrupt, pair, "head", cells, **kw)
        return Sweep("head", values.reshape(n_heads, t), clean.value, corrupt.value)
    cells = []
    for i in range(n_layers):
        for h in range(n_heads):
            where = torch.zeros(n_heads, t, dtype=torch.bool)
            where[h] = True if position is None else torch.arange(t) == position
            cells.append((i, where))
    values = patched(model, clean, corrupt, pair, "head", cells, **kw)
    return Sweep("head", values.reshape(n_layers, n_heads), clean.value, corrupt.value)


# --- Attribution patching -------------------------------------------------------------------------
@dataclass(frozen=True)
class Attributed:
    """Attribution patching (Nanda 2023): the metric's gradient on the corrupted run times the clean −
    corrupt difference of each activation — a first-order estimate of each patch, from one forward and
    one backward."""

    resid: np.ndarray  # (L, T) per layer and position, resid_pre
    heads: np.ndarray  # (L, h) per head, every position
    clean: float
    corrupt: float


def attribution_patching(model: nn.Module, clean: Run, corrupt: Run, pair: Pair,
                         iv: Interventions = NO_INTERVENTION) -> Attributed:  # fmt: skip
    """Gradients taken on a leaf of this call's own (the stream entering layer 0): nothing is written
    on the shared model, whose parameters need no gradient."""
    with torch.enable_grad():
        x0 = sum(model.embedding_terms(corrupt.ids, iv).values()).detach().requires_grad_(True)
        logits, trace = model(corrupt.ids, iv=iv, return_trace=True, capture="weights", resume=(0, x0),
                              logits="last")  # fmt: skip
        m = metric(logits, pair)[0]
        pres = [s[0] for s in trace.streams]
        concats = [a.concat for a in trace.attentions]
        grads = torch.autograd.grad(m, [*pres, *concats])
    n_layers, n_heads, t, d_head = clean.contexts.shape
    g_pre = torch.stack([g[0] for g in grads[:n_layers]])  # (L, T, d)
    g_heads = torch.stack([g[0].view(t, n_heads, d_head).transpose(0, 1) for g in grads[n_layers:]])
    d_pre = _source(clean, "resid_pre") - _source(corrupt, "resid_pre")  # (L, T, d)
    d_heads = clean.contexts - corrupt.contexts  # (L, h, T, d_head)
    resid = (g_pre * d_pre).sum(-1)  # (L, T)
    heads = (g_heads * d_heads).sum((-1, -2))  # (L, h)
    return Attributed(to_numpy(resid), to_numpy(heads), clean.value, corrupt.value)


def agreement(estimate: np.ndarray, exact: np.ndarray, *, worst: int = 5) -> tuple[float, list[tuple]]:
    """(Pearson correlation of attribution vs exact patching effects, the ``worst`` cells by |gap|
    as (index, estimate, exact))."""
    a, b = estimate.ravel(), exact.ravel()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan
    gaps = np.argsort(-np.abs(a - b))[:worst]
    return corr, [(np.unravel_index(i, estimate.shape), float(a[i]), float(b[i])) for i in gaps]


# --- Ablations ------------------------------------------------------------------------------------
def head_ablation(model: nn.Module, ids: Sequence[int], pair: Pair, heads: Sequence[tuple[int, int]],
                  how: Ablation, *, reference: Sequence[Sequence[int]] = (), resample: Run | None = None,
                  iv: Interventions = NO_INTERVENTION) -> float:  # fmt: skip
    """The metric with ``heads`` (layer, head) ablated together at every position: zeroed, set to their
    mean context over the ``reference`` prompts (every position of each), or to their context on the
    ``resample`` run (same token count)."""
    run = forward(model, ids, pair, iv)
    n_layers, n_heads, t, d_head = run.contexts.shape
    if how == "zero":
        source = torch.zeros(n_layers, n_heads, 1, d_head)
    elif how == "mean":
        if not reference:
            raise ValueError("a mean ablation needs a reference set of prompts.")
        runs = [forward(model, r, pair, iv).contexts for r in reference]
        source = torch.cat(runs, 2).mean(2, keepdim=True)  # (L, h, 1, d_head)
    elif how == "resample":
        if resample is None or resample.contexts.shape != run.contexts.shape:
            raise ValueError("a resampled ablation needs a run of another prompt with the same token count.")
        source = resample.contexts
    else:
        raise ValueError(f"unknown ablation {how!r}; use one of {tuple(ABLATIONS)}.")
    select = torch.zeros(1, n_layers, n_heads, t, dtype=torch.bool)
    for i, h in heads:
        select[0, i, h] = True
    x = run.ids
    with torch.inference_mode():
        logits, _ = model(x, iv=iv, patch=Patch("head", select, source.to(x.device)), logits="last")
    return float(metric(logits, pair)[0])
