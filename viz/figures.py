"""Pure figure builders: arrays in, `plotly.graph_objects.Figure` out. No Streamlit here.

Conventions (see shared/notes/ecosystem.md):
- token axes are integer positions with tick labels, so a repeated token ("the … the") keeps its
  own row/column; the token text rides in ``customdata`` for the hover;
- matrices go out as float32 (half the bytes of float64; float16 would fall back to lists);
- hover shows the exact value the model computed, to 4 decimals.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SCALE = "Viridis"
SURE_COLOUR, POSSIBLE_COLOUR = "#ff4b4b", "#ffb000"


def _labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as Plotly text: '<', '>' and '&' escaped (Plotly reads pseudo-HTML in labels, so
    '</s>' or a user's '<b>' would be parsed as markup) and blanks shown as '␣'."""
    return [html.escape(t, quote=False) if t.strip() else "␣" for t in tokens]


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
    rl, cl = _labels(rows), _labels(cols)
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
            **_axis(cols, col_title),
            "side": "top",
            "tickangle": 0 if max(map(len, cols), default=0) <= 2 else -60,
        },
        yaxis={**_axis(rows, row_title), "autorange": "reversed"},
        height=160 + 24 * len(rows) + 5 * max(map(len, cols), default=0),
        margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", y=-0.05),
    )
    return fig


