"""The language-model page's model picker: the models this machine offers (`families.llm.runner.catalog`) by
name — a visitor never types a path — the ones found but not offered with their reasons, how to offer more,
and the picked model loaded through the family's served loader, or a clear message and the page stopped
there (the picker stays, so any other model can be picked).
"""

from __future__ import annotations

import re

import streamlit as st

from analysis.lm import LM
from families.llm import FAMILY, runner
from families.llm.shipped import SMOLLM2
from models.checkpoints import CheckpointError
from models.lm_catalog import GB, Catalog
from views.inputs import md_escape
from views.serving import loaded_model

KEY = "llm_checkpoint"  # the picked model's name, bound to the URL
HOW = (
    "The page offers the shipped SmolLM2 and any decoder this server's settings point at — Llama, Mistral, "
    "Qwen 2/2.5, Qwen 3, Gemma 2 and GPT-2 checkpoints, as Hugging Face folders (config.json, safetensors, "
    "tokenizer.json) or GGUF files: `ATTENTION_EXPLORER_LM_DIR` (a folder; each checkpoint folder and "
    "each `.gguf` in it is offered under its own name), `ATTENTION_EXPLORER_LM` (one more, opened by "
    "default) and the Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else "
    "`~/.cache/huggingface/hub`; read only, nothing is ever downloaded). A model whose float32 weights "
    "are larger than `ATTENTION_EXPLORER_LM_MAX_GB` (default: half the memory free) is listed as refused, "
    "with its size."
)


def file_stem(name: str) -> str:
    """A model's name as a download's file name ("Qwen/Qwen2.5-0.5B" → "Qwen-Qwen2.5-0.5B")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def _refused(found: Catalog) -> None:
    if not found.refused:
        return
    with st.expander(f"Found but not offered ({len(found.refused)}): why"):
        st.dataframe([{"model": r.name, "where": r.source, "why not": r.reason} for r in found.refused],
                     hide_index=True)  # fmt: skip


def pick() -> tuple[str, LM, Catalog]:
    """The picker, then the picked model loaded: (its name, the `LM`, the catalog). A model that cannot be
    loaded now (vanished, broken, too big since it was listed) gets its reason, and the page stops."""
    found = runner.catalog()
    names = list(found.names)
    picked_column, about_column = st.columns([2, 3])
    name = picked_column.selectbox(
        "Model", names, index=names.index(found.default), key=KEY, bind="query-params",
        help="The models this server offers. Each is run on the app's own attention core.",
    )  # fmt: skip
    offer = found.offer(name)
    if name == SMOLLM2.name:
        about_column.caption(f"Shipped with the app: {SMOLLM2.file}.")
    else:
        size = offer.weight_bytes / GB
        about_column.caption(f"A {offer.arch} checkpoint ({offer.source}), {size:.2f} GB of float32 weights "
                             "in memory once loaded.")  # fmt: skip
    _refused(found)
    with st.expander("Offer your own models"):
        st.markdown(HOW)
    try:
        return name, loaded_model(FAMILY, name), found
    except CheckpointError as err:  # `brief` names the file only: no server path reaches the visitor
        st.error(f"Cannot load {md_escape(name)}: {md_escape(err.brief)}")
    except (OSError, RuntimeError, MemoryError) as err:  # a disk or memory failure while reading it
        st.error(f"Cannot load {md_escape(name)} ({type(err).__name__}): pick another model, or free memory "
                 "on the server and try again.")  # fmt: skip
    st.caption("The other models still open: pick one above.")
    st.stop()
