"""The runner protocol: what every model family hands the views.

A family's runner (`families/<name>/runner.py`) takes one input (plus a frozen `Interventions` value,
where the family has interventions) and returns view-ready numpy. Every run carries its attention as
`AttentionMaps`, one per attention block — ``(layers, heads, Tq, Tk)`` whatever the model — so the
generic views (model view, head view, head statistics, export, intervention deltas) are written once,
against this file. What else a family declares is `analysis.family.Family`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


def to_numpy(x: torch.Tensor | None) -> np.ndarray | None:
    """A tensor as float32 CPU numpy (the views' dtype: half the bytes of float64, exact)."""
    return None if x is None else x.detach().float().cpu().numpy()


@dataclass(frozen=True)
class AttentionMaps:
    """One attention block of one run: every layer's and head's softmax weights, the model's own.

    A single-head, single-layer attention (seq2seq alignment, caption words over image regions)
    is the case L = h = 1.
    """

    title: str  # what the block is, for headings: "cross-attention (decoder → encoder)"
    weights: np.ndarray  # (L, h, Tq, Tk) float32; rows of real queries sum to 1
    queries: tuple[str, ...]  # Tq labels, one per query row
    keys: tuple[str, ...]  # Tk labels, one per key column
    special_keys: np.ndarray  # (Tk,) bool: keys that are special tokens (<s>, [CLS], padding …)

    def __post_init__(self) -> None:
        n_layers, n_heads, tq, tk = self.weights.shape
        if (tq, tk) != (len(self.queries), len(self.keys)) or self.special_keys.shape != (tk,):
            raise ValueError(
                f"AttentionMaps {self.title!r}: weights {self.weights.shape} need {tq} query and {tk} key "
                f"labels and a ({tk},) special mask; got {len(self.queries)}, {len(self.keys)}, "
                f"{self.special_keys.shape}."
            )

    @property
    def n_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def n_heads(self) -> int:
        return self.weights.shape[1]

    def take(self, queries: Sequence[int], keys: Sequence[int]) -> AttentionMaps:
        """The same weights restricted to some query rows and key columns (a window of a long input).
        Rows are not renormalised: what is drawn is exactly what the model computed."""
        q, k = np.asarray(queries, dtype=int), np.asarray(keys, dtype=int)
        return AttentionMaps(
            title=self.title,
            weights=self.weights[:, :, q][:, :, :, k],
            queries=tuple(self.queries[i] for i in q),
            keys=tuple(self.keys[j] for j in k),
            special_keys=self.special_keys[k],
        )

    @classmethod
    def single(
        cls, title: str, weights: np.ndarray, queries: Sequence[str], keys: Sequence[str], special=()
    ) -> AttentionMaps:
        """One (Tq, Tk) map as a 1-layer, 1-head block; ``special`` names the special key labels."""
        return cls(
            title=title,
            weights=np.asarray(weights, dtype=np.float32)[None, None],
            queries=tuple(queries),
            keys=tuple(keys),
            special_keys=np.array([k in special for k in keys], dtype=bool),
        )


class AttentionRun(Protocol):
    """What every family's run provides (each adds its own fields beside these)."""

    @property
    def output(self) -> tuple[str, ...]:
        """The tokens the model wrote, </s> included when reached; () for an encoder."""

    @property
    def token_log_probs(self) -> np.ndarray:
        """(len(output),) log p of each output token; empty for an encoder."""

    @property
    def maps(self) -> Mapping[str, AttentionMaps]:
        """Block name → its maps, in the order the views list them (empty: no attention)."""
