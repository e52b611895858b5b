"""Pure sweep charts (arrays in, figures out): a measurement against a swept hyperparameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go


def lr_sweep(
    series: Mapping[str, tuple[Sequence[float], Sequence[float | None], Sequence[bool]]],
    *,
    y_title: str,
    title: str = "",
    log_y: bool = False,
    y_range: tuple[float, float] | None = None,
    reference: tuple[str, float] | None = None,
) -> go.Figure:
    """One line per named series of (peak learning rates, values, failed flags) on a log x axis; a
    failed run is drawn as a cross, a missing value (None: no finite number) leaves a gap.
    ``reference`` = (label, y) draws a dotted horizontal line (e.g. a baseline loss)."""
    hover = f"peak lr %{{x:.3g}}<br>{y_title} %{{y:.4g}}<br>%{{customdata}}<extra>%{{fullData.name}}</extra>"
    traces = [
        go.Scatter(
            x=list(lrs),
            y=list(values),
            mode="lines+markers",
            name=name,
            marker=dict(
                symbol=["x" if f else "circle" for f in failed], size=[12 if f else 8 for f in failed]
            ),
            customdata=["failed" if f else "trained" for f in failed],
            hovertemplate=hover,
        )
        for name, (lrs, values, failed) in series.items()
    ]
    layout = dict(
        title=title,
        xaxis=dict(title="peak learning rate", type="log"),
        yaxis=dict(title=y_title, type="log" if log_y else None, range=list(y_range) if y_range else None),
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    figure = go.Figure(traces, layout=layout)
    if reference is not None:
        label, y = reference
        figure.add_hline(y=y, line=dict(dash="dot", color="grey"), annotation_text=label)
    return figure
