"""Page furniture every page shares: the header, and tabs whose bodies run only when open."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st

from analysis.family import Family
from models.checkpoints import CheckpointError
from views.inputs import md_escape
from views.serving import loaded_model


def page_header(doc: str) -> None:
    """A page's module docstring as its header: the first line is the title, the rest the intro."""
    title, _, intro = doc.strip().partition("\n")
    st.title(title.rstrip("."))
    st.markdown(" ".join(intro.split()))


def lazy_tabs(views: Mapping[str, Callable[[], None]], *, key: str) -> None:
    """One tab per view; only the open tab's view runs. The open tab's label is the URL parameter
    ``key``: one name per page, so moving to another page opens that page's first view instead of
    carrying this page's tab along (Streamlit keeps a parameter bound on both pages)."""
    tabs = st.tabs(list(views), key=key, on_change="rerun", bind="query-params")
    for tab, render in zip(tabs, views.values(), strict=True):
        if tab.open:
            with tab:
                render()


def model_or_stop(family: Family, name: str, what: str):
    """The family's loaded model ``name``; when it cannot load, a message naming ``what`` (as the visitor
    knows it), the file and the fix — `CheckpointError.brief`: no server path reaches the visitor — and
    the page stops."""
    try:
        return loaded_model(family, name)
    except CheckpointError as err:
        st.error(f"Cannot load {what}: {md_escape(err.brief)}")
        st.stop()
