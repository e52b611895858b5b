"""A step's question on the start page: asked, graded against the live model's numbers (the `Quiz`'s key,
computed from the run), and answered with the numbers that decide it. Names no family."""

from __future__ import annotations

import streamlit as st

from analysis.family import Quiz
from views.inputs import md_escape

CHOICES_AS_RADIO = 6  # more options than this: a select box (a radio of 26 positions is a wall)


def ask(quiz: Quiz, key: str) -> bool | None:
    """The question, an answer widget and a button: whether the answer is right when the button was
    pressed on this run, else None (nothing graded now)."""
    st.markdown(f"**Question.** {quiz.question}")
    if len(quiz.options) > CHOICES_AS_RADIO:  # a select box shows its options as plain text
        given = st.selectbox("Your answer", quiz.options, index=None, key=f"{key}_answer")
    elif quiz.options:  # a radio's labels are Markdown: the options (tokens) are shown escaped
        given = st.radio("Your answer", quiz.options, index=None, format_func=md_escape, key=f"{key}_answer")
    else:
        given = st.number_input("Your answer (a number)", value=None, step=0.01, format="%.3f",
                                key=f"{key}_answer")  # fmt: skip
    if not st.button("Check my answer", key=f"{key}_check", type="primary"):
        return None
    if given is None:
        st.info("Pick or type an answer first.")
        return None
    return quiz.grade(given)


def verdict(quiz: Quiz, correct: bool) -> None:
    """What the last check said: right or not, and in both cases the numbers that decide it."""
    if correct:
        st.success(f"**Correct.** {quiz.feedback}")
    else:
        st.error(f"**Not quite.** {quiz.feedback}")
