"""Attention explorer — the router: the start page (a learner's path, start/), then one page per model
family (families/__init__.py).

Each family (a page, its runners and views) lives in families/<name>/; shared views in views/, shared
analyses in analysis/, figures in viz/, networks in models/.
"""

import streamlit as st

from families import PAGES


def run() -> None:
    st.set_page_config(page_title="Attention explorer", page_icon="🔍", layout="wide")
    pages = [
        st.Page(p.page, title=p.title, icon=p.icon, url_path=p.url_path, default=i == 0)
        for i, p in enumerate(PAGES.values())
    ]
    st.navigation(pages).run()


run()
