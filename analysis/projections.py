"""Why W_Q, W_K and W_V exist: self-attention with and without projections, on a layer's real input.

Without projections a row's raw vector x_i, dotted with every other row, tends to score highest with
itself (‖x_i‖² against x_i·x_j), so softmax(X Xᵀ) piles its weight on the diagonal and the output
softmax(X Xᵀ) X is mostly each row's own vector. `raw_vs_projected` computes that map — through
the project's one attention core, with the mask the model's block used — on X = the rows the
layer's W_Q, W_K, W_V read, next to the learned heads of the same layer, and the weight each puts
on itself (`diagonal_mass`). Families supply X and the learned weights (numpy); no Streamlit here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.attention import attend


def rows_with_a_choice(visible: np.ndarray) -> np.ndarray:
    """(T, T) bool, True where a query may see a key → (T,) bool: the query rows whose weight on self
    says something — the row's own key is visible, and at least one other is. Left out: a causal
    map's first row (only itself), and the rows of padding or hidden tokens (their own key masked)."""
    visible = np.asarray(visible, dtype=bool)
    return (visible.sum(-1) > 1) & np.diagonal(visible)


def diagonal_mass(weights: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Mean weight a query puts on its own position: (…, T, T) → (…), over ``rows`` (bool (T,); all
    rows when None). NaN when no row is kept: there is no choice to measure."""
    diagonal = np.diagonal(weights, axis1=-2, axis2=-1)  # (…, T)
    if rows is None:
        return diagonal.mean(-1)
    if not np.any(rows):
        return np.full(diagonal.shape[:-1], np.nan, dtype=np.float64)
    return diagonal[..., rows].mean(-1)


@dataclass(frozen=True)
class RawVsProjected:
    """One layer of one input: softmax(X Xᵀ) (plain and ÷ √d) and its output beside the learned heads."""

    tokens: tuple[str, ...]  # (T,)
    x: np.ndarray  # (T, d) the rows the layer's W_Q, W_K, W_V read
    mask: np.ndarray  # (T, T) bool, True where the model's block let a query look
    raw: np.ndarray  # (T, T) softmax(X Xᵀ) under the same mask
    raw_scaled: np.ndarray  # (T, T) softmax(X Xᵀ / √d)
    raw_output: np.ndarray  # (T, d) softmax(X Xᵀ) X
    learned: np.ndarray  # (h, T, T) the model's own weights of this layer
    x_is: str  # what X is, in words (each family's own rows: "LN(residual stream)", …)
    rows: np.ndarray  # (T,) bool: the query rows the diagonal masses average over (`rows_with_a_choice`)

    @property
    def diagonal(self) -> dict[str, float]:
        """Mean weight on self: "raw", "raw ÷ √d", each head "head i", and "heads (mean)"."""
        learned = diagonal_mass(self.learned, self.rows)
        return {
            "raw": float(diagonal_mass(self.raw, self.rows)),
            "raw ÷ √d": float(diagonal_mass(self.raw_scaled, self.rows)),
            **{f"head {h}": float(v) for h, v in enumerate(learned)},
            "heads (mean)": float(learned.mean()),
        }

    @property
    def self_similarity(self) -> float:
        """Mean cosine between each output row of softmax(X Xᵀ) X and the row's own x (1 = unchanged);
        NaN when no row has a choice."""
        if not self.rows.any():
            return float("nan")
        x, out = self.x[self.rows].astype(np.float64), self.raw_output[self.rows].astype(np.float64)
        cos = (x * out).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(out, axis=-1) + 1e-12)
        return float(cos.mean())


def raw_attention(x: np.ndarray, mask: np.ndarray, *, scaled: bool) -> tuple[np.ndarray, np.ndarray]:
    """softmax(X Xᵀ [/ √d]) under ``mask`` (T, T) and its output (weights (T, T), output (T, d)), by
    the attention core: Q = K = V = X, no projection."""
    rows = torch.tensor(x, dtype=torch.float32)[None]  # (1, T, d), a copy: cached runs are read-only
    keep = torch.tensor(mask, dtype=torch.bool)[None]  # (1, T, T)
    output, trace = attend(
        query=rows,
        key=rows,
        value=rows,
        raw_scores=rows @ rows.transpose(-1, -2),  # (1, T, T)
        scale=1.0 / math.sqrt(x.shape[-1]) if scaled else 1.0,
        mask=keep,
        return_trace=True,
    )
    return trace.weights[0].numpy(), output[0].numpy()


def raw_vs_projected(
    tokens: Sequence[str],
    x: np.ndarray,
    learned: np.ndarray,
    mask: np.ndarray,
    *,
    x_is: str,
    rows: np.ndarray | None = None,
) -> RawVsProjected:
    """The layer's input ``x`` (T, d) (``x_is``: what it is, in words), its learned weights (h, T, T)
    and the mask its block used; ``rows``: the queries the diagonal masses average over (default: the
    rows with a choice under ``mask``)."""
    mask = np.asarray(mask, dtype=bool)
    raw, raw_output = raw_attention(x, mask, scaled=False)
    raw_scaled, _ = raw_attention(x, mask, scaled=True)
    return RawVsProjected(
        tokens=tuple(tokens),
        x=np.asarray(x, dtype=np.float32),
        mask=mask,
        raw=raw,
        raw_scaled=raw_scaled,
        raw_output=raw_output,
        learned=np.asarray(learned, dtype=np.float32),
        x_is=x_is,
        rows=rows_with_a_choice(mask) if rows is None else np.asarray(rows, dtype=bool),
    )


def held_out_means(per_input: Sequence[Sequence[RawVsProjected]]) -> dict:
    """Per layer, the diagonal masses averaged over inputs (``per_input[i][layer]``): what a card's
    ``diagonal_mass`` records. Returns {"n": inputs, "layers": [{"raw", "raw ÷ √d", "heads": [...]}]}."""
    n_layers = len(per_input[0])
    layers = []
    for layer in range(n_layers):
        masses = [one[layer].diagonal for one in per_input]
        n_heads = per_input[0][layer].learned.shape[0]
        layers.append(
            {
                "raw": float(np.mean([m["raw"] for m in masses])),
                "raw ÷ √d": float(np.mean([m["raw ÷ √d"] for m in masses])),
                "heads": [float(np.mean([m[f"head {h}"] for m in masses])) for h in range(n_heads)],
            }
        )
    return {"n": len(per_input), "layers": layers}


CARD_KEY = "diagonal_mass"  # the card key `python -m training.measure diagonal-mass` writes
DEFINITION = (
    "per layer, the mean over held-out inputs of the mean weight a query row (one with at least two visible "
    "keys) puts on its own position: "
    "'raw' = softmax(X Xᵀ) and 'raw ÷ √d' = softmax(X Xᵀ / √d) with X the rows the layer's W_Q, W_K, W_V "
    "read, under the block's own mask (analysis/projections.py); 'heads' = the layer's learned heads"
)


def card_entry(per_input: Sequence[Sequence[RawVsProjected]], inputs: str) -> dict:
    """A block's ``diagonal_mass`` card entry: `held_out_means` with its definition and what ``inputs``
    were."""
    return {"definition": DEFINITION, "inputs": inputs, **held_out_means(per_input)}
