"""Real human-written text for the GPT: the Python standard library's own source, split by file.

The corpus is every ``.py`` file of the running interpreter's standard library (found through
`sysconfig`, so it exists offline on every machine that runs the project), minus the test suites,
the generated codec tables (``encodings/``), the generated help topics (``pydoc_data/``) and the
machine-specific ``_sysconfigdata*``. Each file's split is fixed by a hash of its path inside the
library (`tasks.common.split_of`: 80/10/10), so a file never lands in two splits, whatever Python
version reads it; a file is held out whole, never a window of one.

The tokenizer is a byte-level BPE (Hugging Face `tokenizers`) trained on the training files only
and shipped as ``assets/stdlib.tokenizer.json``: every machine then reads text into the same ids,
whatever its own standard library holds. It is trained here when the file is missing.

Training windows are 128 tokens cut at seeded offsets of the training stream (files joined by
</s>), each read after <s>. A share of them (`REPEAT_SHARE`) carries a span repeated later in the
window — in half of those a span of uniformly random tokens, in the other half a span of the text
itself — so that copying from context (induction heads) forms within a CPU budget.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tasks.common import BOS_ID, EOS_ID, SPECIALS, Vocab, split_of

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TOKENIZER_FILE = Path(__file__).resolve().parent.parent / "assets" / "stdlib.tokenizer.json"
VOCAB_SIZE = 2048  # BPE vocabulary, the 4 specials and the 256 bytes included
WINDOW = 128  # text tokens per training window; the model reads <s> + the first 127 (128 positions)
SKIPPED_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "encodings", "pydoc_data"})
REPEAT_SHARE = 0.5  # training windows with a repeated span (half random tokens, half the text's own)
REPEAT_SPAN = (8, 48)  # a repeated span's length in tokens: [low, high)
FIRST_ID = len(SPECIALS)  # random tokens are drawn from ids FIRST_ID … vocab − 1 (no specials)


def _skipped(relative: Path) -> bool:
    return bool(SKIPPED_DIRS & set(relative.parts[:-1])) or relative.name.startswith("_sysconfigdata")


@functools.cache
def files(split: str) -> tuple[Path, ...]:
    """The split's files, as paths relative to the standard library, sorted."""
    found = (p.relative_to(STDLIB) for p in STDLIB.rglob("*.py"))
    return tuple(sorted(p for p in found if not _skipped(p) and split_of(p.as_posix()) == split))


def read(relative: Path) -> str:
    return (STDLIB / relative).read_text(encoding="utf-8", errors="replace")


def describe(split: str) -> dict:
    """What a split holds (for the model card): file count, characters and a digest of its text, so
    a test can tell whether the local standard library is the one the card was measured on."""
    digest, chars = hashlib.sha256(), 0
    for path in files(split):
        text = read(path)
        digest.update(path.as_posix().encode() + b"\0" + text.encode())
        chars += len(text)
    return {"files": len(files(split)), "characters": chars, "sha256": digest.hexdigest()}


def corpus_card() -> dict:
    """The corpus as the card records it: where it came from and how it was split and tokenized."""
    return {
        "source": f"Python {sys.version.split()[0]} standard library .py files ({STDLIB.name})",
        "skipped": sorted(SKIPPED_DIRS) + ["_sysconfigdata*"],
        "split": "by file: sha256 of the path inside the library, 80/10/10 (tasks.common.split_of)",
        **{s: {**describe(s), "tokens": int(len(stream(s)))} for s in ("train", "val", "test")},
    }


# --- Tokenizer ------------------------------------------------------------------------------------
def train_tokenizer() -> Tokenizer:
    """Byte-level BPE on the training files only (the specials take ids 0–3, as in every vocabulary
    of this project). Specials typed as text ("<s>") are read as text, never as the special."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.encode_special_tokens = True
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((read(p) for p in files("train")), trainer)
    return tok


def load_tokenizer(path: Path = TOKENIZER_FILE) -> Tokenizer:
    """The shipped tokenizer (FileNotFoundError / ValueError when missing or unreadable)."""
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except Exception as err:  # tokenizers raises its own Exception subclass for bad JSON
        raise ValueError(f"{path}: not a tokenizer file ({err})") from err
    tok.encode_special_tokens = True
    return tok


@functools.cache
def tokenizer() -> Tokenizer:
    """The task's tokenizer: the shipped file, or trained here (and saved) when it is missing."""
    if not TOKENIZER_FILE.is_file():
        tok = train_tokenizer()
        TOKENIZER_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKENIZER_FILE.write_text(tok.to_str(pretty=False), encoding="utf-8")
    return load_tokenizer(TOKENIZER_FILE)


