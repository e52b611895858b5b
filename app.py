"""Attention explorer — the router: one page per model family (families/__init__.py).

Each family (a page, its runners and views) lives in families/<name>/; shared views in views/, shared
analyses in analysis/, figures in viz/, networks in models/.
"""

import streamlit as st

from families import FAMILIES


def run() -> None:
    st.set_page_config(page_title="Attention explorer", page_icon="🔍", layout="wide")
    pages = [
        st.Page(f.page, title=f.title, icon=f.icon, url_path=f.url_path, default=i == 0)
        for i, f in enumerate(FAMILIES.values())
    ]
    st.navigation(pages).run()


run()