def step_bars(
    scores: np.ndarray, weights: np.ndarray, tokens: Sequence[str], *, score_name: str = "e_t"
) -> go.Figure:
    """Two aligned bar charts over the source tokens: the scores e_t and the weights α_t."""
    labels = _labels(tokens)
    x = np.arange(len(tokens))
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(f"scores {score_name} (into the softmax)", "weights α_t = softmax"),
    )
    for row, values, name, fmt in ((1, scores, score_name, ".4f"), (2, weights, "α_t", ".4f")):
        fig.add_trace(
            go.Bar(
                x=x,
                y=np.asarray(values, dtype=np.float32),
                name=name,
                customdata=labels,
                hovertemplate=f"%{{x}} '%{{customdata}}'<br>{name} = %{{y:{fmt}}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
    fig.update_xaxes(tickmode="array", tickvals=list(x), ticktext=labels, row=2, col=1)
    fig.update_layout(showlegend=False, height=420, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def vector_strips(vectors: Mapping[str, np.ndarray]) -> go.Figure:
    """Vectors as labelled rows of a heatmap (context, states, q, head outputs). Shorter rows are
    padded with NaN, which Plotly leaves blank."""
    names = list(vectors)
    rows = [np.asarray(vectors[n], dtype=np.float32).ravel() for n in names]
    z = np.full((len(rows), max(len(r) for r in rows)), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        z[i, : len(r)] = r
    lim = float(np.nanmax(np.abs(z))) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            y=np.arange(len(names)),
            colorscale="RdBu",
            zmid=0,
            zmin=-lim,
            zmax=lim,
            customdata=np.array([[n] * z.shape[1] for n in names], dtype=object),
            hovertemplate="%{customdata}[%{x}] = %{z:.4f}<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    fig.update_layout(
        yaxis=dict(tickmode="array", tickvals=list(range(len(names))), ticktext=names, autorange="reversed"),
        xaxis=dict(title="dimension"),
        height=80 + 40 * len(names),
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig


def token_bars(tokens: Sequence[str], values: np.ndarray, *, name: str, title: str = "") -> go.Figure:
    """One bar per token (e.g. per-token loss under teacher forcing)."""
    labels = _labels(tokens)
    fig = go.Figure(
        go.Bar(
            x=np.arange(len(tokens)),
            y=np.asarray(values, dtype=np.float32),
            customdata=labels,
            hovertemplate=f"%{{x}} '%{{customdata}}'<br>{name} = %{{y:.4f}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis=dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=labels),
        yaxis=dict(title=name, tickformat=".2~g"),
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig


def length_curves(
    curves: Mapping[str, Mapping[str, float]], *, unit: str, highlight: str | None = None
) -> go.Figure:
    """Exact match by source-length bucket, one line per model; ``highlight`` marks a bucket."""
    fig = go.Figure()
    for name, points in curves.items():
        fig.add_trace(
            go.Scatter(
                x=list(points),
                y=list(points.values()),
                mode="lines+markers",
                name=name,
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    if highlight is not None:
        # add_vline's annotation cannot average category labels; a shape + annotation can.
        fig.add_shape(
            type="line",
            x0=highlight,
            x1=highlight,
            y0=0,
            y1=1,
            yref="paper",
            line=dict(dash="dot", color="grey"),
        )
        fig.add_annotation(
            x=highlight, y=1, yref="paper", text="your input", showarrow=False, yanchor="bottom"
        )
    fig.update_layout(
        xaxis=dict(title=f"source length ({unit})", type="category"),
        yaxis=dict(title="exact match (test split)", range=[0, 1.02]),
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h"),
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
    rl, cl = _labels(rows), _labels(cols)
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
        xaxis=_axis(x_labels, x_title),
        yaxis={**_axis(y_labels, y_title), "autorange": "reversed"},
        height=min(700, 140 + 18 * z.shape[0]),
        margin=dict(l=10, r=10, t=40, b=10),
    )
    return fig


def _axis(labels: Sequence[str] | None, title: str) -> dict:
    if labels is None:
        return dict(title=title)
    return dict(title=title, tickmode="array", tickvals=list(range(len(labels))), ticktext=_labels(labels))


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    x_title: str,
    y_title: str,
    title: str = "",
    log_y: bool = False,
) -> go.Figure:
    """Named (x, y) series as lines (training curves, gradient norms)."""
    hover = f"{x_title} %{{x}}<br>{y_title} %{{y:.5g}}<extra>%{{fullData.name}}</extra>"
    fig = go.Figure(
        [
            go.Scatter(x=list(x), y=list(y), mode="lines", name=name, hovertemplate=hover)
            for name, (x, y) in series.items()
        ]
    )
    fig.update_layout(
        title=title,
        xaxis=dict(title=x_title),
        yaxis=dict(title=y_title, type="log" if log_y else None),
        height=320,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    return fig


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
    tokens: Sequence[str],
    heads: Sequence[int],
    *,
    query: int | None = None,
    threshold: float = 0.05,
    opacity_bins: int = 4,
) -> go.Figure:
    """BertViz-style head view: tokens in two columns (queries left, keys right), a line from query i
    to key j for each shown head whose weight is ≥ ``threshold``, more opaque the larger the weight.

    weights (h, T, T). ``query`` shows only that token's lines. Lines are grouped by head and by
    weight bin (one trace each) because a Plotly trace has one opacity.
    """
    w = np.asarray(weights, dtype=np.float32)
    n = len(tokens)
    labels = _labels(tokens)
    fig = go.Figure()
    queries = range(n) if query is None else [query]
    edges = np.linspace(threshold, 1.0, opacity_bins + 1)
    for h in heads:
        colour = HEAD_COLOURS[h % len(HEAD_COLOURS)]
        first = True
        for b in range(opacity_bins):
            lo, hi = edges[b], edges[b + 1] + (1e-6 if b == opacity_bins - 1 else 0)
            xs, ys = [], []
            for i in queries:
                for j in np.nonzero((w[h, i] >= lo) & (w[h, i] < hi))[0]:
                    xs += [0, 1, None]
                    ys += [i, int(j), None]
            if xs:
                fig.add_trace(
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
    for x, anchor in ((0, "left"), (1, "right")):  # queries' labels left of x=0, keys' right of x=1
        fig.add_trace(
            go.Scatter(
                x=[x] * n,
                y=list(range(n)),
                mode="text",
                text=labels,
                textposition=f"middle {anchor}",
                hovertemplate="%{y}: %{text}<extra></extra>",
                showlegend=False,
                textfont=dict(
                    size=12, color=["#d62728" if query == i and x == 0 else "#222" for i in range(n)]
                ),
            )
        )
    fig.update_layout(
        xaxis=dict(visible=False, range=[-0.8, 1.8]),
        yaxis=dict(visible=False, autorange="reversed"),
        height=max(300, 22 * n + 80),
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=-0.02, yanchor="top"),
    )
    return fig


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

    labels = _labels(words)
    fig = go.Figure(
        data=[go.Image(z=img, hoverinfo="skip"), heat(active)],
        frames=[go.Frame(data=[heat(t)], traces=[1], name=str(t)) for t in range(len(words))],
    )
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
    fig.update_layout(
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
    return fig
