"""Activation patching on BERT, where the idea applies to a sentence encoder. MiniLM has no next token —
no unembedding, so no logit lens and no direct logit attribution — and its use is the sentence
embedding, so the metric is that: cos(embedding(input), embedding(reference)), each sentence encoded
alone as the model is used ([CLS] A [SEP], mean pooling). The reference is a sentence of the user's
(the page's sentence B) or the clean sentence itself.

A clean sentence and a corrupted one of the same word-piece count; every cell runs the corrupted one
with one activation from the clean run — the stream entering a layer at one position, or one head's
context at every position — all cells of a sweep in one batched forward (`analysis.patching.Sweep`:
the share restored). Every number is the model's own forward; nothing is recomputed here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from analysis.family import Served
from analysis.patching import Sweep
from families.bert.runner import Encoding, _forward, encode
from models.attention import NO_INTERVENTION
from models.bert import LoadedBert, sentence_embedding
from models.patching import Patch


def _check(clean: Encoding, corrupt: Encoding) -> None:
    if len(clean.ids) != len(corrupt.ids):
        raise ValueError(
            f"the clean sentence has {len(clean.ids)} word pieces and the corrupted one {len(corrupt.ids)}; "
            "patching swaps activations position by position, so it needs the same count: change one word "
            "for another that is one word piece too (the token rows above show the pieces)."
        )
    if clean.dropped or corrupt.dropped:
        raise ValueError("a sentence was cut to fit the model: patch shorter sentences.")


def _similarities(
    loaded: LoadedBert, enc: Encoding, reference: Tensor, patch: Patch | None, rows: int
) -> Tensor:
    """(rows,) cos(embedding, reference) of ``enc`` in ``rows`` copies, each patched as ``patch`` selects."""
    device = reference.device
    ids = torch.tensor([enc.ids], device=device).expand(rows, -1)
    with torch.inference_mode():
        out = loaded.model(ids, patch=patch)
        keep = torch.ones(ids.shape, dtype=torch.bool, device=device)
        return sentence_embedding(out.last_hidden_state, keep) @ reference


def sweeps(
    loaded: LoadedBert, clean_text: str, corrupt_text: str, reference_text: str
) -> tuple[Sweep, Sweep]:
    """(the stream entering each layer at each position (L, T), each head at every position (L, h)),
    patched from the clean sentence into the corrupted one; the metric is the similarity to
    ``reference_text``."""
    clean, corrupt = encode(loaded, clean_text), encode(loaded, corrupt_text)
    _check(clean, corrupt)
    out, _ = _forward(loaded, clean, NO_INTERVENTION, True)
    reference = torch.from_numpy(_forward(loaded, encode(loaded, reference_text), NO_INTERVENTION, False)[1])
    reference = reference.to(next(loaded.model.parameters()).device)
    ends = [float(_similarities(loaded, enc, reference, None, 1)[0]) for enc in (clean, corrupt)]
    cfg = loaded.config
    n_layers, n_heads, t = cfg.num_hidden_layers, cfg.num_attention_heads, len(clean.ids)
    # 1) The residual stream entering each layer, one (layer, position) per copy.
    stream = torch.stack([h[0] for h in out.hidden_states[:n_layers]])  # (L, T, d)
    select = torch.zeros(n_layers * t, n_layers, t, dtype=torch.bool)
    for cell in range(n_layers * t):
        select[cell, cell // t, cell % t] = True
    resid = _similarities(
        loaded, corrupt, reference, Patch("resid_pre", select.to(stream.device), stream), len(select)
    )
    # 2) Each head's context at every position, one head per copy.
    contexts = torch.stack(
        [a.concat[0].view(t, n_heads, -1).transpose(0, 1) for a in out.attentions]
    )  # (L, h, T, d_head)
    select = torch.zeros(n_layers * n_heads, n_layers, n_heads, t, dtype=torch.bool)
    for cell in range(n_layers * n_heads):
        select[cell, cell // n_heads, cell % n_heads] = True
    heads = _similarities(
        loaded, corrupt, reference, Patch("head", select.to(stream.device), contexts), len(select)
    )
    return (
        Sweep("resid_pre", resid.cpu().numpy().reshape(n_layers, t), *ends),
        Sweep("head", heads.cpu().numpy().reshape(n_layers, n_heads), *ends),
    )


SERVED = {"patching": Served(sweeps, max_entries=8, spinner="Patching every layer, position and head…")}
