"""Choosing the next token from a model's logits: greedy, or sampled with temperature, top-k and top-p
(nucleus, Holtzman et al. 2020). Randomness only from the caller's ``torch.Generator``, never the
global seed: two sessions sampling at once each get their own reproducible draw."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Step:
    """One generated token and what the model read to choose it (a decoder's ``stream`` yields these)."""

    token: int
    log_prob: float  # the model's own log p of it (temperature 1, every token)
    start: int  # position of the first row this step read
    weights: Tensor | None  # (L traced, h, Tq, Tk) attention of those rows; None when none was traced
    logits: Tensor  # (V,) the distribution it was drawn from, before temperature


def next_token(
    logits: Tensor, *, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:  # fmt: skip
    """The token after ``logits`` (V,). ``temperature`` 0 is greedy (the most likely token, first of
    ties); otherwise softmax(logits / temperature) restricted to the ``top_k`` most likely tokens and
    to the smallest set, best first, whose probability reaches ``top_p``, renormalised, then one draw."""
    if temperature < 0 or (top_p is not None and not 0 < top_p <= 1) or (top_k is not None and top_k < 1):
        raise ValueError(
            f"need temperature ≥ 0, 0 < top_p ≤ 1 and top_k ≥ 1; got {temperature}, {top_p} and {top_k}."
        )
    if temperature == 0:
        return int(logits.argmax())
    scaled = logits.float() / temperature  # (V,)
    order = torch.argsort(scaled, descending=True, stable=True)  # best first
    keep = torch.ones_like(order, dtype=torch.bool)  # over the sorted tokens
    if top_k is not None:
        keep[top_k:] = False
    if top_p is not None:
        probs = torch.softmax(scaled[order], -1)
        before = torch.cumsum(probs, -1) - probs  # probability of the better tokens
        keep &= before < top_p  # the first token always stays
    allowed = scaled.new_full(scaled.shape, float("-inf"))
    allowed[order[keep]] = scaled[order[keep]]
    return int(torch.multinomial(torch.softmax(allowed, -1), 1, generator=generator))
