"""What a pretrained LLM is measured on: indirect-object prompts (Wang et al. 2022), factual recall
prompts, and held-out English text that every machine has (Python's own ``pydoc_data.topics``).

Nothing here is trained on: the LLM comes pretrained. Each set has a *preset* part (what a page
offers) and a *held-out* part whose names and templates the preset never uses, so a number measured
on the held-out part does not come from prompts someone looked at while choosing the presets.
Every prompt is plain text; the target and the rival are single words that the caller tokenizes
(each name and city here is one token in SmolLM2's vocabulary, checked by the tests).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# --- Indirect object identification: "When Mary and John went to the store, John gave a drink to" → Mary
IOI_PRESET_TEMPLATES = (
    "When {io} and {s} went to the store, {s} gave a drink to",
    "When {io} and {s} went to the park, {s} gave a ball to",
    "After {io} and {s} had lunch at the cafe, {s} handed the menu to",
)
IOI_HELD_OUT_TEMPLATES = (
    "Then, {io} and {s} were working at the office. {s} decided to give a file to",
    "While {io} and {s} were cooking dinner, {s} passed the salt to",
    "Yesterday {io} and {s} visited the museum, and {s} showed a painting to",
    "At the party, {io} and {s} talked for hours. Later, {s} sent a message to",
    "When {s} and {io} arrived at the station, {s} bought a ticket for",
    "Once {io} and {s} finished the game, {s} threw the ball to",
)
SEED = 20261203  # the seed every IOI set here is drawn with (the card's, the page's presets)
IOI_PRESET_NAMES = ("Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Anna")
IOI_HELD_OUT_NAMES = (
    "David", "Michael", "Emma", "Lisa", "Paul", "Mark", "Kate", "Peter", "Laura", "Daniel", "Rachel",
    "Chris", "Jessica", "Andrew", "Sophie", "Kevin", "Linda", "George", "Helen", "Frank", "Susan", "Henry",
)  # fmt: skip


@dataclass(frozen=True)
class Contrast:
    """A prompt whose next word should be ``target`` rather than ``rival``, and its corrupted twin:
    the same template with the clue changed (another repeated name, another landmark), so the
    two have the same tokens but for the clue — what activation patching swaps between."""

    prompt: str
    target: str  # the word the prompt asks for (without its leading space)
    rival: str  # the word a model that missed the clue would say
    corrupt: str  # the prompt with the clue changed


def ioi(template: str, io: str, s: str, other: str) -> Contrast:
    """One IOI prompt: ``io`` is the indirect object (the answer), ``s`` the subject named twice;
    the corrupted twin names ``other`` the second time (then neither name is repeated: no clue)."""
    first_s = template.index("{s}")
    second = template.index("{s}", first_s + 3)
    corrupt = template[:second] + "{other}" + template[second + 3 :]
    return Contrast(
        prompt=template.format(io=io, s=s),
        target=io,
        rival=s,
        corrupt=corrupt.format(io=io, s=s, other=other),
    )


def ioi_set(n: int, seed: int, split: str = "held_out") -> list[Contrast]:
    """``n`` distinct IOI prompts drawn with ``seed`` from the ``split``'s templates and names ("preset"
    or "held_out"), the two names and the corrupting third always distinct. ``n`` must not exceed
    the split's templates × ordered name pairs (3 × 8 × 7 = 168 preset prompts)."""
    templates = IOI_PRESET_TEMPLATES if split == "preset" else IOI_HELD_OUT_TEMPLATES
    names = IOI_PRESET_NAMES if split == "preset" else IOI_HELD_OUT_NAMES
    rng = random.Random(f"{seed}-{split}")
    out, seen = [], set()
    while len(out) < n:
        template = templates[len(out) % len(templates)]
        io, s, other = rng.sample(names, 3)
        if (template, io, s) not in seen:  # every prompt once (its corrupting name aside)
            seen.add((template, io, s))
            out.append(ioi(template, io, s, other))
    return out


# --- Factual recall: "The Eiffel Tower is in the city of" → Paris (rival: the corrupted twin's city)
FACTS = (  # (landmark, city): the corrupted twin swaps in the next row's landmark
    ("the Eiffel Tower", "Paris"),
    ("the Colosseum", "Rome"),
    ("Big Ben", "London"),
    ("the Brandenburg Gate", "Berlin"),
    ("the Kremlin", "Moscow"),
    ("the Acropolis", "Athens"),
    ("the Forbidden City", "Beijing"),
    ("the Sydney Opera House", "Sydney"),
)
FACT_TEMPLATE = "{} is in the city of"
CAPITALS = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
    ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"), ("Austria", "Vienna"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Canada", "Ottawa"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Poland", "Warsaw"), ("Hungary", "Budapest"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Belgium", "Brussels"), ("China", "Beijing"),
)  # fmt: skip
CAPITAL_TEMPLATE = "The capital of {} is"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _twins(pairs: tuple[tuple[str, str], ...], template: str) -> list[Contrast]:
    """One prompt per (clue, answer) pair; its corrupted twin has the next pair's clue, its rival is
    the next pair's answer."""
    out = []
    for i, (clue, answer) in enumerate(pairs):
        other_clue, other_answer = pairs[(i + 1) % len(pairs)]
        prompt, corrupt = (_sentence(template.format(c)) for c in (clue, other_clue))
        out.append(Contrast(prompt=prompt, target=answer, rival=other_answer, corrupt=corrupt))
    return out


def fact_set() -> list[Contrast]:
    """Every landmark prompt (the page's presets), the rival the next landmark's city."""
    return _twins(FACTS, FACT_TEMPLATE)


def capital_set() -> list[Contrast]:
    """Every capital prompt (held out from the page's presets), the rival the next country's capital."""
    return _twins(CAPITALS, CAPITAL_TEMPLATE)


# --- Python for our GPT: the same question on code. Target and rival are spelt as the GPT's byte-level
# BPE has them (" parent" with its space, "item" after a bracket without one), each one token.
CODE = (
    Contrast(prompt="for name in names:\n    print(name)\nfor item in items:\n    print(", target="item",
             rival="name", corrupt="for name in names:\n    print(name)\nfor name in items:\n    print("),
    Contrast(prompt="    def __init__(self, parent):\n        self.parent =", target=" parent", rival=" self",
             corrupt="    def __init__(self, child):\n        self.parent ="),
)  # fmt: skip


# --- Held-out English text ------------------------------------------------------------------------
def english(split: str) -> str:
    """Python's ``pydoc_data.topics`` (the interpreter's own help texts, English) as one text: every
    tenth topic in sorted order is "test", the rest "train" (what a unigram baseline is counted on)."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    chosen = [k for i, k in enumerate(keys) if (i % 10 == 0) == (split == "test")]
    return "\n\n".join(topics[k].strip() for k in chosen)


def english_digest(split: str) -> str:
    """sha256 of `english` (this Python's help texts): a card's perplexity recomputes only on the same."""
    return hashlib.sha256(english(split).encode("utf-8")).hexdigest()
