"""The seq2seq tasks, each a seeded generator with gold alignments and fixed splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks import dates, translation
from tasks.common import Example, Vocab

TEST_SEED = 20261121  # the test split is the same whatever seed trains a model
TEST_SIZE = 1000  # examples in every task's test split (the cards are scored on them)


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    generate: Callable[..., list[Example]]  # (n, seed, split) → distinct examples
    tokenize: Callable[[str], tuple[str, ...]]  # user text → source tokens
    unit: str  # "characters" or "words", for messages
    buckets: tuple[int, ...]  # source-length bucket edges for the bottleneck curve
    max_source: int  # longest source the page accepts
    max_target: int  # decoding stops here
    placeholder: str  # an example input for the text box
    input_note: str  # how typed text is normalised before the model reads it
    # What the page checks around the model (the default: nothing to check).
    input_problem: Callable[[str], str | None] = lambda text: None  # why text is no input of the task
    output_problem: Callable[[str], str | None] = lambda text: None  # why an output is invalid
    other_reading: Callable[[str], str | None] = lambda text: None  # an ambiguous input, read the other way
    formats: tuple[str, ...] = ()  # the input formats trained on, written out
    convention: str = ""  # how ambiguous input is read

    @property
    def joiner(self) -> str:
        """What joins tokens back into text: "" between characters, " " between words."""
        return "" if self.unit == "characters" else " "

    @classmethod
    def of(cls, module, **fields) -> Task:
        """The task of a generator module (``tasks.dates``): named after it, generated and tokenized
        by its own ``generate`` and ``tokenize``."""
        name = module.__name__.rpartition(".")[2]
        return cls(name=name, generate=module.generate, tokenize=module.tokenize, **fields)


_TASKS = (
    Task.of(
        dates,
        title="Date normalisation (characters)",
        unit="characters",
        buckets=(10, 20, 30, 40, 50),
        max_source=dates.MAX_SOURCE_CHARS,
        max_target=12,
        placeholder="saturday, 21 november 2026",
        input_note="Input is lower-cased and spaces are folded: the model was trained on lower-case dates.",
        input_problem=dates.input_problem,
        output_problem=dates.output_problem,
        other_reading=dates.other_reading,
        formats=tuple(dates.format_examples()),
        convention=dates.CONVENTION,
    ),
    Task.of(
        translation,
        title="Toy translation English → Spanish-like (words)",
        unit="words",
        buckets=(5, 8, 11, 14, 17, 20, 24),
        max_source=translation.MAX_SOURCE_WORDS,
        max_target=50,
        placeholder="we are eating the big red apples in the garden",
        input_note='Input is lower-cased and . , ! ? ; : " ( ) are dropped: the model saw no punctuation.',
    ),
)
TASKS: dict[str, Task] = {task.name: task for task in _TASKS}


def bucket_label(length: int, edges: tuple[int, ...]) -> str:
    """Length → bucket name: edges (5, 8) give '≤5', '6–8', '≥9'."""
    lo = 1
    for hi in edges:
        if length <= hi:
            return f"≤{hi}" if lo == 1 else f"{lo}–{hi}"
        lo = hi + 1
    return f"≥{lo}"


def held_out(task_name: str, n: int = TEST_SIZE) -> list[Example]:
    """The first ``n`` examples of a task's fixed test split, the one the model cards are scored on."""
    return TASKS[task_name].generate(TEST_SIZE, TEST_SEED, "test")[:n]


class InputError(ValueError):
    """Input the page should refuse with this message (empty, too long)."""


@dataclass(frozen=True)
class Prepared:
    tokens: tuple[str, ...]  # source tokens as the model reads them
    unknown: tuple[str, ...]  # tokens the vocabulary lacks (read as <unk>)


def prepare(task: Task, text: str, src_vocab: Vocab) -> Prepared:
    """User text → source tokens; raises InputError with the message to show."""
    tokens = task.tokenize(text)
    if not tokens:
        raise InputError(f"Type a source text, for example: “{task.placeholder}”.")
    if len(tokens) > task.max_source:
        raise InputError(
            f"That input is {len(tokens)} {task.unit} long; this model accepts at most "
            f"{task.max_source} {task.unit}. Shorten it and try again."
        )
    problem = task.input_problem(text)
    if problem is not None:
        raise InputError(problem)
    return Prepared(tokens, tuple(src_vocab.unknown(tokens)))
