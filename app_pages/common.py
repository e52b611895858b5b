"""What the pages share: cached loaders and safe text. Thin: no model logic lives here."""

from __future__ import annotations

import re

import streamlit as st

from models.checkpoints import load_card, load_checkpoint
from models.runs import Run, decode
from models.tasks import TASKS
from models.tasks.common import Example
from models.train import TEST_SEED, TEST_SIZE

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_escape(text: str) -> str:
    """User text inside a Markdown string: every Markdown/HTML character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def quoted(tokens) -> str:
    """Tokens as a readable, escaped list for messages: ‘a’, ‘b’."""
    return ", ".join(f"‘{md_escape(t)}’" for t in tokens)


@st.cache_resource(show_spinner="Loading model…")
def load_model(name: str):
    """One shared model per checkpoint (eval mode, on the picked device), its card and vocabularies."""
    return load_checkpoint(name)


@st.cache_data(show_spinner=False)
def card(name: str) -> dict | None:
    try:
        return load_card(name)
    except FileNotFoundError:
        return None


@st.cache_data(max_entries=256, show_spinner=False)
def cached_decode(
    name: str, src: tuple[str, ...], beam: int = 1, reference: tuple[str, ...] | None = None
) -> list[Run]:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task = TASKS[model_card["task"]]
    return decode(model, task, src, src_vocab, tgt_vocab, beam=beam, reference=reference)


@st.cache_data(show_spinner=False)
def held_out_examples(task_name: str, n: int = 60) -> list[Example]:
    """The first ``n`` examples of the task's fixed test split (the one the cards are scored on)."""
    return TASKS[task_name].generate(TEST_SIZE, TEST_SEED, "test")[:n]
