"""Date normalisation at character level: "saturday, 21 november 2026" → "2026-11-21".

Each format is a list of pieces; a piece is literal text or a named field. Knowing where every
field sits in the source gives the gold alignment of each output character:
- a digit copied from the source (the "2" of "21") → a *sure* link to that character;
- a digit the source does not spell (the "11" of "november", the "20" of "26", the "0" of "5")
  → *possible* links to the whole field;
- the "-" separators have no source and are not scored.
Two-digit years mean 1950–2049 ("49" → 2049, "50" → 1950). "/" dates are month-first (US);
"." and "-" dates are day-first.
"""

from __future__ import annotations

import datetime as dt
import random

from tasks.common import Example, distinct

MONTHS = (
    "january february march april may june july august september october november december"
).split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MAX_SOURCE_CHARS = 80  # the page refuses longer input


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(d: dt.date) -> dict[str, str]:
    """Every way a field can be written for date ``d``."""
    return {
        "yyyy": f"{d.year:04d}",
        "yy": f"{d.year % 100:02d}",
        "mm": f"{d.month:02d}",
        "m": str(d.month),
        "month": MONTHS[d.month - 1],
        "mon": MONTHS[d.month - 1][:3],
        "dd": f"{d.day:02d}",
        "d": str(d.day),
        "dth": _ordinal(d.day),
        "weekday": WEEKDAYS[d.weekday()],
        "wd": WEEKDAYS[d.weekday()][:3],
    }


# Braces name a field; everything else is literal. The long ones (40+ chars) feed the bottleneck study.
FORMATS = (
    "{weekday}, {d} {month} {yyyy}",
    "{mon} {d} {yyyy}",
    "{dd}.{mm}.{yy}",
    "the {dth} of {month}, {yyyy}",
    "{month} {d}, {yyyy}",
    "{mm}/{dd}/{yyyy}",
    "{m}/{d}/{yy}",
    "{d} {mon} {yy}",
    "{yyyy}-{mm}-{dd}",
    "{wd}, {mon} {d}, {yyyy}",
    "{dd}-{mm}-{yyyy}",
    "{d}.{m}.{yyyy}",
    "{month} {dth}, {yyyy}",
    "{yyyy} {month} {d}",
    "{weekday} the {dth} of {month} {yyyy}",
    "on {weekday}, the {dth} of {month} in the year {yyyy}",
    "{weekday}, {month} {dth}, {yyyy}, in the morning",
    "the meeting is on {weekday}, {d} {month} {yyyy}",
    "we will arrive on {wd} {dd}.{mm}.{yyyy} at the latest",
)


def _parse(fmt: str) -> list[tuple[str, bool]]:
    """'{d} {mon}' → [('d', True), (' ', False), ('mon', True)]."""
    pieces, rest = [], fmt
    while rest:
        if rest.startswith("{"):
            end = rest.index("}")
            pieces.append((rest[1:end], True))
            rest = rest[end + 1 :]
        else:
            nxt = rest.find("{")
            nxt = len(rest) if nxt < 0 else nxt
            pieces.append((rest[:nxt], False))
            rest = rest[nxt:]
    return pieces


def render(d: dt.date, fmt: str) -> Example:
    """Write ``d`` in ``fmt`` and derive the gold alignment of "YYYY-MM-DD" to it."""
    values = _fields(d)
    src, spans = "", {}
    for name, is_field in _parse(fmt):
        text = values[name] if is_field else name
        if is_field:
            spans[name] = range(len(src), len(src) + len(text))
        src += text
    target = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    sure: set[tuple[int, int]] = set()
    possible: set[tuple[int, int]] = set()

    def link(out_pos: range, names: tuple[str, ...], width: int) -> None:
        """Align output chars ``out_pos`` (a number of ``width`` digits) to the field present."""
        name = next(n for n in names if n in spans)
        span = spans[name]
        digits = values[name] if values[name].isdigit() else ""
        for k, t in enumerate(out_pos):
            possible.update((t, j) for j in span)
            # Copied digit: right-aligned match of the output digit inside a numeric field.
            j = k - (width - len(digits))
            if digits and 0 <= j < len(digits):
                sure.add((t, span[j]))

    link(range(0, 4), ("yyyy", "yy"), 4)
    link(range(5, 7), ("mm", "m", "month", "mon"), 2)
    link(range(8, 10), ("dd", "d", "dth"), 2)
    # An ordinal ("21st") is numeric only in its digits: drop links into the suffix.
    if "dth" in spans:
        suffix = set(spans["dth"][len(str(d.day)) :])
        possible = {(t, j) for t, j in possible if j not in suffix}
    # Possible links that a sure link already pins down to one character are redundant.
    pinned = {t for t, _ in sure}
    possible = {(t, j) for t, j in possible if t not in pinned} | sure
    return Example(tuple(src), tuple(target), frozenset(sure), frozenset(possible))


def random_example(rng: random.Random) -> Example:
    d = FIRST_DAY + dt.timedelta(days=rng.randint(0, (LAST_DAY - FIRST_DAY).days))
    return render(d, rng.choice(FORMATS))


def generate(n: int, seed: int, split: str | None = None) -> list[Example]:
    """``n`` distinct examples from a seeded generator, optionally only those of one split."""
    return distinct(random_example, n, seed, split, "")


def tokenize(text: str) -> tuple[str, ...]:
    """User text → model characters: lower-cased, runs of white space folded to one space."""
    return tuple(" ".join(text.lower().split()))
