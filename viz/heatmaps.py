"""Pure figure builders: arrays in, `plotly.graph_objects.Figure` out. No Streamlit here.

Conventions:
- token axes are integer positions with tick labels, so a repeated token ("the … the") keeps its
  own row/column; the token text rides in ``customdata`` for the hover;
- matrices go out as float32 (half the bytes of float64; float16 would fall back to lists);
- hover shows the exact value the model computed, to 4 decimals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

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
    annotate: bool = False,
) -> go.Figure:
    """A (rows × cols) weight matrix with optional gold links marked on top.

    ``gold_sure``/``gold_possible`` are (row, col) cells: sure links as red squares, possible-only
    links as amber outlines. ``annotate`` writes each value in its cell: a view's opt-in, since
    Plotly draws one SVG text per cell (four changed 16×16 maps took ~0.45 s more to repaint in
    Chromium with their numbers than without); hover shows the exact value either way.
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (len(rows), len(cols)):
        raise ValueError(f"weights {w.shape} do not match {len(rows)} row and {len(cols)} column labels")
    rl, cl = token_labels(rows), token_labels(cols)
    custom = np.empty(w.shape + (2,), dtype=object)
    custom[..., 0] = np.array(rl, dtype=object)[:, None]
    custom[..., 1] = np.array(cl, dtype=object)[None, :]
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
    traces = [heat]
    sure = set(gold_sure)
    for cells, name, symbol, colour in (
        (sorted(sure), "gold (sure)", "square-open", SURE_COLOUR),
        (sorted(set(gold_possible) - sure), "gold (possible)", "circle-open", POSSIBLE_COLOUR),
    ):
        if cells:
            traces.append(
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
    layout = dict(
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
    return go.Figure(traces, layout=layout)


def head_grid(
    weights: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    row_names: Sequence[str],
    col_names: Sequence[str],
    height_per_row: int = 220,
) -> go.Figure:
    """Small multiples: weights (R, C, Tq, Tk) → an R × C grid of panels on one colour scale.

    Drawn as ONE heatmap with the panels tiled (one empty row and column between them), not R·C
    subplots: a 6 × 12 model view renders in a fraction of the time. Every row and column has its own
    category label ("L2 · q5 ‘the’", "H3 · k12 ‘cat’"), so the hover names the panel, both tokens and
    the exact weight; panel names sit on the axes.
    """
    w = np.asarray(weights, dtype=np.float32)
    n_r, n_c, tq, tk = w.shape
    z = np.full((n_r * (tq + 1) - 1, n_c * (tk + 1) - 1), np.nan, dtype=np.float32)
    for i in range(n_r):
        for j in range(n_c):
            z[i * (tq + 1) : i * (tq + 1) + tq, j * (tk + 1) : j * (tk + 1) + tk] = w[i, j]
    ql, kl = token_labels(rows), token_labels(cols)

    def axis_labels(names: Sequence[str], tokens: list[str], letter: str) -> tuple[list[str], list[str]]:
        n = len(tokens)
        labels = []
        for panel, name in enumerate(names):
            labels += [f"{name} · {letter}{t} ‘{tok}’" for t, tok in enumerate(tokens)]
            if panel < len(names) - 1:
                labels.append(" " * (panel + 1))  # the gap: unique, blank
        centres = [labels[p * (n + 1) + n // 2] for p in range(len(names))]
        return labels, centres

    y_labels, y_centres = axis_labels(row_names, ql, "q")
    x_labels, x_centres = axis_labels(col_names, kl, "k")
    return go.Figure(
        go.Heatmap(
            z=z,
            x=x_labels,
            y=y_labels,
            colorscale=SCALE,
            zmin=0,
            zmax=1,
            hoverongaps=False,
            colorbar=dict(title="w", thickness=12),
            hovertemplate="%{y}<br>%{x}<br>w = %{z:.4f}<extra></extra>",
        ),
        layout=dict(
            xaxis=dict(
                side="top", tickmode="array", tickvals=x_centres, ticktext=list(col_names), showgrid=False
            ),
            yaxis=dict(
                tickmode="array",
                tickvals=y_centres,
                ticktext=list(row_names),
                autorange="reversed",
                showgrid=False,
            ),
            height=60 + height_per_row * n_r,
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )


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
    lim = (float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.0) or 1.0  # NaN cells stay blank
    return go.Figure(
        go.Heatmap(
            z=z,
            colorscale="RdBu" if diverging else SCALE,
            zmid=0 if diverging else None,
            zmin=-lim if diverging else None,
            zmax=lim if diverging else None,
            hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>{value_name} = %{{z:.4f}}<extra></extra>",
            colorbar=dict(thickness=12, title=value_name),
        ),
        layout=dict(
            title=title,
            xaxis=axis(x_labels, x_title),
            yaxis={**axis(y_labels, y_title), "autorange": "reversed"},
            height=min(700, 140 + 18 * z.shape[0]),
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )
