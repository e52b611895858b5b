"""Pure figure builders for a RoPE model's attention (arrays in, figures out, no Streamlit): which query
heads share a K/V head, one query against one key as the offset between them moves, per frequency pair."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

QUERY_COLOUR, KV_COLOUR, PICKED_COLOUR = "#636efa", "#00a087", "#ff4b4b"


def gqa_diagram(kv_heads: Sequence[int], *, picked: int | None = None) -> go.Figure:
    """Query heads (top row) joined to the K/V head each reads (bottom row, under its group): grouped-query
    attention's sharing. ``picked``: a query head drawn, with its group's edges, in red."""
    n_heads, n_kv = len(kv_heads), max(kv_heads) + 1
    kv_x = [float(np.mean([h for h in range(n_heads) if kv_heads[h] == g])) for g in range(n_kv)]
    group = None if picked is None else kv_heads[picked]
    edges = [
        go.Scatter(
            x=[h, kv_x[g]], y=[1, 0], mode="lines", hoverinfo="skip", showlegend=False,
            line=dict(color=PICKED_COLOUR if g == group else "#b0b0b0", width=3 if h == picked else 1.5),
        )  # fmt: skip
        for h, g in enumerate(kv_heads)
    ]
    queries = go.Scatter(
        x=list(range(n_heads)), y=[1] * n_heads, mode="markers+text", text=[f"Q{h}" for h in range(n_heads)],
        textposition="top center", name="query heads",
        marker=dict(size=22, color=[PICKED_COLOUR if h == picked else QUERY_COLOUR for h in range(n_heads)]),
        customdata=list(kv_heads),
        hovertemplate="query head %{x} reads K/V head %{customdata}<extra></extra>",
    )  # fmt: skip
    kvs = go.Scatter(
        x=kv_x, y=[0] * n_kv, mode="markers+text", text=[f"K/V {g}" for g in range(n_kv)],
        textposition="bottom center", name="K/V heads",
        marker=dict(size=30, symbol="square", color=KV_COLOUR),
        customdata=[[h for h in range(n_heads) if kv_heads[h] == g] for g in range(n_kv)],
        hovertemplate="K/V head %{text}: read by query heads %{customdata}<extra></extra>",
    )  # fmt: skip
    return go.Figure(
        [*edges, queries, kvs],
        layout=dict(
            xaxis=dict(visible=False, range=[-0.7, n_heads - 0.3]),
            yaxis=dict(visible=False, range=[-0.45, 1.45]),
            height=230, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.05),
            plot_bgcolor="rgba(0,0,0,0)",
        ),
    )  # fmt: skip


def rope_score(offsets: np.ndarray, score: np.ndarray, *, offset: int, model_score: float,
               unrotated: float, scaled: str = "√d") -> go.Figure:  # fmt: skip
    """q·R(Δ)k / √d against the offset Δ, the model's own score marked at the real offset, and the same two
    vectors without rotation (RoPE off: one value at every offset) as a dashed line. ``scaled``: what the
    dot product is divided by, as the labels write it."""
    return go.Figure(
        [
            go.Scatter(x=offsets, y=np.asarray(score, dtype=np.float32), mode="lines",
                       name=f"q·R(Δ)k / {scaled}",
                       hovertemplate="Δ = %{x}<br>score = %{y:.4f}<extra></extra>"),
            go.Scatter(x=[offset], y=[model_score], mode="markers", name="the model's score (its trace)",
                       marker=dict(size=11, color=PICKED_COLOUR, symbol="diamond"),
                       hovertemplate="real offset Δ = %{x}<br>model's score = %{y:.4f}<extra></extra>"),
        ],
        layout=dict(
            xaxis=dict(title="offset Δ = query position − key position (tokens)"),
            yaxis=dict(title="pre-softmax score"),
            shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=unrotated, y1=unrotated,
                         line=dict(dash="dash", color="grey"))],
            annotations=[dict(xref="paper", x=1, y=unrotated, text=f"no rotation: q·k / {scaled}",
                              showarrow=False,
                              xanchor="right", yanchor="bottom", font=dict(color="grey"))],
            height=340, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12),
        ),
    )  # fmt: skip


def rope_pairs(pairs: np.ndarray, offsets: np.ndarray, wavelengths: np.ndarray, *, offset: int) -> go.Figure:
    """(pairs, S) each frequency pair's part of the score against Δ (diverging, zero white), each row
    labelled with its pair's wavelength; the real offset marked."""
    z = np.asarray(pairs, dtype=np.float32)
    lim = float(np.abs(z).max()) or 1.0
    rows = [f"{i}: λ {w:,.0f}" if w >= 100 else f"{i}: λ {w:.1f}" for i, w in enumerate(wavelengths)]
    custom = np.repeat(np.asarray(wavelengths, dtype=np.float64)[:, None], z.shape[1], 1)
    return go.Figure(
        go.Heatmap(
            z=z, x=offsets, y=list(range(z.shape[0])), customdata=custom, colorscale="RdBu", zmid=0,
            zmin=-lim, zmax=lim, colorbar=dict(title="part of<br>the score", thickness=12),
            hovertemplate="pair %{y} (wavelength %{customdata:,.1f} tokens)<br>Δ = %{x}<br>part = %{z:.4f}"
                          "<extra></extra>",
        ),
        layout=dict(
            xaxis=dict(title="offset Δ (tokens)"),
            yaxis=dict(title="frequency pair i", tickmode="array", tickvals=list(range(z.shape[0])),
                       ticktext=rows, autorange="reversed"),
            shapes=[dict(type="line", x0=offset, x1=offset, yref="paper", y0=0, y1=1,
                         line=dict(color="black", dash="dot"))],
            height=200 + 16 * z.shape[0], margin=dict(l=10, r=10, t=30, b=10),
        ),
    )  # fmt: skip
