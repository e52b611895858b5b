"""GPT family runner: our GPT through the one decoder-LM runner (`analysis.lm`), and what only it has.

A run is teacher forcing on the prompt, <s> first: position t reads <s> and the prompt up to t, and its
distribution is over the token after it (`analysis.lm.run`, every position's distribution kept: the
vocabulary is 2,048 tokens). What is the GPT's own: its checkpoint and tokenizer, the repeated random
sequence that shows induction, the head roles its card measured, and raw vs projected on the rows its
smeared keys read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from analysis import lm
from analysis import projections as diagonal
from analysis.family import Served
from analysis.lm import LM, Prompt
from analysis.projections import RawVsProjected, raw_vs_projected
from analysis.protocol import to_numpy
from models.attention import NO_INTERVENTION, Interventions
from models.checkpoints import ASSETS, CheckpointError, load_checkpoint, retrain_fix, write_entry
from models.gpt import GPT, GPTConfig
from models.sampling import Sampling
from tasks import stdlib
from tasks.common import BOS_ID, SPECIALS

DEFAULT = "gpt-stdlib"
ROLE_MIN = 0.3  # a head's strongest measured pattern names its role from here …
WEAK_MIN = 0.1  # … and, marked "(weak)", from here (uniform attention scores about 0.04 on the probe)
REPEAT = 40  # random tokens per copy in the page's "repeat a random sequence"
ROLES = lm.ROLES
EXAMPLE = '''def add(self, item):
    """Add an item."""
    self.items.append(item)

def remove(self, item):
    """Remove an item."""
    self.items.remove(item)
'''
EMPTY = "Type a prompt — some Python, for example: “def add(self, item):”."


def load(name: str = DEFAULT, folder: Path = ASSETS) -> LM:
    """A ready GPT with its card and its tokenizer: the file the card names, beside the weights (else
    the task's shipped one, for a checkpoint trained into another folder), holding the card's
    vocabulary. Raises `CheckpointError` naming the file and the fix for anything missing or wrong."""
    model, card, _, vocab = load_checkpoint(name, GPT, GPTConfig, folder)
    path = folder / card.get("tokenizer", {}).get("file", stdlib.TOKENIZER_FILE.name)
    path = path if path.is_file() or folder == ASSETS else stdlib.TOKENIZER_FILE
    fix = retrain_fix(name, folder)
    try:
        tokenizer = stdlib.load_tokenizer(path)
    except FileNotFoundError as err:
        raise CheckpointError(path, "the tokenizer file is missing", fix) from err
    except ValueError as err:
        raise CheckpointError(path, "not a readable tokenizer file", fix) from err
    if stdlib.tokens_of(tokenizer) != vocab.tokens:
        raise CheckpointError(path, "its vocabulary is not the one the model card lists", fix)
    vocabulary = lm.Vocabulary.of(tokenizer, specials=frozenset(range(len(SPECIALS))),
                                  window=model.cfg.max_len, empty=EMPTY, bos=BOS_ID)  # fmt: skip
    return LM(model, vocabulary, card, slides=True)


def prepare(loaded: LM, text: str) -> Prompt:
    """User text → <s> and at most context − 1 tokens; raises `InputError` with the message to show."""
    return lm.prepare(loaded, text)


def random_repeat(length: int, seed: int, vocab: int) -> Prompt:
    """<s>, ``length`` uniformly random tokens, the same again (the card's induction probe)."""
    return Prompt(ids=tuple(int(i) for i in stdlib.repeated_random(1, length, seed, vocab)[0]))


def run(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION) -> lm.LMRun:
    """Teacher forcing on ``prompt`` under ``iv``: every layer's maps, every position's distribution, the
    head roles measured on it."""
    return lm.run(loaded, prompt, iv, every_position=True, roles=True)


X_IS = (
    "LN(residual stream), the rows W_Q and W_V read (the keys the model scores are these rows smeared with "
    "the row before: the raw map uses X itself)"
)


def projections(loaded: LM, prompt: Prompt, iv: Interventions = NO_INTERVENTION) -> list[RawVsProjected]:
    """Per layer, softmax(X Xᵀ) on the rows its W_Q and W_V read (LN of the stream; the keys the model
    scores are those rows smeared with the previous one), under the same causal mask, beside the
    learned heads."""
    model = loaded.model
    device = next(model.parameters()).device
    ids = torch.tensor([prompt.ids], device=device)  # (1, T)
    with torch.inference_mode():
        _, trace = model(ids, iv=iv, return_trace=True, capture="weights")
        mask = to_numpy(model.attention_mask(len(prompt.ids), iv, device)[0, 0]).astype(bool)  # (T, T)
    tokens = tuple(loaded.label(i) for i in prompt.ids)
    return [
        raw_vs_projected(
            tokens,
            to_numpy(t.x_query[0]),
            to_numpy(t.heads.weights[0]),
            mask,
            x_is=X_IS,
        )
        for t in trace.layers
    ]


def head_roles(card: dict) -> dict[tuple[int, int], tuple[str, float]]:
    """(layer, head) → (role, score) from the card's measured per-head tables (random repeated
    sequences): the strongest of previous-token, induction and first-token sink, as it is from
    `ROLE_MIN`, "(weak)" from `WEAK_MIN`, else "—" (diffuse), with that score."""
    tables = {name: np.asarray(card["test"][f"{name}_scores"]) for name in ROLES}
    roles = {}
    for (layer, head), _ in np.ndenumerate(tables["induction"]):
        name = max(ROLES, key=lambda n: tables[n][layer, head])
        score = float(tables[name][layer, head])
        role = ROLES[name] if score >= ROLE_MIN else f"{ROLES[name]} (weak)" if score >= WEAK_MIN else "—"
        roles[(layer, head)] = (role, score)
    return roles


def example() -> lm.LMRun:
    """The default checkpoint on the default prompt (tests and warm-up)."""
    loaded = load()
    return run(loaded, prepare(loaded, EXAMPLE))


# --- What the app serves cached (`views.serving.cached`): the `LM` first ----------------------------
def _served_run(loaded: LM, ids: tuple[int, ...], iv: Interventions) -> lm.LMRun:
    return run(loaded, Prompt(ids), iv)


def _served_sample(loaded: LM, ids: tuple[int, ...], iv: Interventions, new: int,
                   sampling: Sampling) -> lm.Sample:  # fmt: skip
    return lm.sample(loaded, Prompt(ids), iv, new_tokens=new, sampling=sampling)


LOAD = Served(load, spinner="Loading the GPT…")
SERVED = {
    "run": Served(_served_run, max_entries=64),
    "sample": Served(_served_sample, max_entries=32, spinner="Sampling…"),
}


def measure_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The GPT's card: its layers on ``n`` held-out windows of the test files (every position of each)."""
    loaded = load(DEFAULT, folder)
    windows = stdlib.generate(n, loaded.card["test_seed"], "test")
    prompts = [Prompt(tuple(int(i) for i in w.ids[: loaded.model.cfg.max_len])) for w in windows]
    entry = {
        "self": diagonal.card_entry(
            [projections(loaded, p) for p in prompts],
            f"{n} windows of {loaded.model.cfg.max_len} tokens from the held-out test files",
        )
    }
    return write_entry(DEFAULT, diagonal.CARD_KEY, entry, folder)
