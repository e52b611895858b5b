"""Task generators: deterministic, disjoint splits, gold alignments that point at the right tokens."""

import datetime as dt

import pytest

from tasks import TASKS, bucket_label, dates, translation
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
