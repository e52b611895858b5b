"""Statistics and exports of attention maps, for every family (numpy; no torch, no Streamlit).

Everything here takes `AttentionMaps` (or plain weight arrays) and derives numbers from the
model's own weights: entropy, per-head statistics, attention rollout, CSV and NPZ exports — and
ranks heads by what switching each off costs, for any score a runner computes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from analysis.projections import diagonal_mass, rows_with_a_choice
from analysis.protocol import AttentionMaps
from models.attention import NO_INTERVENTION, Interventions


def entropy(weights: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each attention row: (…, Tk) → (…). 0 = all on one key."""
    w = np.clip(weights, 1e-12, 1.0)
    return -(weights * np.log(w)).sum(-1)


def head_statistics(maps: AttentionMaps, held_out_self: Sequence[Mapping] | None = None) -> list[dict]:
    """One row per layer and head: mean row entropy, mean max weight, mean mass on special keys; for
    self-attention (queries = keys) the mean weight on self, and, given the card's per-layer
    ``held_out_self`` (``diagonal_mass[block]["layers"]``), its held-out mean."""
    special, self_attention = maps.special_keys, maps.queries == maps.keys
    # The keys a query could see, read back from the weights: a masked key gets exactly 0 in every head.
    choice = [rows_with_a_choice((w > 0).any(0)) for w in maps.weights] if self_attention else []
    rows = []
    for layer in range(maps.n_layers):
        for head in range(maps.n_heads):
            w = maps.weights[layer, head]  # (Tq, Tk)
            row = {
                "layer": layer,
                "head": head,
                "entropy (nats)": float(entropy(w).mean()),
                "max weight (mean)": float(w.max(-1).mean()),
                "mass on special tokens": float(w[:, special].sum(-1).mean()),
            }
            if self_attention:  # over the rows with a choice, as the card's held-out mean beside it
                row["weight on self"] = float(diagonal_mass(w, choice[layer]))
                if held_out_self is not None:
                    row["weight on self, held-out mean"] = held_out_self[layer]["heads"][head]
            rows.append(row)
    return rows


def mean_entropy(maps: AttentionMaps) -> float:
    """Entropy of every attention row of the block, averaged over layers, heads and queries."""
    return float(entropy(maps.weights).mean())


def rollout(weights: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): per layer, average heads, add the residual
    (0.5 A + 0.5 I), renormalise rows, multiply through the layers. (L, h, T, T) → (L, T, T):
    entry l is the rollout up to and including layer l."""
    n = weights.shape[-1]
    a = 0.5 * weights.mean(1) + 0.5 * np.eye(n, dtype=weights.dtype)[None]
    a = a / a.sum(-1, keepdims=True)
    out = np.empty_like(a)
    acc = np.eye(n, dtype=weights.dtype)
    for layer in range(a.shape[0]):
        acc = a[layer] @ acc
        out[layer] = acc
    return out


def rank_heads(
    score: Callable[[Interventions], float],
    blocks: Sequence[str],
    n_layers: int,
    n_heads: int,
    iv: Interventions = NO_INTERVENTION,
) -> list[tuple[str, int, int, float]]:
    """Each head switched off alone, on top of ``iv``: (block, layer, head, score), lowest first.
    ``score`` runs the model under the given interventions (e.g. exact match on a held-out batch)."""
    rows = [
        (block, layer, head, score(replace(iv, ablate=iv.ablate | {(block, layer, head)})))
        for block in blocks
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    return sorted(rows, key=lambda row: row[3])


def to_csv(maps: AttentionMaps, layer: int, head: int) -> str:
    """One head's matrix as CSV: a header of key tokens, then one row per query token. Written with
    the `csv` module, so tokens holding quotes, commas or newlines survive a round trip."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["query\\key", *maps.keys])
    for token, row in zip(maps.queries, maps.weights[layer, head], strict=True):
        writer.writerow([token, *(f"{v:.8g}" for v in row)])
    return buf.getvalue()


def to_npz(all_maps: Mapping[str, AttentionMaps]) -> bytes:
    """Every block's weights (L, h, Tq, Tk) and token labels in one compressed NPZ:
    ``<block>_weights``, ``<block>_queries``, ``<block>_keys``."""
    arrays = {}
    for name, maps in all_maps.items():
        arrays[f"{name}_weights"] = maps.weights
        arrays[f"{name}_queries"] = np.array(maps.queries)
        arrays[f"{name}_keys"] = np.array(maps.keys)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
