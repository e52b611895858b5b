"""Task generators: deterministic, disjoint splits, gold alignments that point at the right tokens."""

import csv
import datetime as dt
import re
from pathlib import Path

import pytest

from tasks import TASKS, InputError, bucket_label, dates, prepare, translation
from tasks.common import Vocab, aer, argmax_links, corpus_aer, split_of


@pytest.mark.parametrize("name", sorted(TASKS))
def test_seeded_and_splits_disjoint(name):
    task = TASKS[name]
    assert task.generate(200, 5) == task.generate(200, 5)
    train = {ex.src for ex in task.generate(600, 1, "train")}
    test = {ex.src for ex in task.generate(300, 2, "test")}
    assert not train & test
    assert all(split_of(task.joiner.join(src)) == "test" for src in test)


def test_date_targets_and_copied_digits():
    for ex in dates.generate(500, 3):
        target = "".join(ex.tgt)
        dt.date.fromisoformat(target)  # a real date
        src = "".join(ex.src)
        for t, j in ex.sure:  # a sure link copies that very digit
            assert ex.tgt[t] == src[j] and src[j].isdigit()
        assert not any(t in (4, 7) for t, _ in ex.possible)  # '-' has no source
        assert {t for t, _ in ex.possible} == {0, 1, 2, 3, 5, 6, 8, 9}


def test_date_weekday_and_two_digit_year():
    ex = dates.render(dt.date(2026, 11, 21), "{weekday}, {d} {month} {yyyy}")
    assert "".join(ex.src) == "saturday, 21 november 2026" and "".join(ex.tgt) == "2026-11-21"
    ex = dates.render(dt.date(1951, 3, 5), "{m}/{d}/{yy}")
    assert "".join(ex.src) == "3/5/51" and "".join(ex.tgt) == "1951-03-05"
    # '19' is not written in the source: possible links to the whole '51', no sure link.
    assert {j for t, j in ex.possible if t == 0} == {4, 5} and not any(t == 0 for t, _ in ex.sure)
    assert max(len(e.src) for e in dates.generate(400, 4)) >= 40  # long inputs exist


def test_translation_rules_and_alignments():
    examples = translation.generate(3000, 6)
    lengths = [len(e.src) for e in examples]
    assert min(lengths) <= 3 and max(lengths) >= 16
    for ex in examples:
        assert {t for t, _ in ex.possible} == set(range(len(ex.tgt)))  # every target word is aligned
        assert all(0 <= j < len(ex.src) for _, j in ex.possible)
    by_src = {" ".join(e.src): e for e in examples}
    vocab = {w for e in examples for w in e.src}
    assert len(vocab) >= 100
    # Adjective after noun, mirrored, with agreement; dropped pronoun; progressive many-to-one.
    hit = [e for s, e in by_src.items() if s.startswith("we are ") and e.src[2] != "not"]
    assert hit and all(e.tgt[0] == "estamos" and e.tgt[1].endswith(("ando", "iendo")) for e in hit)
    e = hit[0]
    assert (0, 1) in e.sure and (0, 0) in e.possible and (0, 0) not in e.sure
    neg = next(e for s, e in by_src.items() if s.startswith("we are not "))
    assert neg.tgt[:2] == ("no", "estamos") and (0, 2) in neg.sure  # no ↔ not, moved before the verb
    # det adj noun → det noun adj, the adjective agreeing with the noun's gender and number.
    adjectives = {en: es for en, es in translation.ADJECTIVES}
    nouns = {en: (es, g) for en, pl, es, g in translation.NOUNS} | {
        pl: (es, g) for en, pl, es, g in translation.NOUNS
    }
    checked = 0
    for e in examples:
        align = {j: t for t, j in e.sure}
        for j in range(1, len(e.src) - 1):
            adj, noun = e.src[j], e.src[j + 1]
            if adj in adjectives and noun in nouns and adjectives[adj].endswith("o"):
                t_adj, t_noun = align[j], align[j + 1]
                assert t_adj > t_noun, e
                plural = noun not in {n for n, *_ in translation.NOUNS}
                ending = ("o" if nouns[noun][1] == "m" else "a") + ("s" if plural else "")
                assert e.tgt[t_adj] == adjectives[adj][:-1] + ending, e
                checked += 1
    assert checked > 100


