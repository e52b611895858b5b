"""The transformer walkthrough: one head's computation, step by step, every number the model's own.

The checks (q from x and W_Q, Σ w v, concat W_O) are recomposed by `runners.transformer.walkthrough`
from the model's weights and trace; this view only shows them.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from models.transformer import BLOCKS
from runners.transformer import BLOCK_TITLES, TransformerRun, walkthrough
from views.inputs import md_escape, token_key
from viz.charts import token_bars, vector_strips
from viz.heatmaps import matrix_heatmap


@st.fragment
def one_head(model, run: TransformerRun, *, norm: str, teacher_forced: bool) -> None:
    st.markdown(
        "One head's computation, step by step, with the model's own numbers "
        + ("(teacher-forced on the reference)." if teacher_forced else "(free-running).")
    )
    n_layers, n_heads = run.maps["encoder"].n_layers, run.maps["encoder"].n_heads
    block_column, layer_column, head_column = st.columns(3)
    name = block_column.selectbox("Block", BLOCKS, format_func=BLOCK_TITLES.get, key="tf_wt_block")
    layer = layer_column.selectbox("Layer", range(n_layers), key="tf_wt_layer")
    head = head_column.selectbox("Head", range(n_heads), key="tf_wt_head")
    block, maps = run.blocks[name][layer], run.maps[name]
    query = st.select_slider(
        "Query token",
        options=list(range(len(maps.queries))),
        format_func=lambda i: f"{i}: {maps.queries[i]}",
        key=token_key(f"tf_wt_query_{name}", maps.queries),
    )
    check = walkthrough(model, block, name, layer, head, query)
    d_model, d_k = block.x_query.shape[-1], block.q.shape[-1]
    st.markdown(
        f"**1 · Input row x** (after {'layer norm' if norm == 'pre' else 'the previous sublayer'};"
        f" d_model = {d_model}) and **2 · projections** $q = x W_Q^\\top + b_Q$, $k$, $v$ "
        f"(head {head}: rows {head * d_k}–{(head + 1) * d_k - 1} of each W):"
    )
    st.plotly_chart(vector_strips({"x (query row)": check.x, f"q (head {head})": check.q}), key="tf_wt_x")
    st.caption(f"q recomputed from x and W_Q here equals the model's q: max |diff| = {check.q_gap:.2e}")
    w_q_map = matrix_heatmap(
        check.w_q, title=f"W_Q rows of head {head}", x_title="input dim", y_title="q dim", value_name="W_Q"
    )
    st.plotly_chart(w_q_map, key="tf_wt_wq")
    keys = matrix_heatmap(
        block.k[head],
        title=f"3 · every key k_j (head {head})",
        x_title="k dim",
        y_title="key",
        y_labels=maps.keys,
        value_name="k",
    )
    st.plotly_chart(keys, key="tf_wt_k")
    table = {
        "j": list(range(len(maps.keys))),
        "key token": list(maps.keys),
        "q·k": block.raw_scores[head, query],
        f"× {block.scale:.4f} ÷ T={block.temperature:g}": block.scaled_scores[head, query],
        "masked (−inf = hidden)": block.masked_scores[head, query],
        "softmax w": block.weights[head, query],
    }
    scaling = f"1/√d_k = 1/√{d_k}" + (" — off" if block.scale == 1.0 else "")
    st.markdown(
        f"**4–6 · Scores, scaling ({scaling}), mask, softmax** "
        f"for query {query} '{md_escape(maps.queries[query])}':"
    )
    number = st.column_config.NumberColumn(format="%.5f")
    st.dataframe(table, hide_index=True, column_config={k: number for k in list(table)[2:]})
    st.plotly_chart(
        token_bars(maps.keys, block.weights[head, query], name="w", title="softmax weights"), key="tf_wt_bars"
    )
    st.markdown(
        f"**7 · Weighted sum of values** $\\sum_j w_j v_j$ (head {head}); recomputed here vs the "
        f"model's: max |diff| = {check.context_gap:.2e}"
    )
    off = [] if block.head_mask is None else sorted(int(h) for h in np.where(block.head_mask == 0)[0])
    st.markdown(
        f"**8 · Concatenate all {n_heads} heads, multiply by W_O** ({d_model}×{d_model}):"
        + (f" heads {off} are switched off." if off else "")
    )
    strips = {f"head {h} output": block.head_outputs[h, query] for h in range(n_heads)}
    strips |= {"concat": block.concat[query], "W_O · concat (block output)": block.output[query]}
    st.plotly_chart(vector_strips(strips), key="tf_wt_concat")
    (st.success if check.output_gap < 1e-4 else st.error)(
        f"Check: concat @ W_Oᵀ + b recomputed from the numbers shown equals the model's block output "
        f"(max |diff| = {check.output_gap:.2e})."
    )
