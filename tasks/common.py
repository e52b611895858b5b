"""What every task shares: an example with gold alignments, the vocabulary, splits and AER.

Splits are decided by a hash of the *source text*, so the same source can never land in two
splits, whatever seed or size generated it: the test split is never trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIALS))  # the same ids in every vocabulary
Link = tuple[int, int]  # (target index, source index)


@dataclass(frozen=True)
class Example:
    """One source/target pair. ``sure`` ⊆ ``possible`` are gold links (target i, source j)."""

    src: tuple[str, ...]
    tgt: tuple[str, ...]
    sure: frozenset[Link]
    possible: frozenset[Link]

    def __post_init__(self) -> None:
        assert self.sure <= self.possible, "sure links must be a subset of possible links"


def distinct(
    make: Callable[[random.Random], Example], n: int, seed: int, split: str | None, joiner: str
) -> list[Example]:
    """``n`` examples with distinct sources from ``make(rng)``, optionally only one split's."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        ex = make(rng)
        if ex.src in seen or (split is not None and split_of(joiner.join(ex.src)) != split):
            continue
        seen.add(ex.src)
        out.append(ex)
    return out


def split_of(key: str) -> str:
    """'train' (80%), 'val' (10%) or 'test' (10%), fixed by the example's key alone (a source
    text, a scene layout): the same key can never land in two splits."""
    digest = hashlib.sha256(key.encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def length_to_eos(ids: Sequence[int]) -> int:
    """How many of ``ids`` an output really has: up to and including the first </s>, else all."""
    return ids.index(EOS_ID) + 1 if EOS_ID in ids else len(ids)


@dataclass(frozen=True)
class Vocab:
    """Token ↔ id. Ids 0..3 are <pad>, <s>, </s>, <unk>."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocab:
        seen = sorted({tok for seq in sequences for tok in seq} - set(SPECIALS))
        return cls(SPECIALS + tuple(seen))

    @property
    def index(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    def encode(self, seq: Sequence[str]) -> list[int]:
        idx = self.index
        return [idx.get(tok, idx[UNK]) for tok in seq]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids → tokens, stopping at </s> (excluded) and skipping <pad>/<s>."""
        out = []
        for i in ids:
            tok = self.tokens[i]
            if tok == EOS:
                break
            if tok not in (PAD, BOS):
                out.append(tok)
        return out

    def unknown(self, seq: Sequence[str]) -> list[str]:
        """The tokens of ``seq`` this vocabulary does not know, in order, without repeats."""
        idx = self.index
        return list(dict.fromkeys(tok for tok in seq if tok not in idx))

    def __len__(self) -> int:
        return len(self.tokens)


def argmax_links(weights: Sequence[Sequence[float]]) -> set[Link]:
    """One predicted link per target position: the source position with the largest weight."""
    return {(t, max(range(len(row)), key=row.__getitem__)) for t, row in enumerate(weights)}


def aer(predicted: set[Link], sure: frozenset[Link], possible: frozenset[Link]) -> float:
    """Alignment error rate (Och & Ney 2003) of one sentence; see `corpus_aer`."""
    return corpus_aer([(predicted, sure, possible)])


def corpus_aer(rows: Iterable[tuple[set[Link], frozenset[Link], frozenset[Link]]]) -> float:
    """Alignment error rate, 1 − (|A∩S| + |A∩P|) / (|A| + |S|), counts summed over sentences.

    Only target positions that have a gold link are scored (a '-' in a date or </s> has none).
    """
    num = den = 0
    for predicted, sure, possible in rows:
        scored = {t for t, _ in possible}
        a = {link for link in predicted if link[0] in scored}
        num += len(a & sure) + len(a & possible)
        den += len(a) + len(sure)
    return 1.0 - num / den if den else 0.0
