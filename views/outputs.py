"""A model's output as the pages show it: the text as the model wrote it, how sure the model was of
each token, and a warning when the task says the output is not a valid answer (never a fix)."""

from __future__ import annotations

import html

import numpy as np
import streamlit as st

from analysis.protocol import AttentionRun
from tasks import Task
from views.inputs import md_escape

UNSURE = 0.5  # tokens the model gave less than this probability are marked
TEXT_BLOCK = "model-text"  # the class of a `text_block`'s <pre>: what the browser tests and the soak read
_TEXT_STYLE = (  # st.code's look (its font, size, padding, corners) on a grey that suits either theme
    'font-family: "Source Code Pro", monospace; font-size: 0.875rem; line-height: 1.6; padding: 0.75rem '
    "1rem; margin: 0; border-radius: 0.5rem; background: rgba(151, 166, 195, 0.15)"
)
_WRAP = {True: "white-space: pre-wrap; overflow-wrap: anywhere", False: "white-space: pre; overflow-x: auto"}


def text_block(text: str, where=st, *, wrap: bool = False) -> None:
    """``text`` exactly as written, in a monospace block (spaces and newlines kept, nothing parsed) in
    ``where`` (the page, a column, an `st.empty`); long lines scroll, or ``wrap``. Not `st.code`: even with
    no language to colour, it loads a 1.5 MB syntax highlighter before it paints — 0.5–0.7 s of the
    browser's main thread, about 1 s of each load of the transformer and captioning pages (README,
    Performance)."""
    style = f"{_TEXT_STYLE}; {_WRAP[wrap]}"
    where.html(f'<pre class="{TEXT_BLOCK}" style=\'{style}\'>{html.escape(text)}</pre>')


def model_output(run: AttentionRun, *, empty: str, problem: str | None = None) -> None:
    """``run.text`` (the output joined; ``empty`` when there is none) in a `text_block`; under it every
    token with the probability the model gave it (``run.token_log_probs``, the model's own numbers),
    unsure ones in bold; and ``problem`` (e.g. "not a calendar date") as a warning with the output's
    probability. ``run``: a run that writes text (seq2seq, transformer, captioner)."""
    text_block(run.text or empty)
    probs = np.exp(np.asarray(run.token_log_probs, dtype=np.float64))  # (T,)
    shown = [
        f"**{md_escape(tok)}\u00a0{p:.0%}**" if p < UNSURE else f"{md_escape(tok)}\u00a0{p:.0%}"
        for tok, p in zip(run.output, probs, strict=True)
    ]
    unsure = int((probs < UNSURE).sum())
    st.caption(
        f"How sure the model was of each token (bold: under {UNSURE:.0%}; {unsure} of {len(probs)}): "
        + " · ".join(shown)
    )
    if problem is not None:
        st.warning(
            f"{md_escape(problem)}. The model gave this output probability {probs.prod():.1%}; "
            "it is shown as the model wrote it."
        )


def task_output(run: AttentionRun, task: Task) -> None:
    """A task page's "Output" block (seq2seq, transformer): the heading, then `model_output` with the
    task's own check of the text (e.g. "not a calendar date")."""
    st.subheader("Output")
    model_output(run, empty="(empty output)", problem=task.output_problem(run.text))


@st.fragment
def next_tokens(run, top_k: int, *, key: str) -> None:
    """A decoder's guesses at every position of a prompt under teacher forcing: the token there, the one
    after it with the probability the model gave it, and the model's top ``k`` (a slider up to
    ``top_k``). ``run``: a run with ``inputs``, ``output``, ``token_log_probs``, ``top_tokens`` and
    ``top_probs`` (the GPT's, SmolLM2's)."""
    k = st.slider("Candidates per position", 1, top_k, min(5, top_k), key=key)
    probs, n = np.exp(run.token_log_probs), len(run.output)
    rows = [
        {"position": t, "token": run.inputs[t], "next token": run.output[t] if t < n else "(next)",
         "p(next token)": float(probs[t]) if t < n else None,
         **{f"#{r + 1}": f"{run.top_tokens[t][r]}  {run.top_probs[t, r]:.1%}" for r in range(k)}}
        for t in range(len(run.inputs))
    ]  # fmt: skip
    st.markdown("At each position, the model's guesses for the token after it, given what came before:")
    st.dataframe(rows, hide_index=True)
