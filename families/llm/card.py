"""A card on demand ("Measure this model"): the measurements of SmolLM2's card (training/llm_card.py), for
whichever model the page runs, computed when a visitor asks, shown and offered as a download — never
written on the server.

- Held-out English perplexity: text every machine has (`tasks.probes.english`: Python's help texts, every
  tenth topic), in windows of `WINDOW` tokens — each starting with the token the tokenizer writes first
  (its BOS) where it writes one — against a unigram baseline counted on the other topics
  (`training.llm_card.unigram_perplexity`, add-1 over the whole vocabulary), on the same predicted tokens.
- Per head, the induction, previous-token and first-token scores on random tokens repeated
  (`training.evaluate.repeat_probe`, the code of every card here): `PROBE` sequences of a first token (its
  BOS, else its first control token) and n ordinary tokens drawn uniformly, then the same n again; the loss on
  each copy, and on the second with the top induction heads switched off.

Its cost is said before it runs (`plan`: one window's forward timed on this machine, scaled by the tokens
the card reads); the measurement reports its progress forward by forward.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from analysis.family import Served
from analysis.lm import LM
from models.decoder_config import describe
from tasks import probes

WINDOW = 128  # tokens per perplexity window (fewer where the model's context is shorter)
WINDOWS = 16  # windows of the held-out text, at most
PROBE = dict(sequences=8, length=30, seed=20261203)  # a first token, 30 random tokens, the same 30 again
Progress = Callable[[int, int], None]  # (forwards done, forwards in all)


def _first(loaded: LM) -> list[int]:
    """The ids the tokenizer writes before any text (its BOS), or none."""
    return loaded.vocabulary.text_tokenizer.encode("").ids


def english_windows(loaded: LM, split: str = "test", limit: int = WINDOWS) -> np.ndarray:
    """(N, W) windows of `tasks.probes.english` ``split``, each the tokenizer's first tokens (its BOS) then
    consecutive text tokens; W = `WINDOW` or the model's context if shorter; at most ``limit``."""
    first = _first(loaded)
    width = min(WINDOW, loaded.model.cfg.max_len)
    text = loaded.vocabulary.text_tokenizer.encode(probes.english(split), add_special_tokens=False).ids
    size = width - len(first)
    n = min(limit, len(text) // size)
    rows = np.array(text[: n * size], dtype=np.int64).reshape(n, size)
    return np.concatenate([np.tile(np.array(first, dtype=np.int64), (n, 1)), rows], 1)  # (N, W)


def probe_ids(loaded: LM) -> np.ndarray:
    """(B, 1 + 2n) `PROBE` sequences: the first token (BOS, else the first control token, else an ordinary
    one), n ordinary tokens drawn uniformly (no control token), the same n again."""
    vocab = loaded.model.cfg.vocab
    specials = sorted(i for i in loaded.vocabulary.specials if i < vocab)
    ordinary = np.setdiff1d(np.arange(vocab), specials)
    rng = np.random.default_rng(PROBE["seed"])
    first = (_first(loaded) or specials or [int(ordinary[0])])[0]
    drawn = rng.choice(ordinary, size=(PROBE["sequences"], PROBE["length"]))
    return np.concatenate([np.full((PROBE["sequences"], 1), first), drawn, drawn], axis=1).astype(np.int64)


@dataclass(frozen=True)
class Plan:
    """What measuring costs, said before it runs."""

    windows: int  # perplexity windows
    window: int  # tokens each
    probe_tokens: int  # tokens of the probe's sequences (run twice: as is, then top induction heads off)
    parameters: int
    forward_seconds: float  # one window's forward (every position's logits), timed now on this machine

    @property
    def forwards(self) -> int:
        return self.windows + 2  # a forward per window; the probe's batch as is and ablated

    @property
    def tokens(self) -> int:
        return self.windows * self.window + 2 * self.probe_tokens

    @property
    def seconds(self) -> float:
        """The estimate: the timed window's seconds per token × the card's tokens (the MLPs, projections and
        readout, linear in the tokens, dominate at these lengths)."""
        return self.forward_seconds * self.tokens / self.window


def plan(loaded: LM) -> Plan:
    """The card's size, and its first window's forward timed as the card runs it (after a few tokens
    untimed, so that nothing is a first run)."""
    model = loaded.model
    windows = english_windows(loaded)
    x = torch.from_numpy(windows[:1]).to(model.unembedding.device)  # (1, W)
    with torch.inference_mode():
        model(x[:, :8], logits="last")
        start = time.perf_counter()
        model(x)
        seconds = time.perf_counter() - start
    return Plan(windows=len(windows), window=windows.shape[1], probe_tokens=int(probe_ids(loaded).size),
                parameters=sum(p.numel() for p in model.parameters()), forward_seconds=seconds)  # fmt: skip


@torch.inference_mode()
def window_nll(loaded: LM, windows: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """(N,) mean cross-entropy (nats) of tokens 2…W of each window given the tokens before it."""
    model = loaded.model
    out = []
    for i, row in enumerate(windows):
        x = torch.from_numpy(row[None]).to(model.unembedding.device)
        logits, _ = model(x)  # (1, W, V)
        out.append(float(torch.nn.functional.cross_entropy(logits[0, :-1].float(), x[0, 1:])))
        if progress is not None:
            progress(i + 1, len(windows) + 2)
    return np.array(out)


def measure(loaded: LM, *, _progress: Progress | None = None) -> dict:
    """Every measurement (the module's docstring), as plain JSON values."""
    from training.evaluate import in_context_metrics  # the cards' own code, run on request
    from training.llm_card import UNIGRAM_K, unigram_perplexity

    start = time.perf_counter()
    model, cfg = loaded.model, loaded.model.cfg
    test = english_windows(loaded)
    train = loaded.vocabulary.text_tokenizer.encode(probes.english("train"), add_special_tokens=False).ids
    train = np.array([i for i in train if i < cfg.vocab], dtype=np.int64)
    nll = window_nll(loaded, test, _progress)
    ids = probe_ids(loaded)
    with torch.inference_mode():
        in_context = in_context_metrics(model, ids)  # the GPT card's measures, on this model's probe
    if _progress is not None:
        _progress(len(test) + 2, len(test) + 2)
    n_first = len(_first(loaded))
    return {
        "kind": "measured on request (the language-model page's Measure this model)",
        "architecture": {**describe(cfg), "parameters": int(sum(p.numel() for p in model.parameters()))},
        "english": {
            "definition": (
                f"perplexity of tokens 2…{test.shape[1]} of each {test.shape[1]}-token window of Python's "
                "pydoc_data.topics (every tenth topic in sorted order)"
                + (" (each window starts with the tokenizer's BOS)" if n_first else "")
                + f", given the tokens before; the unigram baseline is add-{UNIGRAM_K:g} counts of the other "
                "topics' tokens over the whole vocabulary, on the same predicted tokens"
            ),
            "windows": int(test.shape[0]),
            "tokens": int(test.shape[0] * (test.shape[1] - 1)),
            "sha256": probes.english_digest("test"),
            "perplexity": math.exp(float(nll.mean())),
            "window_nll": [round(float(v), 6) for v in nll],
            "unigram_perplexity": unigram_perplexity(train, test, cfg.vocab),
        },
        "in_context": {
            **in_context,
            "probe": {**in_context["probe"], **PROBE, "first_id": int(ids[0, 0]),
                      "tokens": "uniform over the ids that are not control tokens"},  # fmt: skip
        },
        "threads": torch.get_num_threads(),
        "measuring_seconds": round(time.perf_counter() - start, 2),
    }


SERVED = {
    "card_plan": Served(plan, max_entries=8, spinner="Timing one short forward…"),
    "card": Served(measure, max_entries=8),  # the tab shows a progress bar instead of a spinner
}