def test_aer_definition():
    sure, possible = frozenset({(0, 0)}), frozenset({(0, 0), (1, 1), (1, 2)})
    assert aer({(0, 0), (1, 2)}, sure, possible) == 0.0
    assert aer({(0, 1), (1, 0)}, sure, possible) == 1.0
    assert aer({(0, 0), (1, 0)}, sure, possible) == pytest.approx(1 - 2 / 3)
    assert corpus_aer([({(0, 0)}, sure, possible), ({(0, 1)}, sure, possible)]) == pytest.approx(0.5)
    assert argmax_links([[0.1, 0.9], [0.7, 0.3]]) == {(0, 1), (1, 0)}


def test_vocab_unknown_and_buckets():
    v = Vocab.build([("a", "b")])
    assert v.encode(("a", "zz")) == [4, 3] and v.unknown(("zz", "a", "zz")) == ["zz"]
    assert v.decode([4, 5, 2, 4]) == ["a", "b"]
    assert [bucket_label(n, (5, 8)) for n in (1, 5, 6, 8, 9)] == ["≤5", "≤5", "6–8", "6–8", "≥9"]


def read_numeric(text: str) -> str | None:
    """The stated convention, written out independently of the generator: YYYY-MM-DD of a purely
    numeric date, or None for any other text."""
    match = re.fullmatch(r"(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})", text)
    if match is None:
        return None
    a, sep, b, c = match.groups()
    if len(a) == 4:  # ISO, any separator
        year, month, day = int(a), int(b), int(c)
    elif sep == "/" and int(a) <= 12:  # US, month first
        month, day, year = int(a), int(b), int(c)
    else:  # day first: "." and "-", or "/" with a first number over 12
        day, month, year = int(a), int(b), int(c)
    if year < 100:
        year += 2000 if year < 50 else 1900
    return f"{year:04d}-{month:02d}-{day:02d}"


def test_numeric_dates_follow_the_convention_the_page_states():
    numeric = [e for e in dates.generate(4000, 6) if read_numeric("".join(e.src))]
    assert len(numeric) > 800  # ISO, US, day-first: all present
    assert {"".join(e.src)[2] for e in numeric if len(e.src) == 10} >= {"/", ".", "-"}
    for e in numeric:
        assert read_numeric("".join(e.src)) == "".join(e.tgt), "".join(e.src)
    firsts = ["".join(e.src).split("/")[0] for e in numeric if "/" in e.src]
    assert any(len(a) <= 2 and int(a) > 12 for a in firsts)  # day-first "/" (15/03/2021) is trained


def typed_dates() -> list[tuple[str, str]]:
    """Dates typed by hand in ordinary ways (not by our generator), with their answers."""
    with open(Path(__file__).parent / "data" / "typed_dates.csv", newline="", encoding="utf-8") as f:
        return [(row["typed"], row["date"]) for row in csv.DictReader(f)]


def test_input_the_task_cannot_define_is_refused_and_real_dates_are_not():
    for text in ("next friday", "tomorrow", "21st November", "friday the 13th", "march 2020", "3/5", "1999"):
        with pytest.raises(InputError, match="relative date|no year"):
            prepare(TASKS["dates"], text, Vocab(()))
    for text in [t for t, _ in typed_dates()] + ["".join(e.src) for e in dates.generate(3000, 8)]:
        assert dates.input_problem(text) is None, text


def test_outputs_are_checked_as_calendar_dates():
    for bad in ("2021-15-03", "2026-2-111", "2020-03-00", "2021-02-29", "20210315", ""):
        assert "not" in dates.output_problem(bad), bad
    for good in ("2020-02-29", "1950-01-01", "2049-12-31"):
        assert dates.output_problem(good) is None
    assert all(dates.output_problem("".join(e.tgt)) is None for e in dates.generate(2000, 9))


def test_ambiguous_numeric_dates_offer_the_other_reading():
    assert dates.other_reading("03/04/2021") == "03.04.2021"
    assert dates.other_reading("3.4.21") == "3/4/21" and dates.other_reading("3-4-2021") == "3/4/2021"
    for text in ("15/03/2021", "4/4/2020", "2021/03/04", "3 april 2021"):
        assert dates.other_reading(text) is None, text
    # the other reading swaps day and month under the convention
    for text in ("03/04/2021", "3.4.21", "11-12-1999"):
        a, b = read_numeric(text), read_numeric(dates.other_reading(text))
        assert (a[:4], a[5:7], a[8:]) == (b[:4], b[8:], b[5:7])
