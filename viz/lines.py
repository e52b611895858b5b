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


def picture_map(
    picture: np.ndarray,
    values: np.ndarray,
    *,
    title: str = "",
    value_name: str = "value",
    opacity: float = 0.6,
    marks: np.ndarray | None = None,
    mark_name: str = "",
    side: int = 360,
) -> go.Figure:
    """``values`` (g_r, g_c) — one per patch, or per pixel — over ``picture`` (H, W, 3) uint8, each cell
    covering H/g_r × W/g_c pixels (no smoothing: the cells are what was computed), exact value on hover;
    ``marks`` (g_r, g_c) bool: cells marked with a ring (``mark_name`` in the hover)."""
    img = np.asarray(picture, dtype=np.uint8)
    h, w = img.shape[:2]
    z = np.asarray(values, dtype=np.float32)
    g_r, g_c = z.shape
    dy, dx = h / g_r, w / g_c
    traces = [
        go.Image(z=img, hoverinfo="skip"),
        go.Heatmap(
            z=z, x0=(dx - 1) / 2, dx=dx, y0=(dy - 1) / 2, dy=dy, colorscale="Viridis", opacity=opacity,
            colorbar=dict(thickness=10, title=value_name),
            hovertemplate=f"row %{{customdata[0]}}, column %{{customdata[1]}}<br>{value_name} = %{{z:.5g}}"
            "<extra></extra>", customdata=np.stack(np.indices((g_r, g_c)), -1),
        ),
    ]  # fmt: skip
    if marks is not None and np.any(marks):
        rows, cols = np.nonzero(marks)
        traces.append(go.Scatter(
            x=(cols + 0.5) * dx - 0.5, y=(rows + 0.5) * dy - 0.5, mode="markers", name=mark_name,
            marker=dict(symbol="circle-open", size=max(8, 0.8 * side / g_c), color="#ff4b4b", line_width=2),
            hovertemplate=f"{mark_name}: row %{{customdata[0]}}, column %{{customdata[1]}}<extra></extra>",
            customdata=np.stack([rows, cols], -1),
        ))  # fmt: skip
    layout = dict(
        title=title, width=side + 80, height=side + 50, margin=dict(l=0, r=0, t=40, b=10), showlegend=False,
        xaxis=dict(visible=False, range=[-0.5, w - 0.5]),
        yaxis=dict(visible=False, range=[h - 0.5, -0.5], scaleanchor="x"),
    )  # fmt: skip
    return go.Figure(traces, layout=layout)
