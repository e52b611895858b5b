"""Attention explorer — the router: one page per registered model family (runners/registry.py).

Pages live in app_pages/, shared Streamlit views in views/, figures in viz/, networks in models/.
"""

from pathlib import Path

import streamlit as st

from runners.registry import FAMILIES


def run() -> None:
    st.set_page_config(page_title="Attention explorer", page_icon="🔍", layout="wide")
    pages = [
        st.Page(f.page, title=f.title, icon=f.icon, url_path=Path(f.page).stem, default=i == 0)
        for i, f in enumerate(FAMILIES.values())
    ]
    st.navigation(pages).run()


run()
