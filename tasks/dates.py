"""Date normalisation at character level: "saturday, 21 november 2026" → "2026-11-21".

Each format is a list of pieces; a piece is literal text or a named field. Knowing where every
field sits in the source gives the gold alignment of each output character:
- a digit copied from the source (the "2" of "21") → a *sure* link to that character;
- a digit the source does not spell (the "11" of "november", the "20" of "26", the "0" of "5")
  → *possible* links to the whole field;
- the "-" separators have no source and are not scored.
Two-digit years mean 1950–2049 ("49" → 2049, "50" → 1950). Numeric dates follow one convention
the page states: year first when the year has four digits (ISO, with "-", "/" or "."); otherwise "/"
dates are month-first (US) unless the first number is over 12 (then it can only be the day), and
"." and "-" dates are day-first. Month names come full, abbreviated (with or without a dot), and in
the misspellings people make; days as numbers or ordinals; weekdays full or abbreviated.
"""

from __future__ import annotations

import datetime as dt
import random
import re

from tasks.common import Example, distinct

MONTHS = ("january february march april may june july august september october november december").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MAX_SOURCE_CHARS = 80  # the page refuses longer input


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


MISSPELLED = {  # common misspellings of month names (each date uses one, picked by the date)
    1: ("janurary", "januray", "jaunary"),
    2: ("febuary", "feburary", "febrary"),
    3: ("mrach", "marhc"),
    4: ("apirl", "aprill"),
    6: ("juen",),
    7: ("jully",),
    8: ("agust", "augest", "augst"),
    9: ("septmber", "setember", "sepember"),
    10: ("octobor", "ocotber", "octber"),
    11: ("novmber", "novemeber", "noveber"),
    12: ("decmber", "decemeber", "dicember"),
}


def _fields(d: dt.date) -> dict[str, str]:
    """Every way a field can be written for date ``d``."""
    month = MONTHS[d.month - 1]
    typos = MISSPELLED.get(d.month, (month,))
    return {
        "yyyy": f"{d.year:04d}",
        "yy": f"{d.year % 100:02d}",
        "mm": f"{d.month:02d}",
        "m": str(d.month),
        "month": MONTHS[d.month - 1],
        "mon": MONTHS[d.month - 1][:3],
        "month_typo": typos[d.toordinal() % len(typos)],
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
    # ISO with other separators and without leading zeros
    "{yyyy}/{mm}/{dd}",
    "{yyyy}.{mm}.{dd}",
    "{yyyy}-{m}-{d}",
    "{yyyy}/{m}/{d}",
    # numeric, day-first ("." and "-"), and month-first "/" (US)
    "{dd}.{mm}.{yyyy}",
    "{d}-{m}-{yy}",
    "{dd}-{mm}-{yy}",
    "{m}/{d}/{yyyy}",
    "{mm}/{dd}/{yy}",
    # month names abbreviated with a dot, ordinals, no commas, dashes, misspelled
    "{mon}. {d}, {yyyy}",
    "{d} {mon}. {yyyy}",
    "{dth} {month} {yyyy}",
    "{dth} of {month} {yyyy}",
    "{month} {d} {yyyy}",
    "{d}-{mon}-{yyyy}",
    "{d} {month_typo} {yyyy}",
    "{month_typo} {dth}, {yyyy}",
    "{wd}. {d} {mon} {yyyy}",
    "{wd} {mon} {d} {yy}",
)
# "/" with the day first: only where the day is over 12 (otherwise the US reading applies).
DAY_FIRST_SLASH = ("{dd}/{mm}/{yyyy}", "{d}/{m}/{yyyy}", "{d}/{m}/{yy}")


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
    link(range(5, 7), ("mm", "m", "month", "mon", "month_typo"), 2)
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
    formats = FORMATS + DAY_FIRST_SLASH if d.day > 12 else FORMATS
    return render(d, rng.choice(formats))


def generate(n: int, seed: int, split: str | None = None) -> list[Example]:
    """``n`` distinct examples from a seeded generator, optionally only those of one split."""
    return distinct(random_example, n, seed, split, "")


def tokenize(text: str) -> tuple[str, ...]:
    """User text → model characters: lower-cased, runs of white space folded to one space."""
    return tuple(" ".join(text.lower().split()))


# --- What the page checks around the model ---------------------------------------------------------
RELATIVE = re.compile(r"\b(today|tomorrow|yesterday|tonight|next|last|this|ago|coming|week|weekend)\b")
NUMBERS = re.compile(r"\d+")
WORD = re.compile(r"[^\W\d_]{3,}")  # a month name in any script, perhaps misspelled
NUMERIC = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})")
TYPED = (  # dates as people type them: the task's own formats and a few looser ones (the soak types these)
    "12 march 1999", "saturday, 21 november 2026", "jan 5 1987", "25.12.99", "the 1st of may, 2010",
    "october 31, 1968", "07/04/1976", "9/11/01", "14 feb 22", "2000-02-29", "sunday, 1 january 2040",
    "the 22nd of august, 1955", "apr 30 2019", "16.06.04", "december 8, 1980", "3 july 2004",
)  # fmt: skip
CONVENTION = (
    'Numeric dates: a four-digit year first is ISO (2026-11-21, 2026/11/21, 2026.11.21); otherwise "/" '
    'is month-first (US: 11/21/2026) unless the first number is over 12 (21/11/2026), and "." and "-" '
    "are day-first (21.11.2026, 21-11-26). Two-digit years mean 1950–2049."
)


def input_problem(text: str) -> str | None:
    """Why typed text cannot be a date this task defines (it needs a day, a month and a year);
    None when it can. The model would otherwise invent the missing part."""
    text = " ".join(text.lower().split())
    if RELATIVE.search(text):
        return (
            "That is a relative date: it needs today's date, which the model does not know. "
            "Type the date itself, for example “21 november 2026”."
        )
    numbers = len(NUMBERS.findall(text))
    if numbers < (2 if WORD.search(text) else 3):
        return (
            "That has no year (or no day): the model always outputs a full date and would invent the "
            "missing part. Type day, month and year, for example “21st november 2026”."
        )
    return None


def output_problem(text: str) -> str | None:
    """Why an output is not a calendar date YYYY-MM-DD (e.g. 2021-15-03); None when it is one."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return f"“{text}” is not a calendar date (YYYY-MM-DD with a real month and day)"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return f"“{text}” is not written YYYY-MM-DD"
    return None


def other_reading(text: str) -> str | None:
    """For a numeric date both of whose first numbers could be the month (03/04/2021): the same
    date typed so that the convention reads it the other way round (03.04.2021); None otherwise."""
    match = NUMERIC.fullmatch(" ".join(text.lower().split()))
    if match is None:
        return None
    first, sep, second, year = match.groups()
    if int(first) > 12 or int(second) > 12 or int(first) == int(second):
        return None
    other = "." if sep == "/" else "/"
    return f"{first}{other}{second}{other}{year}"


def format_examples(day: dt.date = dt.date(2026, 11, 21)) -> list[str]:
    """Every trained format written out for ``day`` (day-first "/" ones included)."""
    return ["".join(render(day, fmt).src) for fmt in FORMATS + DAY_FIRST_SLASH]
