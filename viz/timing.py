"""Pure timing charts (arrays in, figures out): measured time against sequence length."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go


def timing_curves(
    lengths: Sequence[int],
    series: Mapping[str, Sequence[float]],
    *,
    dashed: Collection[str] = (),
    title: str = "",
) -> go.Figure:
    """One line per named series of times (ms) over ``lengths``, both axes logarithmic; the series
    named in ``dashed`` are drawn dashed (e.g. forward + backward beside forward)."""
    hover = "n = %{x}<br>%{y:.4g} ms<extra>%{fullData.name}</extra>"
    traces = [
        go.Scatter(
            x=list(lengths),
            y=np.asarray(times, dtype=np.float64),
            mode="lines+markers",
            name=name,
            line=dict(dash="dash" if name in dashed else "solid"),
            hovertemplate=hover,
        )
        for name, times in series.items()
    ]
    return go.Figure(
        traces,
        layout=dict(
            title=title,
            xaxis=dict(title="sequence length n", type="log", tickvals=list(lengths)),
            yaxis=dict(title="median time (ms)", type="log"),
            height=360,
            margin=dict(l=10, r=10, t=40, b=10),
            legend=dict(orientation="h"),
        ),
    )
