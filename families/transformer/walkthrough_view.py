"""The transformer walkthrough: one layer's computation for one query row, step by step, from the
attention head to the layer's output, every number the model's own.

The order follows the model's norm placement (pre-norm: LN → attention → add → LN → FFN → add;
post-norm: attention → add & LN → FFN → add & LN). Each check (q from x and W_Q, Σ w v, concat W_O,
each layer norm from its mean, variance, γ and β, the FFN from W₁ and W₂, the whole layer) is
recomposed by `walkthrough` (beside this file) from the model's weights and trace; this view only
shows them.
One step is drawn at a time.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from families.transformer.runner import BLOCK_TITLES, BlockTrace, TransformerRun
from families.transformer.walkthrough import BlockSteps, NormStep, block_steps, walkthrough
from models.transformer import BLOCKS
from views.inputs import md_escape, token_key
from viz.charts import lines, token_bars, vector_strips
from viz.heatmaps import matrix_heatmap

PRE_STEPS = ("Layer norm", "Q, K, V", "Scores → softmax", "Σ w·v, heads, W_O", "Residual add",
             "Layer norm → FFN", "Feed-forward", "Residual add (FFN)", "Residual stream")  # fmt: skip
POST_STEPS = ("Q, K, V", "Scores → softmax", "Σ w·v, heads, W_O", "Add & layer norm", "Feed-forward",
              "Add & layer norm (FFN)", "Residual stream")  # fmt: skip


def _check(gap: float, what: str) -> None:
    (st.success if gap < 1e-4 else st.error)(f"Check: {what} (max |diff| = {gap:.2e}).")


def _norm(step: NormStep, key: str, *, into: str) -> None:
    st.markdown(
        f"Layer norm of this row: mean μ = **{step.mean:.5f}**, variance σ² = **{step.variance:.5f}**, "
        f"ε = {step.eps:g}; then $\\hat x = (x - \\mu)/\\sqrt{{\\sigma^2 + \\varepsilon}}$ and "
        f"$\\gamma \\odot \\hat x + \\beta$ (γ, β learned, one per dimension) → {into}."
    )
    strips = {"x (in)": step.x, "x̂ normalised": step.normalised, "γ": step.gamma, "β": step.beta}
    st.plotly_chart(vector_strips(strips | {"γ x̂ + β (the model's)": step.output}), key=key)
    _check(step.gap, "γ x̂ + β recomputed from μ, σ², γ and β equals the model's layer-norm output")


def _add(x_in: np.ndarray, f_out: np.ndarray, x_out: np.ndarray | None, key: str, *, what: str) -> None:
    st.markdown(
        f"**Residual add**: the sublayer's output is *added* to the stream it read, $x + {what}(x)$ — the "
        "stream carries everything earlier layers wrote, and each sublayer only adds to it."
    )
    strips = {"x (stream in)": x_in, f"{what} output": f_out, "x + output": x_in + f_out}
    if x_out is not None:
        strips["the model's stream out"] = x_out
    st.plotly_chart(vector_strips(strips), key=key)


def _attention_steps(model, run: TransformerRun, block: BlockTrace, name: str, layer: int, head: int,
                     query: int, step: str) -> None:  # fmt: skip
    """Steps of the attention head itself: projections, scores to softmax, values, heads, W_O."""
    maps = run.maps[name]
    check = walkthrough(model, block, name, layer, head, query)
    d_model, d_k, n_heads = block.x_query.shape[-1], block.q.shape[-1], block.q.shape[0]
    if step == "Q, K, V":
        st.markdown(
            f"**Input row x** (d_model = {d_model}) and **projections** $q = x W_Q^\\top + b_Q$, $k$, $v$ "
            f"(head {head}: rows {head * d_k}–{(head + 1) * d_k - 1} of each W):"
        )
        st.plotly_chart(vector_strips({"x (query row)": check.x, f"q (head {head})": check.q}), key="tf_wt_x")
        st.caption(f"q recomputed from x and W_Q here equals the model's q: max |diff| = {check.q_gap:.2e}")
        w_q_map = matrix_heatmap(
            check.w_q,
            title=f"W_Q rows of head {head}",
            x_title="input dim",
            y_title="q dim",
            value_name="W_Q",
        )
        st.plotly_chart(w_q_map, key="tf_wt_wq")
    elif step == "Scores → softmax":
        keys = matrix_heatmap(
            block.k[head],
            title=f"every key k_j (head {head})",
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
            f"**Scores, scaling ({scaling}), mask, softmax** for query {query} "
            f"'{md_escape(maps.queries[query])}':"
        )
        number = st.column_config.NumberColumn(format="%.5f")
        st.dataframe(table, hide_index=True, column_config={k: number for k in list(table)[2:]})
        st.plotly_chart(
            token_bars(maps.keys, block.weights[head, query], name="w", title="softmax weights"),
            key="tf_wt_bars",
        )
    else:
        st.markdown(
            f"**Weighted sum of values** $\\sum_j w_j v_j$ (head {head}); recomputed here vs the model's: "
            f"max |diff| = {check.context_gap:.2e}"
        )
        off = [] if block.head_mask is None else sorted(int(h) for h in np.where(block.head_mask == 0)[0])
        st.markdown(
            f"**Concatenate all {n_heads} heads, multiply by W_O** ({d_model}×{d_model}):"
            + (f" heads {off} are switched off." if off else "")
        )
        strips = {f"head {h} output": block.head_outputs[h, query] for h in range(n_heads)}
        strips |= {"concat": block.concat[query], "W_O · concat (block output)": block.output[query]}
        st.plotly_chart(vector_strips(strips), key="tf_wt_concat")
        _check(
            check.output_gap, "concat @ W_Oᵀ + b recomputed from the numbers shown equals the block output"
        )


def _block_steps(steps: BlockSteps, name: str, query: int, step: str) -> None:
    """Steps past the attention head: residual adds, layer norms, the feed-forward network."""
    attention, ff, ffn = steps.attention, steps.feed_forward, steps.ffn
    if step == "Layer norm":
        st.markdown("Pre-norm: the attention sublayer reads the stream **after** a layer norm, $LN(x)$:")
        into = (
            "the row the query is projected from (keys and values come from the encoder's output)"
            if name == "cross"
            else "the row Q, K and V are projected from"
        )
        _norm(steps.attention_norm, "tf_wt_ln1", into=into)
    elif step == "Residual add":
        _add(
            attention.x_in[query],
            attention.f_out[query],
            attention.x_out[query],
            "tf_wt_add1",
            what="attention",
        )
        _check(steps.residual_gaps[0], "x + attention output equals the model's stream after the sublayer")
    elif step == "Add & layer norm":
        _add(attention.x_in[query], attention.f_out[query], None, "tf_wt_add1", what="attention")
        st.markdown(
            "Post-norm (the original paper): the sum is layer-normed, $LN(x + \\mathrm{attention}(x))$."
        )
        _norm(steps.attention_norm, "tf_wt_ln1", into="the stream the next sublayer reads")
    elif step == "Layer norm → FFN":
        _norm(steps.ffn_norm, "tf_wt_ln2", into="the row the feed-forward network reads")
    elif step == "Feed-forward":
        d_ff = len(ffn.hidden)
        st.markdown(
            "**Feed-forward network**, the same for every position: "
            f"$W_2\\,\\mathrm{{ReLU}}(W_1 x + b_1) + b_2$ "
            f"({len(ffn.x)} → {d_ff} → {len(ffn.output)}). The ReLU set **{ffn.share_zero:.0%}** of the "
            f"{d_ff} hidden units of this row to 0 (their $W_1 x + b_1$ was ≤ 0)."
        )
        strips = {"x (in)": ffn.x, "W₁x + b₁": ffn.pre_activation, "ReLU (the model's)": ffn.hidden}
        st.plotly_chart(vector_strips(strips | {"W₂h + b₂ (the model's)": ffn.output}), key="tf_wt_ffn")
        _check(ffn.hidden_gap, "ReLU(W₁x + b₁) recomputed from the weights equals the model's hidden units")
        _check(ffn.output_gap, "W₂h + b₂ recomputed from the weights equals the model's FFN output")
    elif step in ("Residual add (FFN)", "Add & layer norm (FFN)"):
        _add(ff.x_in[query], ff.f_out[query], ff.x_out[query] if steps.pre_norm else None, "tf_wt_add2",
             what="FFN")  # fmt: skip
        if steps.pre_norm:
            _check(steps.residual_gaps[1], "x + FFN output equals the model's stream after the layer")
        else:
            _norm(steps.ffn_norm, "tf_wt_ln2", into="the layer's output")
        _check(
            steps.layer_gap,
            "the layer's output recomposed from its input — the attention outputs above, then every norm, "
            "add and the feed-forward network from the weights — equals the model's",
        )
    else:
        series = {
            "mean over positions": (steps.stream_labels, steps.stream_norms.mean(-1)),
            f"this row ({query})": (steps.stream_labels, steps.stream_norms[:, query]),
        }
        st.markdown(
            "**The residual stream's norm** ‖x‖ through the stack, before each sublayer and at the end"
            + (
                " (pre-norm: the stream itself is never normalised, so it can grow)."
                if steps.pre_norm
                else " (post-norm: the stream is layer-normed after every sublayer)."
            )  # fmt: skip
        )
        st.plotly_chart(lines(series, x_title="checkpoint", y_title="‖x‖"), key="tf_wt_stream")


@st.fragment
def one_head(model, run: TransformerRun, *, norm: str, teacher_forced: bool) -> None:
    st.markdown(
        "One layer's computation for one row, step by step, with the model's own numbers "
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
    names = PRE_STEPS if norm == "pre" else POST_STEPS
    step = st.radio(
        f"Step ({norm}-norm order)",
        names,
        format_func=lambda s: f"{names.index(s) + 1} · {s}",
        horizontal=True,
        key=f"tf_wt_step_{norm}",
    )
    if name == "decoder_self" and names.index(step) > names.index("Σ w·v, heads, W_O") + 1:
        st.caption(
            "In a decoder layer the cross-attention sublayer runs between this one and the feed-forward."
        )
    if step in ("Q, K, V", "Scores → softmax", "Σ w·v, heads, W_O"):
        _attention_steps(model, run, block, name, layer, head, query, step)
    else:
        _block_steps(block_steps(model, run, name, layer, query), name, query, step)
