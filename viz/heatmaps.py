"""Pure figure builders: arrays in, `plotly.graph_objects.Figure` out. No Streamlit here.

Conventions (see shared/notes/ecosystem.md):
- token axes are integer positions with tick labels, so a repeated token ("the … the") keeps its
  own row/column; the token text rides in ``customdata`` for the hover;
- matrices go out as float32 (half the bytes of float64; float16 would fall back to lists);
- hover shows the exact value the model computed, to 4 decimals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.labels import POSSIBLE_COLOUR, SCALE, SURE_COLOUR, axis, token_labels


def attention_heatmap(
    weights: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str = "",
    row_title: str = "output",
    col_title: str = "source",
    value_name: str = "α",
    gold_sure: Sequence[tuple[int, int]] = (),
    gold_possible: Sequence[tuple[int, int]] = (),
    annotate: bool | None = None,
) -> go.Figure:
    """A (rows × cols) weight matrix with optional gold links marked on top.

    ``gold_sure``/``gold_possible`` are (row, col) cells: sure links as red squares, possible-only
    links as amber outlines. Cells are annotated with their value when the matrix is small.
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (len(rows), len(cols)):
        raise ValueError(f"weights {w.shape} do not match {len(rows)} row and {len(cols)} column labels")
    rl, cl = token_labels(rows), token_labels(cols)
    custom = np.empty(w.shape + (2,), dtype=object)
    custom[..., 0] = np.array(rl, dtype=object)[:, None]
    custom[..., 1] = np.array(cl, dtype=object)[None, :]
    annotate = w.size <= 400 if annotate is None else annotate
    heat = go.Heatmap(
        z=w,
        x=np.arange(len(cols)),
        y=np.arange(len(rows)),
        customdata=custom,
        colorscale=SCALE,
        zmin=0.0,
        zmax=max(1e-6, float(np.nanmax(w))) if w.size else 1.0,
        colorbar=dict(title=value_name, thickness=12),
        hovertemplate=(
            f"{row_title} %{{y}} '%{{customdata[0]}}'<br>{col_title} %{{x}} '%{{customdata[1]}}'"
            f"<br>{value_name} = %{{z:.4f}}<extra></extra>"
        ),
        texttemplate="%{z:.2f}" if annotate else None,
        textfont=dict(size=9),
        name="weights",
    )
    fig = go.Figure(heat)
    sure = set(gold_sure)
    for cells, name, symbol, colour in (
        (sorted(sure), "gold (sure)", "square-open", SURE_COLOUR),
        (sorted(set(gold_possible) - sure), "gold (possible)", "circle-open", POSSIBLE_COLOUR),
    ):
        if cells:
            fig.add_trace(
                go.Scatter(
                    x=[c for _, c in cells],
                    y=[r for r, _ in cells],
                    mode="markers",
                    marker=dict(
                        symbol=symbol,
                        size=16 if symbol.startswith("square") else 9,
                        color=colour,
                        line=dict(width=2.5, color=colour),
                    ),
                    name=name,
                    hoverinfo="skip",
                )
            )
    fig.update_layout(
        title=title,
        xaxis={
            **axis(cols, col_title),
            "side": "top",
            "tickangle": 0 if max(map(len, cols), default=0) <= 2 else -60,
        },
        yaxis={**axis(rows, row_title), "autorange": "reversed"},
        height=160 + 24 * len(rows) + 5 * max(map(len, cols), default=0),
        margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", y=-0.05),
    )
    return fig


def head_grid(
    weights: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    row_names: Sequence[str],
    col_names: Sequence[str],
    focus: tuple[int, int] | None = None,
    height_per_row: int = 220,
) -> go.Figure:
    """Small multiples: weights (R, C, Tq, Tk) → an R × C grid of heatmaps on one colour scale.

    Used for the head view (1 × heads) and the model view (layers × heads). ``focus`` outlines
    one cell. Tokens stay distinct (integer axes); the hover names the panel, tokens and value.
    """
    w = np.asarray(weights, dtype=np.float32)
    n_r, n_c = w.shape[:2]
    fig = make_subplots(
        rows=n_r,
        cols=n_c,
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
        subplot_titles=[f"{r} · {c}" for r in row_names for c in col_names],
    )
    rl, cl = token_labels(rows), token_labels(cols)
    custom = np.empty(w.shape[2:] + (2,), dtype=object)
    custom[..., 0] = np.array(rl, dtype=object)[:, None]
    custom[..., 1] = np.array(cl, dtype=object)[None, :]
    for i in range(n_r):
        for j in range(n_c):
            fig.add_trace(
                go.Heatmap(
                    z=w[i, j],
                    coloraxis="coloraxis",
                    customdata=custom,
                    hovertemplate=f"{row_names[i]} · {col_names[j]}<br>q %{{y}} '%{{customdata[0]}}'"
                    "<br>k %{x} '%{customdata[1]}'<br>w = %{z:.4f}<extra></extra>",
                ),
                row=i + 1,
                col=j + 1,
            )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    if focus is not None:
        axis = focus[0] * n_c + focus[1] + 1
        suffix = "" if axis == 1 else str(axis)
        fig.add_shape(
            type="rect",
            xref=f"x{suffix} domain",
            yref=f"y{suffix} domain",
            x0=0,
            x1=1,
            y0=0,
            y1=1,
            line=dict(color=SURE_COLOUR, width=3),
        )
    scale = dict(colorscale=SCALE, cmin=0, cmax=1, colorbar=dict(title="w", thickness=12))
    fig.update_layout(coloraxis=scale, height=60 + height_per_row * n_r, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_annotations(font_size=11)
    return fig


def matrix_heatmap(
    z: np.ndarray,
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    value_name: str = "value",
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    diverging: bool = True,
) -> go.Figure:
    """Any matrix (weights W, positional encodings, similarities) with exact values on hover."""
    z = np.asarray(z, dtype=np.float32)
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            colorscale="RdBu" if diverging else SCALE,
            zmid=0 if diverging else None,
            zmin=-lim if diverging else None,
            zmax=lim if diverging else None,
            hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>{value_name} = %{{z:.4f}}<extra></extra>",
            colorbar=dict(thickness=12, title=value_name),
        )
    )
    fig.update_layout(
        title=title,
        xaxis=axis(x_labels, x_title),
        yaxis={**axis(y_labels, y_title), "autorange": "reversed"},
        height=min(700, 140 + 18 * z.shape[0]),
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig
