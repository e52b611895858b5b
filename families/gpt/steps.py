"""The GPT's step of the learner's path: a decoder-only model and its induction head, found on a random
sequence repeated twice, from the page's own served run."""

from __future__ import annotations

import numpy as np

from analysis import lm
from analysis.family import Family, Query, Quiz, Step
from families.gpt import runner as gpt
from models.attention import Interventions
from views.attention import model_view
from views.serving import cached, loaded_model


def measure(family: Family, query: Query) -> lm.LMRun:
    """The page's run of its input: a random sequence twice (``gpt_input=random``, its ``gpt_seed``) or
    the typed prompt (the page's default when neither is given)."""
    loaded = loaded_model(family, gpt.DEFAULT)
    if query.get("gpt_input", "prompt") == "random":
        prompt = gpt.random_repeat(gpt.REPEAT, int(float(query.get("gpt_seed", "0"))), loaded.model.cfg.vocab)
    else:
        prompt = gpt.prepare(loaded, query.get("gpt_prompt", gpt.EXAMPLE))
    return cached(family, "run")(gpt.DEFAULT, prompt.ids, Interventions())


def heads(run: lm.LMRun) -> list[str]:
    n_layers, n_heads = run.head_scores["induction"].shape
    return [f"L{i} H{h}" for i in range(n_layers) for h in range(n_heads)]


def view(run: lm.LMRun, key: str) -> None:
    n_layers, n_heads = run.head_scores["induction"].shape
    model_view(run.maps["self"], key, layer=n_layers - 1, head=n_heads - 1)


def quiz(run: lm.LMRun) -> Quiz:
    scores = run.head_scores["induction"]  # (L, h) on this input
    ranked = np.argsort(-np.nan_to_num(scores.ravel(), nan=-1.0), kind="stable")
    best, second = (np.unravel_index(int(k), scores.shape) for k in ranked[:2])
    names = heads(run)
    feedback = (
        f"{names[ranked[0]]}: from each token that occurred before, {scores[best]:.2f} of its attention "
        f"lands on the token that followed the earlier occurrence (its map: a stripe just below a diagonal); "
        f"the next best, {names[ranked[1]]}, {scores[second]:.2f}. Where a token repeats, such a head finds "
        "its earlier occurrence and copies what came next: in-context copying."
    )
    question = ("Which head copies what followed an earlier occurrence of the current token (an induction "
                "head)?")  # fmt: skip
    return Quiz(question, names[ranked[0]], feedback, tuple(names))


STEPS = (
    Step(
        id="induction", idea="GPT-style decoders and induction heads",
        explain=(
            "A GPT is a decoder alone: one stack of causal self-attention that reads text and guesses the "
            "next token at every position. Ours was trained here on Python's standard library. Feed it "
            f"{gpt.REPEAT} random tokens and then the same {gpt.REPEAT} again: nothing predicts the first "
            "copy, but a model can predict the second by finding where the current token appeared before and "
            "copying what came next. Heads that do that are induction heads."
        ),
        look_for="in the second half of the sequence, a head whose map shows a stripe just below a "
                 "diagonal, one copy's length back.",
        query={"gpt_input": "random", "gpt_seed": "7", "gpt_view": "Induction"},
        contrast={"gpt_input": "prompt", "gpt_prompt": "import os\nimport sys\nimport os\n"},
        measure=measure, view=view, quiz=quiz,
        deeper="the loss on each copy, and with the induction heads switched off",
        more={"Head roles": {"gpt_input": "random", "gpt_seed": "7", "gpt_view": "Head roles"},
              "Circuits": {"gpt_view": "Circuits"}},
    ),
)  # fmt: skip
