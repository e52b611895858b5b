"""Circuits on the encoder–decoder transformer (the transformer lab): the logit lens over the decoder's
residual stream, direct logit attribution at one output step, and activation patching from a clean
source into a corrupted one of the same length — `analysis.circuits`' measures and dataclasses, where
the question is one decoder step of a translation.

The metric is logit(target) − logit(rival) at the last position of the decoder's input ``prefix``
(<s> y_1 … y_t: the step that chose y_{t+1}). Both runs of a patching sweep read the same prefix, so
what differs is only the source. Every number comes from the model's own forward passes; the only
arithmetic of ours is the final LayerNorm written as a linear map at the run's own scale (direct
attribution, pre-norm models only: a post-norm stream is re-normalised after every sublayer, so it is
no sum of terms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from analysis.circuits import Direct, Lens, Pair, head_terms, lens_of_logits, metric, term_effects
from analysis.patching import Sweep
from models.patching import Patch
from models.transformer import BLOCKS, Transformer, TransformerTrace

SUBLAYERS = ("self", "cross", "ffn")  # a decoder layer's residual sublayers, in order


def forward(model: Transformer, src: Sequence[int], prefix: Sequence[int]) -> tuple[Tensor, TransformerTrace]:
    """Teacher-forced logits (1, T, V) of ``prefix`` on ``src`` (ids, no padding) and the whole trace."""
    device = model.pe.device
    with torch.inference_mode():
        return model(
            torch.tensor([list(src)], device=device),
            torch.tensor([len(src)]),
            torch.tensor([list(prefix)], device=device),
            return_trace=True,
        )


def logit_lens(
    model: Transformer, src: Sequence[int], prefix: Sequence[int], pair: Pair, *, k: int = 5
) -> Lens:
    """The decoder's stream after its embedding and after each sublayer (self-attention, cross-attention,
    feed-forward), read out by the model's own final norm and output layer at every decoder position.
    Each stage is read out as the forward reads its last one, so the last row is the output bit for bit."""
    _, trace = forward(model, src, prefix)
    stages = [("embedding", trace.decoder_layers[0].self_attention.x_in)]
    for i, layer in enumerate(trace.decoder_layers):
        parts = (layer.self_attention, layer.cross_attention, layer.feed_forward)
        stages += [(f"L{i} {name}", part.x_out) for name, part in zip(SUBLAYERS, parts, strict=True)]
    with torch.inference_mode():
        read = (model.out(model.dec_norm(x))[0].float() for _, x in stages)  # (T, V) each
        return lens_of_logits([name for name, _ in stages], read, pair, k=k)


def direct_attribution(model: Transformer, src: Sequence[int], prefix: Sequence[int], pair: Pair) -> Direct:
    """The decoder's final stream at the last position as the sum of its token embedding, its positional
    encoding, each self- and cross-attention head (its slice of W_O), their biases and each feed-forward
    network; each term's direct effect on the metric through the final LayerNorm (linear at this run's
    scale) and the output layer. ``heads`` rows: L0 self, L0 cross, L1 self, …; ``mlps``: the FFNs."""
    if model.cfg.norm != "pre":
        raise ValueError(
            "direct attribution needs a pre-norm model: a post-norm stream is re-normalised after every "
            "sublayer, so the output is no sum of the sublayers' terms. Pick a pre-norm variant."
        )
    logits, trace = forward(model, src, prefix)
    d, n_heads = model.cfg.d_model, model.cfg.n_heads
    last = len(prefix) - 1
    with torch.inference_mode():
        token = model.tgt_emb.weight[prefix[-1]] * math.sqrt(d)
        terms = {"token embedding": token, "positional encoding": model.pe[last]}
        for i, layer in enumerate(trace.decoder_layers):
            for block, attn in (("self", model.decoder[i].self_attn), ("cross", model.decoder[i].cross_attn)):
                traced = trace.block("decoder_self" if block == "self" else "cross")[i]
                contexts = traced.concat[0, last].view(n_heads, d // n_heads)  # (h, d_head)
                terms |= head_terms(f"L{i} {block}", attn, contexts)
            terms[f"L{i} FFN"] = layer.feed_forward.f_out[0, last]
        final = trace.decoder_layers[-1].feed_forward.x_out[0, last]
        names, effects, scale = term_effects(model.dec_norm, final, model.out.weight, pair, terms,
                                             bias=model.out.bias)  # fmt: skip
    index = {n: j for j, n in enumerate(names)}
    rows = [f"L{i} {block}" for i in range(model.cfg.n_layers) for block in ("self", "cross")]
    heads = np.array([[effects[index[f"{row} H{h}"]] for h in range(n_heads)] for row in rows])
    mlps = np.array([effects[index[f"L{i} FFN"]] for i in range(model.cfg.n_layers)])
    return Direct(names, effects, heads, mlps, float(metric(logits, pair)[0]), scale)


def source_sweep(model: Transformer, clean: Sequence[int], corrupt: Sequence[int], prefix: Sequence[int],
                 pair: Pair) -> Sweep:  # fmt: skip
    """The corrupted source run with the clean run's encoder stream written at one (layer, source
    position) at a time — rows: the stream entering each encoder layer; columns: source positions —
    all cells in one batched forward."""
    _check_pair(clean, corrupt)
    _, trace = forward(model, clean, prefix)
    n_layers, s = model.cfg.n_layers, len(clean)
    source = torch.stack([layer.self_attention.x_in[0] for layer in trace.encoder_layers])  # (L, S, d)
    select = torch.zeros(n_layers * s, n_layers, s, dtype=torch.bool)
    for cell in range(n_layers * s):
        select[cell, cell // s, cell % s] = True
    values = _patched(model, corrupt, prefix, pair, {"encoder": Patch("resid_pre", select, source)})
    return Sweep("encoder", values.reshape(n_layers, s), *_ends(model, clean, corrupt, prefix, pair))


def head_sweep(model: Transformer, clean: Sequence[int], corrupt: Sequence[int], prefix: Sequence[int],
               pair: Pair) -> Sweep:  # fmt: skip
    """The corrupted source run with one head's context (every position) from the clean run, for each
    head of each block: rows each block's layers in `BLOCKS` order, columns heads; one batched forward."""
    _check_pair(clean, corrupt)
    _, trace = forward(model, clean, prefix)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    per_block = n_layers * n_heads
    cells = len(BLOCKS) * per_block
    patches = {}
    for b, block in enumerate(BLOCKS):
        contexts = torch.stack([_contexts(t, n_heads) for t in trace.block(block)])  # (L, h, T, d_head)
        select = torch.zeros(cells, n_layers, n_heads, contexts.shape[2], dtype=torch.bool)
        for j in range(per_block):
            select[b * per_block + j, j // n_heads, j % n_heads] = True
        patches[block] = Patch("head", select, contexts)
    values = _patched(model, corrupt, prefix, pair, patches)
    return Sweep(
        "head", values.reshape(len(BLOCKS) * n_layers, n_heads), *_ends(model, clean, corrupt, prefix, pair)
    )


def _contexts(traced, n_heads: int) -> Tensor:
    """(h, T, d_head): each head's context, read off the concat the layer fed W_O (batch row 0)."""
    t, d = traced.concat.shape[1:]
    return traced.concat[0].view(t, n_heads, d // n_heads).transpose(0, 1)


def _patched(model: Transformer, corrupt: Sequence[int], prefix: Sequence[int], pair: Pair,
             patches: dict[str, Patch]) -> np.ndarray:  # fmt: skip
    """The metric of each batch row: the corrupted source, every row patched as ``patches`` select."""
    b = next(iter(patches.values())).select.shape[0]
    device = model.pe.device
    with torch.inference_mode():
        logits, _ = model(
            torch.tensor([list(corrupt)], device=device).expand(b, -1),
            torch.full((b,), len(corrupt)),
            torch.tensor([list(prefix)], device=device).expand(b, -1),
            patches={k: Patch(p.site, p.select.to(device), p.source) for k, p in patches.items()},
        )
    return metric(logits, pair).cpu().numpy()


def _ends(model: Transformer, clean: Sequence[int], corrupt: Sequence[int], prefix: Sequence[int],
          pair: Pair) -> tuple[float, float]:  # fmt: skip
    """The metric on the clean and on the corrupted source, unpatched."""
    return tuple(float(metric(forward(model, ids, prefix)[0], pair)[0]) for ids in (clean, corrupt))


def _check_pair(clean: Sequence[int], corrupt: Sequence[int]) -> None:
    if len(clean) != len(corrupt):
        raise ValueError(
            f"the clean and corrupted sources have {len(clean)} and {len(corrupt)} tokens; patching swaps "
            "activations position by position, so it needs the same count: change only the clue."
        )


def step_logits(model: Transformer, src: Sequence[int], prefix: Sequence[int]) -> np.ndarray:
    """(V,) the logits at the last position of ``prefix``: the candidates for target and rival."""
    return forward(model, src, prefix)[0][0, -1].float().cpu().numpy()
