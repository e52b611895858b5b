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

from viz.labels import SCALE, axis


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
