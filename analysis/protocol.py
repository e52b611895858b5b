"""The runner protocol: what every model family hands the views, and its registry entry.

A family is a network (pure torch, `models/`), a runner (`runners/<family>.py`) whose ``run``
takes one input (plus a frozen `Interventions` value, where the family has interventions) and
returns view-ready numpy, and one line in `runners/registry.py`. Every run carries its attention
as `AttentionMaps`, one per attention block — ``(layers, heads, Tq, Tk)`` whatever the model — so
the generic views (model view, head view, head statistics, export, intervention deltas) are
written once, against this file. The registry entry also brings the family's runs the app serves
cached (`Served`, wrapped once each by `views.serving.cached`) and what its "Attention vs importance"
tab measures (`ImportanceTab`, drawn by the one `views.importance_tabs.tab`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Literal, Protocol

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


@dataclass(frozen=True)
class Served:
    """A runner call the app serves from one cache every session shares: ``fn(loaded, *inputs)``, with
    ``loaded`` what the family's loader returns for the model's name. The name and the hashable inputs
    are the cache key; `views.serving.cached` holds the inference slot and marks the result read-only.
    A family's loader is a `Served` too, whose ``fn`` takes the name alone."""

    fn: Callable[..., Any]
    max_entries: int | None = None  # results kept (memory: a 512-token BERT run is 75 MB)
    spinner: str | bool = False  # the text shown while it runs (False: none)
    copied: bool = False  # a small value each caller gets a copy of (`st.cache_data`), not one shared object


@dataclass(frozen=True)
class ImportanceTab:
    """What a family brings to the shared "Attention vs importance" tab (`views.importance_tabs.tab`).

    ``measure`` names the family's `Served` call; the tab calls it with the model's name, the page's
    inputs and, for ``query="next token"``, the picked position and target id. What the result is
    compared at, ``query``:

    - "rows": a `analysis.importance.PerToken`, one comparison per output token (an output-token picker,
      no layer or head pickers: one single-head map per token);
    - "output token": one output token picked after measuring, ``result.comparison(t, head)``;
    - "next token": a position and a target picked before measuring, ``result.comparison(head)``;
    - "whole input": ``result.comparison(head)``.
    """

    key: str  # widget-key prefix: <key>_imp_token, <key>_imp_layer, <key>_imp_head, …
    query: Literal["rows", "output token", "next token", "whole input"]
    explain: Callable[[Any, tuple, Any], str]  # (loaded, inputs, result) → the tab's opening paragraph
    measure: str = "importance"  # the name of the family's `Served` call that measures
    layers_heads: Callable[[Any], tuple[int, int]] | None = None  # result → the pickers' sizes ("rows": None)
    as_is: bool = True  # the page has interventions: say that the tab measures the model without them
    warning: Callable[[Any], str | None] = lambda result: None  # result → a warning to show, if any
    without_card: str | None = None  # the caption when the page has no card for this model


@dataclass(frozen=True)
class Family:
    """One registry entry: how the app, the tests and the training CLI find a model family."""

    name: str  # checkpoint prefix ("seq2seq-dates-additive") and the training CLI's --family
    title: str  # the page title
    page: str  # the page file, relative to the repository root
    url_path: str  # the page's address (/<url_path>): kept when files move, so shared links still open
    icon: str  # an emoji for the navigation (Material icons would make the browser fetch a font)
    example: Callable[[], AttentionRun]  # the default checkpoint on its default input
    network: type[torch.nn.Module] | None = None  # built from a card's config (None: loaded elsewhere)
    config: type | None = None  # the network's frozen config dataclass
    training: ModuleType | None = None  # the network module training/loop.py reads (None: not trained)
    load: Served | None = None  # name → the loaded model its served calls take (None: registry.load)
    served: Mapping[str, Served] = field(default_factory=lambda: MappingProxyType({}))  # cached calls
    importance: ImportanceTab | None = None  # its "Attention vs importance" tab
