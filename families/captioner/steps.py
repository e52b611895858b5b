"""The captioner's step of the learner's path: where an object word looks in the image, and whether the
caption survives when those regions are hidden from the decoder (the page's own served captions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from analysis.family import Family, Query, Quiz, Step
from families.captioner.runner import DEFAULT, OBJECT_WORDS, SAMPLES, CaptionRun
from tasks.images import model_input
from views.inputs import md_escape
from views.outputs import model_output
from views.serving import cached
from viz.lines import attention_overlay

HALF = 0.5  # the regions hidden: the fewest that hold this share of the word's attention
PICTURE = "01-a-small-red-circle-a-small-blue-triangle-and-a-big-red-square"  # a gallery sample's stem
SHOWN = {"source": "gallery", "sample": PICTURE}  # the page's parameters that open it on that picture


@dataclass(frozen=True)
class Hidden:
    seen: np.ndarray  # (64, 64, 3) the picture as the model reads it
    before: CaptionRun  # greedy, nothing hidden
    word: int  # the step of the first word that names an object
    regions: tuple[int, ...]  # the regions hidden (row-major)
    after: CaptionRun  # greedy, those regions hidden from the decoder


def first_object_word(run: CaptionRun) -> int:
    words = {w for kind in OBJECT_WORDS for w in kind}
    found = [t for t, w in enumerate(run.output) if w in words]
    if not found:
        raise ValueError(f"the caption {run.text!r} names no object: pick a preset with a shape or a digit.")
    return found[0]


def measure(family: Family, query: Query) -> Hidden:
    """A gallery picture (``sample``, by its file's stem as the page's slider names it), captioned as the
    page does; then again with the regions its first object word looked at most hidden."""
    stem = query.get("sample", SAMPLES[0].stem if SAMPLES else "")
    found = [p for p in SAMPLES if p.stem == stem]
    if not found:
        raise ValueError(f"no gallery sample {stem!r} in assets/samples/: the step needs the shipped ones.")
    path = found[0]
    seen, _ = model_input(Image.open(path).convert("RGB"))
    captions = cached(family, "captions")
    (before,) = captions(DEFAULT, seen.tobytes(), seen.shape, 1)
    word = first_object_word(before)
    alpha = before.alphas[word].ravel()
    order = np.argsort(-alpha, kind="stable")
    regions = tuple(sorted(int(r) for r in order[: int(np.searchsorted(np.cumsum(alpha[order]), HALF)) + 1]))
    (after,) = captions(DEFAULT, seen.tobytes(), seen.shape, 1, regions)
    return Hidden(seen, before, word, regions, after)


def where(result: Hidden) -> str:
    grid = result.before.alphas.shape[-1]
    return ", ".join(f"row {r // grid} column {r % grid}" for r in result.regions)


def view(result: Hidden, key: str) -> None:
    run = result.before
    st.plotly_chart(attention_overlay(result.seen, run.alphas, run.output, active=result.word, side=320),
                    key=f"{key}_overlay")  # fmt: skip
    model_output(run, empty="(empty caption)")
    word = md_escape(run.output[result.word])
    if st.toggle(f"Hide the {len(result.regions)} regions ‘{word}’ looks at most ({where(result)})",
                 key=f"{key}_hide"):  # fmt: skip
        st.markdown("**Caption with those regions hidden** (their weight is exactly 0 at every word):")
        model_output(result.after, empty="(empty caption)")


def quiz(result: Hidden) -> Quiz:
    before, after = result.before, result.after
    word = md_escape(before.output[result.word])
    held = float(before.alphas[result.word].ravel()[list(result.regions)].sum())
    same = after.text == before.text
    options = ("the caption stays the same", "the caption changes")
    if same:
        what = (f"the caption still reads ‘{md_escape(after.text)}’: the decoder finds the object through "
                "other regions and its own state — attention shows where it looked, not what it could not do "
                "without")  # fmt: skip
    else:
        what = (f"the caption reads ‘{md_escape(after.text)}’ instead of ‘{md_escape(before.text)}’: those "
                "regions carried the word")  # fmt: skip
    feedback = (f"‘{word}’ put {held:.2f} of its attention on {len(result.regions)} regions "
                f"({where(result)}). With them hidden, {what}.")  # fmt: skip
    question = f"Hide the regions the word ‘{word}’ looks at most. Does the caption change?"
    return Quiz(question, options[0] if same else options[1], feedback, options)


STEPS = (
    Step(
        id="hide-regions", idea="Captioning with attention",
        explain=(
            "Show, Attend and Tell: a CNN turns the picture into an 8 × 8 grid of region features and an "
            "LSTM writes the caption, attending over the 64 regions at every word. The overlay is where "
            "one word looked. Is that where the word came from? Hide those regions (their attention weight "
            "forced to 0) and caption again."
        ),
        look_for="where the object word's attention sits on the picture, and the caption once it is hidden.",
        query={**SHOWN, "cap_view": "Hide regions"},
        contrast={"source": "gallery", "sample": "05-the-digits-9-8"},
        measure=measure, view=view, quiz=quiz,
        deeper="hide any regions you like, with the coverage before and after",
        more={"Where each word looks": {**SHOWN, "cap_view": "Where each word looks"},
              "Draw your own": {"source": "draw"}},
    ),
)  # fmt: skip
