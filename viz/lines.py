"""Pure overlay figures: attention over an image (the head view's lines are drawn by the attention
component, views/attention_component.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from viz.labels import token_labels


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
