"""A model's output as the pages show it: the text as the model wrote it, how sure the model was of
each token, and a warning when the task says the output is not a valid answer (never a fix)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.protocol import AttentionRun
from tasks import Task
from views.inputs import md_escape

UNSURE = 0.5  # tokens the model gave less than this probability are marked


def model_output(run: AttentionRun, *, empty: str, problem: str | None = None) -> None:
    """``run.text`` (the output joined; ``empty`` when there is none) in a code block; under it every
    token with the probability the model gave it (``run.token_log_probs``, the model's own numbers),
    unsure ones in bold; and ``problem`` (e.g. "not a calendar date") as a warning with the output's
    probability. ``run``: a run that writes text (seq2seq, transformer, captioner)."""
    st.code(run.text or empty, language=None)
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
