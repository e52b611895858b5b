"""The captioner's own views: where each word looks, and what the model weighed at each object word."""

from __future__ import annotations

import numpy as np
import streamlit as st

from families.captioner.runner import CaptionRun, Weighed, weighed
from views.inputs import md_escape
from viz.charts import token_bars
from viz.heatmaps import matrix_heatmap
from viz.lines import attention_overlay

DOUBT = 0.1  # another word of the same kind above this probability: the model was in two minds


def _rivals(w: Weighed) -> str:
    """'triangle 41% · square 55% · circle 4%' with the caption's word in bold."""
    return " · ".join(
        f"**{md_escape(word)}\u00a0{p:.0%}**" if word == w.word else f"{md_escape(word)}\u00a0{p:.0%}"
        for word, p in w.rivals
    )


def weighed_words(run: CaptionRun) -> None:
    """Under the caption: for each word that names an object, the model's probability at that step
    for every word of its kind (`families.captioner.runner.weighed`), so a misreading shows its doubt."""
    words = weighed(run)
    if not words:
        return
    doubtful = [w for w in words if w.doubt > DOUBT]
    lines = [f"- word {w.step + 1}, **{md_escape(w.word)}**: {_rivals(w)}" for w in words]
    label = f"What the model weighed at each object word ({len(doubtful)} of {len(words)} in two minds)"
    with st.expander(label, expanded=bool(doubtful)):
        st.markdown(
            "At each word that names an object, the probability the model's softmax gave every word of "
            f"its kind (shapes, or digits) at that step; in two minds: another word over {DOUBT:.0%}.\n"
            + "\n".join(lines)
        )


@st.fragment
def word_view(run: CaptionRun, seen: np.ndarray, opacity: float) -> None:
    """The attention of one word over the image, its exact 8×8 grid, what the model weighed there,
    and the gate β of every word."""
    overlay_column, grid_column = st.columns([3, 2])
    with overlay_column:
        word = st.select_slider(
            "Word",
            options=list(range(len(run.output))),
            key="cap_word",
            format_func=lambda t: f"{t + 1}: {run.output[t]}",
        )
        overlay = attention_overlay(seen, run.alphas, run.output, active=word, opacity=opacity)
        st.plotly_chart(overlay, key="cap_overlay")
        for w in weighed(run, at=word):
            st.caption(f"At “{md_escape(w.word)}” the model weighed: {_rivals(w)}")
    with grid_column:
        grid = matrix_heatmap(
            run.alphas[word],
            title=f"α for “{run.output[word]}” (exact, 8×8)",
            x_title="column",
            y_title="row",
            value_name="α",
            diverging=False,
        )
        st.plotly_chart(grid, key="cap_grid")
        st.plotly_chart(token_bars(run.output, run.betas, name="β", title="Gate β per word"), key="cap_beta")
