"""The seq2seq tasks, each a seeded generator with gold alignments and fixed splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks import dates, translation
from tasks.common import Example


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    generate: Callable[..., list[Example]]  # (n, seed, split) → distinct examples
    tokenize: Callable[[str], tuple[str, ...]]  # user text → source tokens
    joiner: str  # "" for characters, " " for words
    unit: str  # "characters" or "words", for messages
    max_source: int  # longest source the page accepts
    max_target: int  # decoding stops here
    buckets: tuple[int, ...]  # source-length bucket edges for the bottleneck curve
    placeholder: str  # an example input for the text box


TASKS: dict[str, Task] = {
    "dates": Task(
        name="dates",
        title="Date normalisation (characters)",
        generate=dates.generate,
        tokenize=dates.tokenize,
        joiner="",
        unit="characters",
        max_source=dates.MAX_SOURCE_CHARS,
        max_target=12,
        buckets=(10, 20, 30, 40, 50),
        placeholder="saturday, 21 november 2026",
    ),
    "translation": Task(
        name="translation",
        title="Toy translation English → Spanish-like (words)",
        generate=translation.generate,
        tokenize=translation.tokenize,
        joiner=" ",
        unit="words",
        max_source=translation.MAX_SOURCE_WORDS,
        max_target=50,
        buckets=(5, 8, 11, 14, 17, 20, 24),
        placeholder="we are eating the big red apples in the garden",
    ),
}


def bucket_label(length: int, edges: tuple[int, ...]) -> str:
    """Length → bucket name: edges (5, 8) give '≤5', '6–8', '≥9'."""
    lo = 1
    for hi in edges:
        if length <= hi:
            return f"≤{hi}" if lo == 1 else f"{lo}–{hi}"
        lo = hi + 1
    return f"≥{lo}"
