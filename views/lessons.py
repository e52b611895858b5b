"""The transformer lab's lessons: positional encoding, post- vs pre-norm, and the shape playground."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st
import torch

from models.attention import Interventions, MultiHeadAttention
from models.checkpoints import checkpoint_name
from models.positions import sinusoids
from views import cards
from views.serving import batch_accuracy, card, transformer_run
from viz.charts import lines
from viz.heatmaps import head_grid, matrix_heatmap


def positional_encoding(
    name: str, src: tuple[str, ...], interventions: Interventions, pad_to: int, d_model: int
) -> None:
    """The sinusoid table, its position similarities, and this input with the encoding removed."""
    encodings = sinusoids(max(len(src), 8) + 8, d_model).numpy()
    st.latex(
        r"PE_{pos,2i} = \sin\!\left(pos / 10000^{2i/d}\right),\quad "
        r"PE_{pos,2i+1} = \cos\!\left(pos / 10000^{2i/d}\right)"
    )
    table_column, similarity_column = st.columns(2)
    table = matrix_heatmap(
        encodings,
        title="Sinusoidal encodings (position × dimension)",
        x_title="dimension",
        y_title="position",
        value_name="PE",
    )
    table_column.plotly_chart(table, key="tf_pe_matrix")
    norms = np.linalg.norm(encodings, axis=1)
    similarity = matrix_heatmap(
        (encodings @ encodings.T) / np.outer(norms, norms),
        title="Cosine similarity between positions",
        x_title="position",
        y_title="position",
        value_name="cos",
    )
    similarity_column.plotly_chart(similarity, key="tf_pe_sim")
    with_pe = transformer_run(name, src, replace(interventions, positional=True), None, pad_to)
    without = transformer_run(name, src, replace(interventions, positional=False), None, pad_to)
    st.markdown(
        "The same input with positional encoding removed (everything else as in the sidebar): "
        "without positions, self-attention is order-blind."
    )
    st.code(f"with PE   : {with_pe.text}\nwithout PE: {without.text}", language=None)
    st.metric(
        "Exact match without PE", f"{batch_accuracy(name, replace(interventions, positional=False)):.0%}"
    )


def norm_placement(task_name: str) -> None:
    """Training curves and per-layer gradient norms of the pre-norm and post-norm twins."""
    pre, post = (card(checkpoint_name("transformer", task_name, v)) for v in ("h4", "h4-post"))
    if pre is None or post is None:
        st.info("Both the h4 (pre-norm) and h4-post checkpoints are needed for this comparison.")
        return
    st.markdown(
        "Post-norm (original paper): $x \\leftarrow \\mathrm{LN}(x + f(x))$. Pre-norm: "
        "$x \\leftarrow x + f(\\mathrm{LN}(x))$ — the residual path stays an identity, which keeps "
        "gradients to early layers healthy. Same data, seed and schedule:"
    )
    twins = {"pre": pre, "post": post}

    def steps(c: dict) -> list[int]:
        return [p["step"] for p in c["loss_curve"]]

    curves = {f"{k}-norm": (steps(c), [p["loss"] for p in c["loss_curve"]]) for k, c in twins.items()}
    st.plotly_chart(lines(curves, x_title="step", y_title="training loss", log_y=True), key="tf_norm_loss")
    for column, (k, c) in zip(st.columns(2), twins.items(), strict=True):
        groups = [g for g in c["loss_curve"][0]["grad_norms"] if "." in g]
        norms = {g: (steps(c), [p["grad_norms"].get(g, 0.0) for p in c["loss_curve"]]) for g in groups}
        fig = lines(norms, x_title="step", y_title="gradient norm", title=f"{k}-norm, per layer", log_y=True)
        column.plotly_chart(fig, key=f"tf_norm_grad_{k}")
    cards.metrics_table({"pre-norm": pre, "post-norm": post}, "tf_norm_cards")


@st.fragment
def playground() -> None:
    """Random weights, the user's dimensions: the shape arithmetic of multi-head attention."""
    st.markdown("Random weights, your dimensions: the shape arithmetic of multi-head attention.")
    width_column, heads_column, tokens_column = st.columns(3)
    d = int(width_column.number_input("d_model", 1, 512, 4, key="tf_pg_d"))
    h = int(heads_column.number_input("heads h", 1, 64, 2, key="tf_pg_h"))
    tokens = tokens_column.text_input(
        "Tokens (space-separated)", "the cat sat", max_chars=400, key="tf_pg_text"
    ).split()[:32]
    if not tokens:
        st.info("Type at least one token.")
        return
    try:
        mha = MultiHeadAttention(d, h)
    except ValueError as err:
        st.error(str(err))
        return
    generator = torch.Generator().manual_seed(0)  # a local generator: no global seeding per request
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        x = torch.randn(1, len(tokens), d, generator=generator)
        _, trace = mha(query=x, key=x, value=x, return_trace=True)
    n, d_k = len(tokens), d // h
    st.markdown(
        f"X: {n}×{d} → Q = X W_Qᵀ: {n}×{d} → split into {h} heads of d_k = {d}/{h} = {d_k}: "
        f"{h}×{n}×{d_k} → scores QKᵀ per head: {h}×{n}×{n} → softmax → ×V: {h}×{n}×{d_k} → "
        f"concat: {n}×{d} → × W_O ({d}×{d}): {n}×{d}."
    )
    shown = min(h, 8)
    grid = head_grid(
        trace.heads.weights.numpy()[:, :shown],
        tokens,
        tokens,
        row_names=["random"],
        col_names=[f"H{i}" for i in range(shown)],
        height_per_row=260,
    )
    st.plotly_chart(grid, key="tf_pg_grid")
    if h > shown:
        st.caption(f"First {shown} of {h} heads shown.")
