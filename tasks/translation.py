"""Toy translation, English → a Spanish-like language, with gold word alignments.

The rules are chosen to give alignment real structure, not a diagonal:
- subject pronouns are dropped: "we eat" → "comemos" (comemos ↔ eat sure, ↔ we possible);
- many-to-one: "we are eating" → "estamos comiendo" (estamos ↔ are sure, ↔ we possible);
- one-to-many: "near the tree" → "cerca de el arbol" (cerca, de ↔ near);
- adjectives follow the noun, mirrored: "the big red car" → "el coche rojo grande";
- articles and adjectives agree in gender and number: "the red houses" → "las casas rojas";
- negation moves: "does not eat" → "no come" (no ↔ not sure, ↔ does possible).
Sentences run from 3 to about 25 words (two clauses joined by "and"/"but").
"""

from __future__ import annotations

import random

from tasks.common import Example, distinct

# English singular, English plural, target singular, gender ("m"/"f").
NOUNS = [
    ("cat", "cats", "gato", "m"), ("dog", "dogs", "perro", "m"), ("house", "houses", "casa", "f"),
    ("car", "cars", "coche", "m"), ("book", "books", "libro", "m"), ("table", "tables", "mesa", "f"),
    ("apple", "apples", "manzana", "f"), ("friend", "friends", "amigo", "m"),
    ("woman", "women", "mujer", "f"), ("man", "men", "hombre", "m"), ("child", "children", "nino", "m"),
    ("girl", "girls", "nina", "f"), ("boy", "boys", "chico", "m"), ("teacher", "teachers", "maestro", "m"),
    ("city", "cities", "ciudad", "f"), ("window", "windows", "ventana", "f"),
    ("door", "doors", "puerta", "f"), ("letter", "letters", "carta", "f"), ("flower", "flowers", "flor", "f"),
    ("bird", "birds", "pajaro", "m"), ("garden", "gardens", "jardin", "m"), ("river", "rivers", "rio", "m"),
    ("tree", "trees", "arbol", "m"), ("chair", "chairs", "silla", "f"), ("shirt", "shirts", "camisa", "f"),
    ("song", "songs", "cancion", "f"), ("horse", "horses", "caballo", "m"), ("cow", "cows", "vaca", "f"),
    ("school", "schools", "escuela", "f"), ("street", "streets", "calle", "f"),
    ("mountain", "mountains", "montana", "f"), ("key", "keys", "llave", "f"), ("cup", "cups", "taza", "f"),
    ("glass", "glasses", "vaso", "m"), ("doctor", "doctors", "medico", "m"), ("box", "boxes", "caja", "f"),
]
# English, target masculine singular. Target forms inflect: -o → o/a/os/as; else +s/+es (z → ces).
ADJECTIVES = [
    ("red", "rojo"), ("big", "grande"), ("small", "pequeno"), ("new", "nuevo"), ("old", "viejo"),
    ("white", "blanco"), ("black", "negro"), ("green", "verde"), ("beautiful", "bonito"),
    ("tall", "alto"), ("happy", "feliz"), ("blue", "azul"), ("young", "joven"), ("cold", "frio"),
    ("hot", "caliente"), ("yellow", "amarillo"), ("long", "largo"), ("good", "bueno"),
]
# English base, English 3sg, English -ing, target infinitive (regular -ar/-er/-ir).
VERBS = [
    ("eat", "eats", "eating", "comer"), ("drink", "drinks", "drinking", "beber"),
    ("buy", "buys", "buying", "comprar"), ("see", "sees", "seeing", "ver"),
    ("open", "opens", "opening", "abrir"), ("write", "writes", "writing", "escribir"),
    ("watch", "watches", "watching", "mirar"), ("need", "needs", "needing", "necesitar"),
    ("carry", "carries", "carrying", "llevar"), ("clean", "cleans", "cleaning", "limpiar"),
    ("paint", "paints", "painting", "pintar"), ("sell", "sells", "selling", "vender"),
    ("wash", "washes", "washing", "lavar"), ("love", "loves", "loving", "amar"),
    ("draw", "draws", "drawing", "dibujar"), ("call", "calls", "calling", "llamar"),
    ("take", "takes", "taking", "tomar"), ("break", "breaks", "breaking", "romper"),
    ("visit", "visits", "visiting", "visitar"), ("cook", "cooks", "cooking", "cocinar"),
]
# Person index: 0 I, 1 you, 2 he/she/it/NP-sg, 3 we, 4 they/NP-pl.
PRONOUNS = [("i", 0), ("you", 1), ("he", 2), ("she", 2), ("we", 3), ("they", 4)]
ENDINGS = {"ar": ("o", "as", "a", "amos", "an"), "er": ("o", "es", "e", "emos", "en"),
           "ir": ("o", "es", "e", "imos", "en")}
ESTAR = ("estoy", "estas", "esta", "estamos", "estan")
BE_EN = ("am", "are", "is", "are", "are")
# English → target words (one or two).
PREPOSITIONS = [("in", ("en",)), ("with", ("con",)), ("near", ("cerca", "de")), ("for", ("para",)),
                ("without", ("sin",)), ("under", ("debajo", "de")), ("on", ("sobre",))]
ADVERBS = [("today", "hoy"), ("now", "ahora"), ("always", "siempre"), ("here", "aqui"),
           ("quickly", "rapidamente"), ("tomorrow", "manana"), ("again", "otra_vez")]
# English determiner → target forms (m sg, f sg, m pl, f pl); None where it cannot be used.
DETERMINERS = {"the": ("el", "la", "los", "las"), "a": ("un", "una", None, None),
               "my": ("mi", "mi", "mis", "mis"), "this": ("este", "esta", None, None),
               "these": (None, None, "estos", "estas"), "some": (None, None, "unos", "unas")}


