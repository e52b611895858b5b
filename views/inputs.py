"""Input widgets and safe text shared by the pages (URL-bound, validated, escaped)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import streamlit as st

from tasks import TASKS, InputError, Prepared, Task, prepare
from tasks.common import Example, Vocab
from views.serving import held_out_examples

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")
MAX_TEXT = 5000  # characters a text box takes (and the URL carries)


def md_escape(text: str) -> str:
    """User text inside a Markdown string: every Markdown/HTML character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def quoted(tokens) -> str:
    """Tokens as a readable, escaped list for messages: ‘a’, ‘b’."""
    return ", ".join(f"‘{md_escape(t)}’" for t in tokens)


def token_key(prefix: str, tokens) -> str:
    """A widget key tied to a token sequence: a picker of positions resets when the tokens change
    (position 3 of another sentence is another token)."""
    return f"{prefix}_{hashlib.sha1(repr(tuple(tokens)).encode()).hexdigest()[:10]}"


def whole_number_input(column, label: str, low: int, high: int, *, key: str) -> int:
    """A whole-number box bound to the URL parameter ``key``. Streamlit 1.67's integer box lets an
    infinite URL value (``1e309``, ``inf``) reach ``int()`` and raise while seeding; its float box
    drops non-finite and out-of-range values like any other junk. So the box holds a float shown
    without decimals, and the page gets it as an int."""
    value = column.number_input(
        label, float(low), float(high), step=1.0, format="%.0f", key=key, bind="query-params"
    )
    return int(value)


def _new_task() -> None:
    """A new task starts from its first example and its own sample text."""
    st.session_state["example"] = 0
    st.session_state["text"] = TASKS[st.session_state["task"]].placeholder
    st.session_state["ref"] = ""


def task_select(column) -> Task:
    """The task picker (URL parameter ``task``)."""
    name = column.selectbox(
        "Task",
        list(TASKS),
        key="task",
        bind="query-params",
        on_change=_new_task,
        help=" · ".join(f"{n}: {t.title}" for n, t in TASKS.items()),
    )
    return TASKS[name]


@dataclass(frozen=True)
class Source:
    """What the user chose to run: the text, an optional reference, and the gold example if any."""

    text: str
    reference: tuple[str, ...] | None
    gold: Example | None
    prepared: Prepared


def source_picker(task: Task, src_vocab: Vocab, mode_column) -> Source:
    """Example from the held-out split or the user's own text (URL: ``input``, ``example``,
    ``text``, ``ref``). Stops the page with a message on empty or too long input."""
    mode = mode_column.radio(
        "Input: a held-out test example, or your own text",
        ["example", "text"],
        horizontal=True,
        key="input",
        bind="query-params",
    )
    gold = None
    if mode == "example":
        examples = held_out_examples(task.name)
        index = st.selectbox(
            f"Example (held-out test split, {len(examples)} shown)",
            range(len(examples)),
            format_func=lambda i: task.joiner.join(examples[i].src),
            key="example",
            bind="query-params",
        )
        gold = examples[index]
        text, reference = task.joiner.join(gold.src), gold.tgt
        st.caption(f"Gold target: {md_escape(task.joiner.join(gold.tgt))}")
    else:
        if "text" not in st.session_state:
            st.session_state["text"] = task.placeholder
        text = st.text_input(
            f"Source text (at most {task.max_source} {task.unit})",
            max_chars=MAX_TEXT,
            key="text",
            bind="query-params",
        )
        ref_text = st.text_input(
            "Reference target (optional): the model is also run with teacher forcing on it",
            max_chars=MAX_TEXT,
            key="ref",
            bind="query-params",
        )
        reference = task.tokenize(ref_text) or None
        st.caption(task.input_note)
        _formats_and_readings(task, text)
    reference, prepared = _checked(task, text, src_vocab, reference)
    return Source(text=text, reference=reference, gold=gold, prepared=prepared)


def _use_text(text: str) -> None:
    st.session_state["text"] = text


def _formats_and_readings(task: Task, text: str) -> None:
    """The formats the model was trained on, and for an ambiguous input the other reading."""
    if task.formats:
        with st.expander("Formats the model was trained on"):
            st.markdown(md_escape(task.convention))
            st.markdown(" · ".join(f"`{f}`" for f in task.formats))
    other = task.other_reading(text)
    if other is not None:
        st.caption(
            f"Ambiguous: either number could be the month. {md_escape(task.convention)} To have it read "
            f"the other way round, type {md_escape(other)}."
        )
        st.button(f"Read it the other way: {other}", on_click=_use_text, args=(other,), key="other_reading")


def _checked(task: Task, text: str, src_vocab: Vocab, reference):
    """Show the message and stop on empty or too long input; name unknown tokens; drop a reference
    longer than the model outputs. Returns the reference to use and the prepared source."""
    try:
        prepared = prepare(task, text, src_vocab)
    except InputError as err:
        (st.info if not text.strip() else st.error)(str(err))
        st.stop()
    if prepared.unknown:
        st.warning(
            f"Not in the model's vocabulary, read as <unk>: {quoted(prepared.unknown)}. "
            f"The model knows {len(src_vocab) - 4} source {task.unit}; expect a poor output."
        )
    if reference is not None and len(reference) + 1 > task.max_target:
        st.warning(
            f"The reference is longer than this model ever outputs ({task.max_target - 1} tokens); "
            "teacher forcing is skipped."
        )
        reference = None
    return reference, prepared


NEAREST_FROM = 2000  # held-out examples searched for a default corrupted source


def nearest_source(task: Task, src: tuple[str, ...]) -> tuple[str, ...] | None:
    """The held-out source of the same length that differs from ``src`` in the fewest tokens (at least
    one): the default corrupted source, a minimal contrast. None when no example has that length."""
    same = [
        e.src for e in held_out_examples(task.name, NEAREST_FROM) if len(e.src) == len(src) and e.src != src
    ]
    return min(same, key=lambda s: sum(a != b for a, b in zip(s, src, strict=True))) if same else None


def assign(**values) -> None:
    """A button's callback that sets session-state keys (``on_click=assign, kwargs={...}``). A widget keeps
    its callback for the session's life, and a function defined in a page script keeps that run's whole
    namespace (its model, its runs) alive with it: this one is a module's."""
    for key, value in values.items():
        st.session_state[key] = value
