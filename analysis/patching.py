"""Activation patching, attribution patching and ablations: which activations carry the answer.

Exact patching runs the corrupted prompt with one cell's activations written from the clean run, for
every cell, batched (`patched`); attribution patching estimates every cell at once from one forward and
one backward; ablations replace heads' contexts by zeros, a reference mean or another prompt's. The
metric and the runs are `analysis.circuits`'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from analysis.circuits import Pair, Run, forward, metric
from analysis.protocol import to_numpy
from models.attention import NO_INTERVENTION, Interventions
from models.kv_cache import KVCache
from models.patching import Patch

Progress = Callable[[float], None]  # called with the share done, 0…1
BATCH = 64  # patched copies per forward
Ablation = Literal["zero", "mean", "resample"]
ABLATIONS: dict[str, str] = {
    "zero": "the head's context set to 0",
    "mean": "the head's context replaced by its mean over the reference set, at every position",
    "resample": "the head's context replaced by the one it has on the corrupted prompt",
}


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
def ablation_source(model: nn.Module, how: Ablation, t: int, *, reference: Sequence[Sequence[int]] = (),
                    resample: Run | None = None, iv: Interventions = NO_INTERVENTION) -> Tensor:  # fmt: skip
    """What an ablation writes over a head's context, (L, h, T or 1, d_head): zeros, the mean context over
    every position of the ``reference`` prompts, or the ``resample`` run's contexts (``t`` tokens)."""
    attn = model.blocks[0].attn
    if how == "zero":
        return torch.zeros(len(model.blocks), attn.n_heads, 1, attn.d_head, device=model.unembedding.device)
    if how == "mean":
        if not reference:
            raise ValueError("a mean ablation needs a reference set of prompts.")
        return torch.cat([forward(model, r, None, iv).contexts for r in reference], 2).mean(2, keepdim=True)
    if how == "resample":
        if resample is None or resample.contexts.shape[2] != t:
            raise ValueError("a resampled ablation needs a run of another prompt with the same token count.")
        return resample.contexts
    raise ValueError(f"unknown ablation {how!r}; use one of {tuple(ABLATIONS)}.")


def head_ablation(model: nn.Module, ids: Sequence[int], pair: Pair, heads: Sequence[tuple[int, int]],
                  how: Ablation, *, reference: Sequence[Sequence[int]] = (), resample: Run | None = None,
                  iv: Interventions = NO_INTERVENTION, source: Tensor | None = None) -> float:  # fmt: skip
    """The metric with ``heads`` (layer, head) ablated together at every position: zeroed, set to their
    mean context over the ``reference`` prompts (every position of each), or to their context on the
    ``resample`` run (same token count); ``source`` is `ablation_source`'s, when already computed."""
    x = torch.tensor([list(ids)], device=model.unembedding.device)
    if source is None:
        source = ablation_source(model, how, x.shape[1], reference=reference, resample=resample, iv=iv)
    select = torch.zeros(1, len(model.blocks), model.blocks[0].attn.n_heads, x.shape[1], dtype=torch.bool)
    for i, h in heads:
        select[0, i, h] = True
    with torch.inference_mode():
        logits, _ = model(x, iv=iv, patch=Patch("head", select.to(x.device), source), logits="last")
    return float(metric(logits, pair)[0])
