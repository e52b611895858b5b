"""Choosing the next token from a model's logits: greedy, or sampled with temperature, top-k and top-p
(nucleus, Holtzman et al. 2020). Randomness only from the caller's ``torch.Generator``, never the
global seed: two sessions sampling at once each get their own reproducible draw."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. ``temperature`` 0 is greedy (the most likely token, first of ties);
    otherwise softmax(logits / temperature) restricted to the ``top_k`` most likely tokens and to the
    smallest set, best first, whose probability reaches ``top_p`` (either None: no such restriction),
    drawn with a generator seeded by ``seed`` alone."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        t, k, p = self.temperature, self.top_k, self.top_p
        if t < 0 or (p is not None and not 0 < p <= 1) or (k is not None and k < 1):
            raise ValueError(f"need temperature ≥ 0, 0 < top_p ≤ 1 and top_k ≥ 1; got {t}, {p} and {k}.")


GREEDY = Sampling()


@dataclass(frozen=True)
class Step:
    """One generated token and what the model read to choose it (a decoder's ``stream`` yields these)."""

    token: int
    log_prob: float  # the model's own log p of it (temperature 1, every token)
    start: int  # position of the first row this step read (0: the prompt, at the first step)
    weights: Tensor | None  # (L traced, h, rows read, keys) attention of those rows; None: none traced
    logits: Tensor  # (V,) the distribution it was drawn from, before temperature


def next_token(logits: Tensor, sampling: Sampling = GREEDY, generator: torch.Generator | None = None) -> int:
    """The token after ``logits`` (V,) as ``sampling`` chooses it, drawing from ``generator``."""
    if sampling.temperature == 0:
        return int(logits.argmax())
    scaled = logits.float() / sampling.temperature  # (V,)
    order = torch.argsort(scaled, descending=True, stable=True)  # best first
    keep = torch.ones_like(order, dtype=torch.bool)  # over the sorted tokens
    if sampling.top_k is not None:
        keep[sampling.top_k :] = False
    if sampling.top_p is not None:
        probs = torch.softmax(scaled[order], -1)
        before = torch.cumsum(probs, -1) - probs  # probability of the better tokens
        keep &= before < sampling.top_p  # the first token always stays
    allowed = scaled.new_full(scaled.shape, float("-inf"))
    allowed[order[keep]] = scaled[order[keep]]
    return int(torch.multinomial(torch.softmax(allowed, -1), 1, generator=generator))


# What a decoder's ``stream`` hands `steps`: after the token just chosen (None: the prompt), the logits
# (V,) of the next position, the attention of the rows just read (None when none was traced) and the
# position of the first of them.
Read = Callable[[int | None], tuple[Tensor, Tensor | None, int]]


def steps(read: Read, *, new_tokens: int, sampling: Sampling, stop: Collection[int],
          device: torch.device) -> Iterator[Step]:  # fmt: skip
    """The generation loop every decoder shares: ``read``, choose, yield the `Step`, until ``new_tokens``
    or a token in ``stop`` (yielded). How a model reads — through a KV cache, or the whole window again —
    is its ``read``'s."""
    generator = torch.Generator(device=device).manual_seed(sampling.seed)
    token = None
    for _ in range(new_tokens):
        last, weights, start = read(token)
        last = last.float()  # (V,)
        token = next_token(last, sampling, generator)
        yield Step(token, float(torch.log_softmax(last, -1)[token]), start, weights, last)
        if token in stop:
            return