def tokens_of(tok: Tokenizer) -> tuple[str, ...]:
    """The tokenizer's vocabulary in id order (the card's ``tgt_vocab``)."""
    vocab = tok.get_vocab()
    return tuple(sorted(vocab, key=vocab.get))


def vocabularies(_windows) -> tuple[Vocab, Vocab]:
    """No source vocabulary (a GPT reads one stream); the target is the tokenizer's, in id order."""
    return Vocab(()), Vocab(tokens_of(tokenizer()))


def tokenizer_digest(path: Path = TOKENIZER_FILE) -> str:
    return hashlib.sha256(json.dumps(json.loads(path.read_text()), sort_keys=True).encode()).hexdigest()


# --- Token streams and windows --------------------------------------------------------------------
@functools.cache
def stream(split: str) -> np.ndarray:
    """Every file of the split tokenized and joined, each followed by </s>: (N,) int64."""
    tok = tokenizer()
    texts = [read(p) for p in files(split)]
    parts = [np.array([*e.ids, EOS_ID], dtype=np.int64) for e in tok.encode_batch(texts)]
    return np.concatenate(parts)


@dataclass(frozen=True)
class Window:
    """One sequence the model reads: <s> then `WINDOW` tokens, (WINDOW + 1,) ids; and its split."""

    ids: np.ndarray
    split: str


def random_tokens(rng: np.random.Generator, shape, vocab: int = VOCAB_SIZE) -> np.ndarray:
    """Uniformly random non-special token ids."""
    return rng.integers(FIRST_ID, vocab, size=shape)


def _add_repeats(rows: np.ndarray, rng: np.random.Generator) -> None:
    """In place: a `REPEAT_SHARE` of the rows (B, 1 + WINDOW) get a span copied later in the row."""
    for row in np.flatnonzero(rng.random(len(rows)) < REPEAT_SHARE):
        n = int(rng.integers(*REPEAT_SPAN))
        a = int(rng.integers(1, WINDOW + 2 - 2 * n))  # first copy at a … a+n−1 (after <s>)
        b = int(rng.integers(a + n, WINDOW + 2 - n))  # second copy at b … b+n−1, after the first
        span = random_tokens(rng, n) if rng.random() < 0.5 else rows[row, a : a + n].copy()
        rows[row, a : a + n] = span
        rows[row, b : b + n] = span


def generate(n: int, seed: int, split: str) -> list[Window]:
    """``n`` windows of ``split``. Training: seeded random offsets of the stream, with repeated
    spans in a share of them. Validation and test: the stream cut into consecutive windows that do
    not overlap, in a seeded order (the first n of a fixed list), text only."""
    tokens, rng = stream(split), np.random.default_rng(seed)
    if split == "train":
        starts = rng.integers(0, len(tokens) - WINDOW, size=n)
    else:
        starts = np.arange(0, len(tokens) - WINDOW + 1, WINDOW)
        starts = starts[rng.permutation(len(starts))][:n]
    rows = np.empty((len(starts), WINDOW + 1), dtype=np.int64)
    rows[:, 0] = BOS_ID
    rows[:, 1:] = tokens[starts[:, None] + np.arange(WINDOW)]
    if split == "train":
        _add_repeats(rows, rng)
    return [Window(row, split) for row in rows]


def batch(windows, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, WINDOW) = <s> t_1 … t_{W−1} and targets (B, WINDOW) = t_1 … t_W."""
    ids = torch.from_numpy(np.stack([w.ids for w in windows])).to(device)
    return ids[:, :-1], ids[:, 1:]


def repeated_random(n: int, length: int, seed: int, vocab: int = VOCAB_SIZE) -> np.ndarray:
    """(n, 1 + 2·length) ids: <s>, then ``length`` uniformly random tokens, then the same again —
    the sequences the induction and previous-token scores are measured on."""
    rng = np.random.default_rng(seed)
    first = random_tokens(rng, (n, length), vocab)
    return np.concatenate([np.full((n, 1), BOS_ID), first, first], axis=1)


@functools.cache
def bigram_counts(vocab: int = VOCAB_SIZE) -> np.ndarray:
    """(V, V) counts of each consecutive token pair of the training stream. The <s> row holds the
    unigram counts: a window starts anywhere, so what follows <s> is any token."""
    tokens = stream("train")
    counts = np.bincount(tokens[:-1] * vocab + tokens[1:], minlength=vocab * vocab).reshape(vocab, vocab)
    counts[BOS_ID] = np.bincount(tokens, minlength=vocab)
    return counts.astype(np.float64)