def _inflect_adj(base: str, gender: str, plural: bool) -> str:
    if base.endswith("o"):
        return base[:-1] + ("o" if gender == "m" else "a") + ("s" if plural else "")
    if not plural:
        return base
    if base.endswith("z"):
        return base[:-1] + "ces"
    return base + ("s" if base[-1] in "aeiou" else "es")


def _plural_noun(sg: str) -> str:
    return sg + ("s" if sg[-1] in "aeiou" else "es")


def _conjugate(infinitive: str, person: int) -> str:
    return infinitive[:-2] + ENDINGS[infinitive[-2:]][person]


def _gerund(infinitive: str) -> str:
    return infinitive[:-2] + ("ando" if infinitive.endswith("ar") else "iendo")


class _Builder:
    """Collects source words, target words and their links as phrases are added in order."""

    def __init__(self) -> None:
        self.src: list[str] = []
        self.tgt: list[str] = []
        self.sure: set[tuple[int, int]] = set()
        self.possible: set[tuple[int, int]] = set()

    def source(self, *words: str) -> list[int]:
        start = len(self.src)
        self.src.extend(words)
        return list(range(start, len(self.src)))

    def target(self, word: str, sure: tuple[int, ...] = (), possible: tuple[int, ...] = ()) -> None:
        t = len(self.tgt)
        self.tgt.append(word)
        self.sure.update((t, j) for j in sure)
        self.possible.update((t, j) for j in sure + possible)

    def example(self) -> Example:
        return Example(tuple(self.src), tuple(self.tgt), frozenset(self.sure), frozenset(self.possible))


def _noun_phrase(b: _Builder, rng: random.Random, plural: bool) -> None:
    """determiner adj* noun → determiner noun adj* (mirrored), agreeing in gender and number."""
    en_sg, en_pl, es_sg, gender = rng.choice(NOUNS)
    col = ("m", "f").index(gender) + (2 if plural else 0)
    adjs = rng.sample(ADJECTIVES, rng.choice((0, 0, 1, 1, 2)))
    if plural and rng.random() < 0.2:  # bare plural: "apples" → "manzanas"
        *i_adjs, i_noun = b.source(*(a for a, _ in adjs), en_pl)
    else:
        det = rng.choice([d for d, forms in DETERMINERS.items() if forms[col] is not None])
        i_det, *i_adjs, i_noun = b.source(det, *(a for a, _ in adjs), en_pl if plural else en_sg)
        b.target(DETERMINERS[det][col], sure=(i_det,))
    b.target(_plural_noun(es_sg) if plural else es_sg, sure=(i_noun,))
    for (_, es), i in reversed(list(zip(adjs, i_adjs, strict=True))):
        b.target(_inflect_adj(es, gender, plural), sure=(i,))


def _clause(b: _Builder, rng: random.Random) -> None:
    """subject (pronoun dropped or noun phrase) + verb (simple / progressive, ± not) + object."""
    # 1) Subject.
    subject_idx: tuple[int, ...] = ()
    if rng.random() < 0.5:
        pronoun, person = rng.choice(PRONOUNS)
        subject_idx = tuple(b.source(pronoun))  # no target word: the verb ending carries it
    else:
        plural = rng.random() < 0.4
        person = 4 if plural else 2
        _noun_phrase(b, rng, plural)
    # 2) Verb: simple present or progressive, optionally negated.
    base, third, ing, inf = rng.choice(VERBS)
    negated, progressive = rng.random() < 0.25, rng.random() < 0.4
    if progressive:
        idx = b.source(BE_EN[person], *(("not",) if negated else ()), ing)
        if negated:
            b.target("no", sure=(idx[1],))
        b.target(ESTAR[person], sure=(idx[0],), possible=subject_idx)
        b.target(_gerund(inf), sure=(idx[-1],))
    elif negated:
        aux = "does" if person == 2 else "do"
        i_aux, i_not, i_verb = b.source(aux, "not", base)
        b.target("no", sure=(i_not,), possible=(i_aux,))
        b.target(_conjugate(inf, person), sure=(i_verb,), possible=subject_idx + (i_aux,))
    else:
        (i_verb,) = b.source(third if person == 2 else base)
        b.target(_conjugate(inf, person), sure=(i_verb,), possible=subject_idx)
    # 3) Object, then optional prepositional phrase and adverb.
    _noun_phrase(b, rng, rng.random() < 0.3)
    if rng.random() < 0.5:
        en, es_words = rng.choice(PREPOSITIONS)
        (i_prep,) = b.source(en)
        for w in es_words:
            b.target(w, sure=(i_prep,))
        _noun_phrase(b, rng, rng.random() < 0.3)
    if rng.random() < 0.3:
        en, es = rng.choice(ADVERBS)
        b.target(es, sure=tuple(b.source(en)))


def sentence(rng: random.Random) -> Example:
    """One sentence: a clause, or two joined by "and"/"but"."""
    b = _Builder()
    _clause(b, rng)
    if rng.random() < 0.35:
        en, es = rng.choice((("and", "y"), ("but", "pero")))
        b.target(es, sure=tuple(b.source(en)))
        _clause(b, rng)
    return b.example()


def generate(n: int, seed: int, split: str | None = None) -> list[Example]:
    """``n`` distinct sentences from a seeded generator, optionally only those of one split."""
    return distinct(sentence, n, seed, split, " ")


def tokenize(text: str) -> tuple[str, ...]:
    """User text → model words: lower-cased, sentence punctuation dropped, split on spaces."""
    cleaned = "".join(" " if ch in ".,!?;:\"()" else ch for ch in text.lower())
    return tuple(cleaned.split())


MAX_SOURCE_WORDS = 40  # the page refuses longer input
