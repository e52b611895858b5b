"""Pure bar, strip and line charts (arrays in, figures out): steps, vectors, curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.labels import token_labels


def step_bars(
    scores: np.ndarray, weights: np.ndarray, tokens: Sequence[str], *, score_name: str = "e_t"
) -> go.Figure:
    """Two aligned bar charts over the source tokens: the scores e_t and the weights α_t."""
    labels = token_labels(tokens)
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
    return go.Figure(
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
        ),
        layout=dict(
            yaxis=dict(
                tickmode="array", tickvals=list(range(len(names))), ticktext=names, autorange="reversed"
            ),
            xaxis=dict(title="dimension"),
            height=80 + 40 * len(names),
            margin=dict(l=10, r=10, t=10, b=10),
        ),
    )


def token_bars(tokens: Sequence[str], values: np.ndarray, *, name: str, title: str = "") -> go.Figure:
    """One bar per token (e.g. per-token loss under teacher forcing)."""
    labels = token_labels(tokens)
    return go.Figure(
        go.Bar(
            x=np.arange(len(tokens)),
            y=np.asarray(values, dtype=np.float32),
            customdata=labels,
            hovertemplate=f"%{{x}} '%{{customdata}}'<br>{name} = %{{y:.4f}}<extra></extra>",
        ),
        layout=dict(
            title=title,
            xaxis=dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=labels),
            yaxis=dict(title=name, tickformat=".2~g"),
            height=300,
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )


def length_curves(
    curves: Mapping[str, Mapping[str, float]], *, unit: str, highlight: str | None = None
) -> go.Figure:
    """Exact match by source-length bucket, one line per model; ``highlight`` marks a bucket."""
    traces = [
        go.Scatter(
            x=list(points),
            y=list(points.values()),
            mode="lines+markers",
            name=name,
            hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
        )
        for name, points in curves.items()
    ]
    layout = dict(
        xaxis=dict(title=f"source length ({unit})", type="category"),
        yaxis=dict(title="exact match (test split)", range=[0, 1.02]),
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h"),
    )
    if highlight is not None:
        # add_vline's annotation cannot average category labels; a shape + annotation can.
        layout["shapes"] = [
            dict(
                type="line",
                x0=highlight,
                x1=highlight,
                y0=0,
                y1=1,
                yref="paper",
                line=dict(dash="dot", color="grey"),
            )
        ]
        layout["annotations"] = [
            dict(x=highlight, y=1, yref="paper", text="your input", showarrow=False, yanchor="bottom")
        ]
    return go.Figure(traces, layout=layout)


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
    return go.Figure(
        [
            go.Scatter(x=list(x), y=list(y), mode="lines", name=name, hovertemplate=hover)
            for name, (x, y) in series.items()
        ],
        layout=dict(
            title=title,
            xaxis=dict(title=x_title),
            yaxis=dict(title=y_title, type="log" if log_y else None),
            height=320,
            margin=dict(l=10, r=10, t=40, b=10),
            legend=dict(orientation="h"),
        ),
    )


def importance_scatter(importance: np.ndarray, measure: np.ndarray, positions: Sequence[str], *,
                       measure_name: str, quantity: str, correlation: float) -> go.Figure:  # fmt: skip
    """One point per input position: a measure (x) against its importance by ablation (y)."""
    labels = token_labels(positions)
    return go.Figure(
        go.Scatter(
            x=np.asarray(measure, dtype=np.float32),
            y=np.asarray(importance, dtype=np.float32),
            mode="markers+text" if len(labels) <= 24 else "markers",
            text=labels,
            textposition="top center",
            hovertemplate=(
                f"'%{{text}}'<br>{measure_name} = %{{x:.4f}}<br>importance = %{{y:.4f}}<extra></extra>"
            ),
        ),
        layout=dict(
            title=f"{measure_name} vs importance — Spearman {correlation:+.3f}",
            xaxis_title=measure_name,
            yaxis_title=f"drop in {quantity} when ablated",
            height=380,
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )
