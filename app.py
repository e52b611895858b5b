"""Attention explorer — the router. Pages live in app_pages/; models in models/; figures in viz/."""

import streamlit as st


def run() -> None:
    st.set_page_config(page_title="Attention explorer", page_icon=":material/visibility:", layout="wide")
    pages = [
        st.Page(
            "app_pages/seq2seq.py", title="Seq2seq alignment", icon=":material/swap_horiz:", default=True
        ),
        st.Page(
            "app_pages/transformer.py", title="Transformer lab", icon=":material/hub:", url_path="transformer"
        ),
        st.Page("app_pages/bert.py", title="Pretrained BERT", icon=":material/biotech:", url_path="bert"),
        st.Page(
            "app_pages/captioning.py", title="Captioning", icon=":material/image:", url_path="captioning"
        ),
    ]
    st.navigation(pages).run()


run()
