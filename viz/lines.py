"""Pure line and overlay figures: the head view's query→key lines, attention over an image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from viz.labels import token_labels

HEAD_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
)


def head_lines(
    weights: np.ndarray,
    queries: Sequence[str],
    keys: Sequence[str],
    heads: Sequence[int],
    *,
    query: int | None = None,
    threshold: float = 0.05,
    opacity_bins: int = 4,
) -> go.Figure:
    """BertViz-style head view: tokens in two columns (queries left, keys right), a line from query i
    to key j for each shown head whose weight is ≥ ``threshold``, more opaque the larger the weight.

    weights (h, Tq, Tk). ``query`` shows only that query's lines. Lines are grouped by head and by
    weight bin (one trace each) because a Plotly trace has one opacity.
    """
    w = np.asarray(weights, dtype=np.float32)
    traces = []
    shown = range(len(queries)) if query is None else [query]
    edges = np.linspace(threshold, 1.0, opacity_bins + 1)
    for h in heads:
        colour = HEAD_COLOURS[h % len(HEAD_COLOURS)]
        first = True
        for b in range(opacity_bins):
            lo, hi = edges[b], edges[b + 1] + (1e-6 if b == opacity_bins - 1 else 0)
            xs, ys = [], []
            for i in shown:
                for j in np.nonzero((w[h, i] >= lo) & (w[h, i] < hi))[0]:
                    xs += [0, 1, None]
                    ys += [i, int(j), None]
            if xs:
                traces.append(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        line=dict(color=colour, width=2),
                        opacity=0.15 + 0.85 * (b + 1) / opacity_bins,
                        hoverinfo="skip",
                        name=f"head {h}",
                        legendgroup=f"h{h}",
                        showlegend=first,
                    )
                )
                first = False
    for x, anchor, tokens in ((0, "left", queries), (1, "right", keys)):  # queries left, keys right
        n = len(tokens)
        traces.append(
            go.Scatter(
                x=[x] * n,
                y=list(range(n)),
                mode="text",
                text=token_labels(tokens),
                textposition=f"middle {anchor}",
                hovertemplate="%{y}: %{text}<extra></extra>",
                showlegend=False,
                textfont=dict(
                    size=12, color=["#d62728" if query == i and x == 0 else "#222" for i in range(n)]
                ),
            )
        )
    layout = dict(
        xaxis=dict(visible=False, range=[-0.8, 1.8]),
        yaxis=dict(visible=False, autorange="reversed"),
        height=max(300, 22 * max(len(queries), len(keys)) + 80),
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=-0.02, yanchor="top"),
    )
    return go.Figure(traces, layout=layout)


def attention_overlay(
    image: np.ndarray,
    maps: np.ndarray,
    words: Sequence[str],
    *,
    active: int = 0,
    opacity: float = 0.55,
    side: int = 384,
) -> go.Figure:
    """The image with one attention map per word laid over it, smoothed, with a word slider and a
    play button (Plotly frames). image (H, W, 3) uint8; maps (T, g, g) — each map's cells cover
    H/g × W/g pixels. Hover shows the cell and the exact weight."""
    img = np.asarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    maps = np.asarray(maps, dtype=np.float32)
    g = maps.shape[-1]
    zmax = float(maps.max()) or 1.0

    def heat(t: int) -> go.Heatmap:
        return go.Heatmap(
            z=maps[t],
            x0=(w / g - 1) / 2,
            dx=w / g,
            y0=(h / g - 1) / 2,
            dy=h / g,
            zsmooth="best",
            colorscale="Inferno",
            zmin=0,
            zmax=zmax,
            opacity=opacity,
            showscale=False,
            hovertemplate="cell (%{y:.0f}, %{x:.0f})<br>α = %{z:.4f}<extra></extra>",
        )

    labels = token_labels(words)
    steps = [
        dict(
            method="animate",
            label=labels[t],
            args=[
                [str(t)],
                dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
            ],
        )
        for t in range(len(words))
    ]
    layout = dict(
        width=side,
        height=side + 110,
        margin=dict(l=0, r=0, t=10, b=10),
        xaxis=dict(visible=False, range=[-0.5, w - 0.5]),
        yaxis=dict(visible=False, range=[h - 0.5, -0.5], scaleanchor="x"),
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix="word: "), pad=dict(t=30))],
        updatemenus=[
            dict(
                type="buttons",
                showactive=False,
                x=0,
                y=-0.02,
                xanchor="left",
                yanchor="top",
                buttons=[
                    dict(
                        label="▶ play",
                        method="animate",
                        args=[
                            None,
                            dict(
                                frame=dict(duration=700, redraw=True),
                                fromcurrent=True,
                                transition=dict(duration=0),
                            ),
                        ],
                    )
                ],
            )
        ],
    )
    return go.Figure(
        data=[go.Image(z=img, hoverinfo="skip"), heat(active)],
        frames=[go.Frame(data=[heat(t)], traces=[1], name=str(t)) for t in range(len(words))],
        layout=layout,
    )
