"""The language-model page's "Generate" tab: a continuation streamed token by token through the model's KV
cache (`families.llm.runner.generate`), then what each generated token looked at in the picked layer and
head — the very attention rows that chose it."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import streamlit as st

from analysis import lm
from analysis.lm import LM, LMRun, Prompt
from analysis.protocol import AttentionMaps
from families.llm import runner
from models.attention import Interventions
from models.sampling import Sampling
from views import attention
from views.inputs import md_escape, token_key
from views.outputs import model_output, text_block
from views.serving import inference

STATE = "llm_generated"  # session state: the last continuation, kept across reruns with its settings


def _generate(loaded: LM, name: str, prompt: Prompt, settings: tuple, layers, stop_column) -> dict:
    """Stream a continuation onto the page, one token at a time, kept in session_state as it grows: a
    click on Stop (or any widget) reruns the page, which ends this run at its next token."""
    _, _, gen_iv, new, temp, top_k, top_p, seed = settings
    done = {"settings": settings, "layers": layers, "tokens": [], "rows": [], "text": "", "done": False}
    st.session_state[STATE] = done
    stop = stop_column.empty()
    stop.button("Stop", key="llm_stop", help="Ends the generation after the token being computed.")
    shown = st.empty()
    with inference(name):
        sampling = Sampling(temp, top_k or None, top_p if top_p < 1 else None, seed)
        steps = runner.generate(loaded, prompt, gen_iv, new_tokens=new, sampling=sampling, layers=layers)
        for g in steps:
            done["tokens"].append((g.id, g.token, g.log_prob))
            done["rows"].append(g.weights[:, :, -1].copy())  # (L, h, keys): the row that chose this token
            done["text"] = g.text
            text_block(g.text + "▌", shown)  # a rerun request ends this run here
    done["done"] = True
    stop.empty()
    shown.empty()
    return done


def _cache_said(loaded: LM) -> str:
    """What the KV cache keeps, for a model with sliding windows: every key, the window being the mask."""
    windows = {b.attn.window for b in loaded.model.blocks} - {None}
    if not windows:
        return ""
    sizes = ", ".join(f"{w:,}" for w in sorted(windows))
    return (f" Its sliding window ({sizes} keys) is part of the mask: the KV cache keeps every key, and each "
            "step reads only the keys inside the window.")  # fmt: skip


def generate_view(loaded: LM, name: str, prompt: Prompt, run: LMRun, iv: Interventions,
                  layers: tuple[int, ...] | None, layer: int, head: int) -> None:  # fmt: skip
    """The tab. ``layers``: what the page's run keeps (None: all), the continuation's attention too."""
    new_column, temp_column, k_column, p_column, seed_column = st.columns(5)
    room = loaded.model.cfg.max_len - len(prompt.ids)
    if room < 1:
        return st.info(f"The prompt fills the model's {loaded.model.cfg.max_len:,}-token context: nothing "
                       "can follow it. Shorten the prompt.")  # fmt: skip
    new = new_column.slider("New tokens", 1, max(2, min(128, room)), min(32, room), key="llm_new")
    temp = temp_column.slider("Sampling temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key="llm_sample_temp")
    top_k = k_column.slider("Top-k (0 = every token)", 0, 200, 50, key="llm_top_k")
    top_p = p_column.slider("Top-p (1 = every token)", 0.05, 1.0, 0.95, 0.05, key="llm_top_p")
    seed = int(seed_column.number_input("Seed", 0, 10**6, 0, key="llm_gen_seed"))
    gen_iv = replace(iv, causal=True)
    settings = (name, prompt.ids, gen_iv, min(new, room), temp, top_k, top_p, seed)
    go_column, stop_column = st.columns([1, 4])
    done = st.session_state.get(STATE)
    if go_column.button("Generate", type="primary", key="llm_go"):
        done = _generate(loaded, name, prompt, settings, layers, stop_column)
    if done is None or done["settings"] != settings:
        st.caption("Press Generate: tokens appear as the model picks them (greedy at temperature 0, else "
                   "from its own seeded generator), under the sidebar's interventions but the causal mask, "
                   f"through its KV cache.{_cache_said(loaded)}")  # fmt: skip
        return
    labels, n = [t[1] for t in done["tokens"]], len(done["tokens"])
    if not done["done"]:
        st.warning(f"Stopped after {n} of {settings[3]} tokens.")
    log_p = np.array([t[2] for t in done["tokens"]])
    model_output(SimpleNamespace(text=done["text"], output=tuple(labels), token_log_probs=log_p), empty="")
    if n and done["layers"] is not None and layer not in done["layers"]:
        return st.info(f"This continuation kept layer {done['layers'][0]}'s attention (a long prompt keeps "
                       f"one layer): press Generate again for layer {layer}.")  # fmt: skip
    if not n:
        return
    keys = [*run.inputs, *labels[:-1]]
    grid = lm.generated_attention(done["rows"], layer if done["layers"] is None else 0, head)
    st.markdown(f"**What each generated token looked at**, L{layer} H{head}: row j is the attention of the "
                "position before token j — the row that chose it — over the prompt and the tokens before it.")
    attention.heatmap(AttentionMaps.single("generated", grid, labels, keys), 0, 0, "llm_gen_map",
                      axes=("generated token", "key"))  # fmt: skip
    j = st.selectbox("Generated token", range(n), format_func=lambda j: f"{j}: {labels[j]}",
                     key=token_key("llm_gen_token", labels))  # fmt: skip
    top = np.argsort(-grid[j])[:5]
    st.caption(f"Token {j} ‘{md_escape(labels[j])}’ looked most at: "
               + " · ".join(f"{k}: ‘{md_escape(keys[k])}’ {grid[j, k]:.2f}" for k in top))  # fmt: skip
