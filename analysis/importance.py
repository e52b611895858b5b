"""Attention vs importance: does the weight a model puts on an input position say how much the
output needs it? (Jain & Wallace 2019; Abnar & Zuidema 2020.) Numpy only; shared by every family.

A family's runner measures, on one input:
- **importance by ablation**: for each input position, replace it (a blank / ``[MASK]`` / ``<unk>``
  token, the mean colour of an image region) and take the drop in the quantity that matters
  (log-probability of the produced token, the sentence embedding's cosine …): ``base − ablated``,
  positive where the position helped;
- **measures** of the same positions: raw attention (per layer, head mean or one head), attention
  rollout (`analysis.stats.rollout`), and gradient × input, a non-attention reference.

This module ranks them: `spearman` (average ranks for ties, as `scipy.stats.spearmanr`) and
`compare`, which returns a frozen `Comparison` — what the shared view (`views.importance`) draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CARD_KEY = "attention_vs_importance"  # the model-card key of the held-out averages (training.measure)


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-d array; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Each run of equal values gets the mean of the 1-based positions it spans.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    out = np.empty(len(values))
    for start, end in zip(starts, ends, strict=True):
        out[order[start:end]] = (start + end + 1) / 2
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-d arrays of equal length: the Pearson correlation of
    their ranks. NaN when either is constant or shorter than 2 (no ranking to compare)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman needs two arrays of one length, got {a.shape} and {b.shape}.")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = ranks(a) - (len(a) + 1) / 2, ranks(b) - (len(b) + 1) / 2
    return float((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def gradient_x_input(
    gradient: np.ndarray, inputs: np.ndarray, replacement: np.ndarray | float = 0.0
) -> np.ndarray:
    """Gradient × input per position: Σ_d (x_d − x'_d) ∂f/∂x_d over the last axis, (…, T, d) → (…, T).
    With x' the ablation's replacement this is the first-order estimate of that very ablation's
    effect; with x' = 0, the textbook gradient × input."""
    return ((np.asarray(inputs) - replacement) * np.asarray(gradient)).sum(-1)


GRADIENT_X_INPUT = "gradient × input"  # the non-attention reference, by that name in every card
BLANK = "Ġ"  # a byte-level BPE's token for one space: what replaces an ablated token in a decoder's prompt
BLANKS = (BLANK, "▁")  # one space as a byte-level BPE spells it, and as a SentencePiece vocabulary does


def blank_id(tokenizer) -> int:
    """The id of the one-space token (`BLANKS`: byte-level "Ġ", SentencePiece "▁") in a
    `tokenizers.Tokenizer`; without one, no ablation."""
    for piece in BLANKS:
        token_id = tokenizer.token_to_id(piece)
        if token_id is not None:
            return token_id
    spelt = " or ".join(map(repr, BLANKS))
    raise ValueError(f"the tokenizer has no one-space token ({spelt}) to replace a token with.")


@dataclass(frozen=True)
class NextTokenImportance:
    """A decoder's prompt at one position t: importance of the n tokens ranked (the GPT's 1…t after <s>,
    SmolLM2's 0…t) for the prediction after t, and every measure at the same tokens."""

    position: int  # t: the query whose next-token prediction is measured
    target: str  # the predicted token's label
    target_id: int
    positions: tuple[str, ...]  # (n,) labels of the tokens ranked
    importance: np.ndarray  # (n,) drop in log p(target) when token j alone is blank
    weights: np.ndarray  # (L, h, n) attention from query t to those keys
    rollout: np.ndarray  # (L, n) rollout row t through layer l, at those keys
    grad_x_input: np.ndarray  # (n,)
    asked: int | None = None  # the position asked for, where a long prompt was cut before it
    tokens: int | None = None  # the prompt's length as given, where it was cut

    def comparison(self, head: int | None = None) -> Comparison:
        measures = layered_measures(self.weights, self.rollout, self.grad_x_input, head)
        return compare(self.positions, self.importance, measures,
                       quantity=f"log p({self.target!r}) after position {self.position}")  # fmt: skip


def no_op_ablations(inputs: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """(n,) True where ablated copy i equals the input itself: the position already held the
    replacement (a ``<unk>`` replaced by ``<unk>``, a region already in the mean colour). Such an
    ablation changes nothing, so its importance is 0 by definition. `without_no_ops` writes that 0
    exactly instead of reading it off the copy's rerun: a copy is another batch row, and on some
    CPUs another row (or batch shape) takes another kernel path and rounds differently, which left
    ±1e-11 where 0 is meant. inputs (…), copies (n, …)."""
    inputs, copies = np.asarray(inputs), np.asarray(copies)
    return (copies.reshape(len(copies), -1) == inputs.reshape(1, -1)).all(1)


def without_no_ops(values: np.ndarray, no_op: np.ndarray) -> np.ndarray:
    """``values`` (…, n) per ablated position with exactly 0 where the ablation was a no-op
    (`no_op_ablations`): the definition's 0, not float noise."""
    return np.where(no_op, np.zeros((), dtype=np.asarray(values).dtype), values)


def layered_measures(weights: np.ndarray, rollout: np.ndarray, gradient: np.ndarray, head: int | None = None
                     ) -> dict[str, np.ndarray]:  # fmt: skip
    """The measures of a multi-layer attention model over one set of positions: raw attention per
    layer ("raw L{l}", the head mean; with ``head``, that head: "raw L{l} H{h}"), rollout per layer
    ("rollout L{l}") and gradient × input. weights (L, h, n), rollout (L, n), gradient (n,)."""
    n_layers, n_heads = weights.shape[:2]
    if head is not None and not 0 <= head < n_heads:
        raise ValueError(f"head {head} is out of range: the model has {n_heads} heads per layer.")
    raw = weights.mean(1) if head is None else weights[:, head]  # (L, n)
    suffix = "" if head is None else f" H{head}"
    measures = {f"raw L{layer}{suffix}": raw[layer] for layer in range(n_layers)}
    measures |= {f"rollout L{layer}": rollout[layer] for layer in range(n_layers)}
    return measures | {GRADIENT_X_INPUT: gradient}


@dataclass(frozen=True)
class Comparison:
    """One input: the importance of each position and every measure of it, with their Spearman.

    ``importance`` and each measure are (n,) over the same positions (for a per-output-token
    comparison, one row of each); ``correlations`` maps each measure's name to its Spearman with
    ``importance`` (NaN where either is constant)."""

    positions: tuple[str, ...]  # (n,) labels: tokens, image regions
    importance: np.ndarray  # (n,) base − ablated; positive = the position helped
    measures: Mapping[str, np.ndarray]  # name → (n,)
    correlations: Mapping[str, float]  # name → Spearman with importance
    quantity: str  # what was ablated against, in words: "log p('7')", "cosine to the sentence"

    def __post_init__(self) -> None:
        n = len(self.positions)
        shapes = {name: np.shape(v) for name, v in {"importance": self.importance, **self.measures}.items()}
        wrong = {name: s for name, s in shapes.items() if s != (n,)}
        if wrong:
            raise ValueError(f"Comparison over {n} positions got arrays of other shapes: {wrong}.")


def compare(
    positions: Sequence[str], importance: np.ndarray, measures: Mapping[str, np.ndarray], *, quantity: str
) -> Comparison:
    """Rank every measure against ``importance`` on the same positions."""
    importance = np.asarray(importance, dtype=np.float32)
    measures = {name: np.asarray(v, dtype=np.float32) for name, v in measures.items()}
    return Comparison(
        positions=tuple(positions),
        importance=importance,
        measures=measures,
        correlations={name: spearman(v, importance) for name, v in measures.items()},
        quantity=quantity,
    )


def mean_correlations(comparisons: Sequence[Comparison]) -> dict[str, dict[str, float]]:
    """Per measure, the mean Spearman over inputs (NaNs — constant rankings — left out) and how many
    inputs it is the mean of: what a card's held-out average records."""
    names = list(comparisons[0].correlations) if comparisons else []
    out = {}
    for name in names:
        values = np.array([c.correlations[name] for c in comparisons], dtype=np.float64)
        kept = values[~np.isnan(values)]
        out[name] = {"mean": float(kept.mean()) if len(kept) else float("nan"), "n": int(len(kept))}
    return out


@dataclass(frozen=True)
class PerToken:
    """One input, every output token at once: the rows a page's output-token picker chooses from.

    Row t of ``importance`` and of each measure compares the positions for output token t (its
    log-probability under teacher forcing on the output), so picking a token costs nothing."""

    output: tuple[str, ...]  # (T,) the output tokens, teacher-forced
    positions: tuple[str, ...]  # (n,) labels of the ablated positions
    base_log_probs: np.ndarray  # (T,) log p of each output token, nothing ablated
    importance: np.ndarray  # (T, n) base − ablated, per output token and position
    measures: Mapping[str, np.ndarray]  # name → (T, n)

    @classmethod
    def from_batch(
        cls, output: Sequence[str], positions: Sequence[str], log_p: np.ndarray, copies: np.ndarray,
        measures: Mapping[str, np.ndarray],
    ) -> PerToken:  # fmt: skip
        """From one batched forward: ``log_p`` (n + 1, T) log p of each output token, row 0 the input
        itself and row 1 + i the copy with position i ablated; ``copies`` (n + 1, …) those inputs.
        Importance is row 0 − row 1 + i, and exactly 0 — importance and gradient × input alike — where
        copy i equals the input (`no_op_ablations`)."""
        no_op = no_op_ablations(copies[0], copies[1:])  # (n,)
        measures = dict(measures)
        if GRADIENT_X_INPUT in measures:
            measures[GRADIENT_X_INPUT] = without_no_ops(measures[GRADIENT_X_INPUT], no_op).astype(np.float32)
        return cls(
            output=tuple(output),
            positions=tuple(positions),
            base_log_probs=np.asarray(log_p[0]),
            importance=without_no_ops((log_p[:1] - log_p[1:]).T, no_op),  # (T, n): base − ablated
            measures=measures,
        )

    def comparison(self, t: int) -> Comparison:
        """Output token ``t``'s row of every array, ranked: what the shared view draws."""
        rows = {name: v[t] for name, v in self.measures.items()}
        quantity = f"log p({self.output[t]!r}) (output token {t + 1})"
        return compare(self.positions, self.importance[t], rows, quantity=quantity)

    def comparisons(self) -> list[Comparison]:
        return [self.comparison(t) for t in range(len(self.output))]


CHECK_EXAMPLES = 5  # a card's "check": the same means over its first few inputs, for a test to recompute


def card_entry(
    per_input: Sequence[Sequence[Comparison]], *, split: str, definition: Mapping[str, object]
) -> dict:
    """A model card's `CARD_KEY` entry from every held-out input's comparisons (one per output token,
    or one per input): ``spearman`` (measure → {"mean", "n"}, `mean_correlations` over every
    comparison), ``examples``, ``comparisons``, ``split``, ``definition`` (importance and each
    measure in words) and ``check`` (the same means over the first `CHECK_EXAMPLES` inputs)."""
    every = [c for comparisons in per_input for c in comparisons]
    first = [c for comparisons in per_input[:CHECK_EXAMPLES] for c in comparisons]
    return {
        "definition": {
            **definition,
            "spearman": (
                "per comparison, Spearman of the measure with importance over the positions (average ranks "
                "for ties); mean over the comparisons, those with a constant ranking (NaN) left out; n = "
                "comparisons kept"
            ),
            "check": f"the same means over the first {CHECK_EXAMPLES} inputs only (for a test to recompute)",
        },
        "split": split,
        "examples": len(per_input),
        "comparisons": len(every),
        "spearman": mean_correlations(every),
        "check": {"examples": min(CHECK_EXAMPLES, len(per_input)), "spearman": mean_correlations(first)},
    }


def next_token_explanation(result: NextTokenImportance, blank: int, ranked: str) -> str:
    """What a decoder's importance tab measured (the GPT's, SmolLM2's); ``ranked`` says which tokens."""
    t = result.position
    return (
        f"Importance of token j = the drop in log p({result.target!r} after position {t}) when token j alone "
        f"becomes a blank — the single-space token (id {blank}). {ranked}; raw = attention from "
        f"query {t}."
    )


# What a decoder's `ImportanceTab` says of its `NextTokenImportance`: the user picks a position and a target.
NEXT_TOKEN = {"query": "next token", "layers_heads": lambda result: result.weights.shape[:2]}

