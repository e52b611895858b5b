"""Figures for circuits: the logit lens grid, a layers × heads or layers × positions effect grid, and
attribution patching against exact patching. Arrays in, figures out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from viz.heatmaps import matrix_heatmap
from viz.labels import axis


def lens_grid(
    values: np.ndarray,
    tops: Sequence[Sequence[str]],
    stages: Sequence[str],
    positions: Sequence[str],
    *,
    value_name: str,
    title: str,
) -> go.Figure:
    """(S, T) values, one row per stage of the residual stream, one column per position; hover gives
    the exact value and that stage's top guesses there (``tops`` (S, T) strings)."""
    z = np.asarray(values, dtype=np.float32)
    diverging = value_name.startswith("logit")
    lim = float(np.abs(z).max()) or 1.0
    return go.Figure(
        go.Heatmap(
            z=z,
            customdata=np.asarray(tops, dtype=object),
            colorscale="RdBu" if diverging else "Viridis",
            zmid=0 if diverging else None,
            zmin=-lim if diverging else 0,
            zmax=lim if diverging else None,
            hovertemplate=f"%{{y}} · %{{x}}<br>{value_name} = %{{z:.4f}}<br>top: %{{customdata}}"
            "<extra></extra>",
            colorbar=dict(thickness=12, title=value_name),
        ),
        layout=dict(
            title=title,
            xaxis=axis(positions, "position"),
            yaxis={**axis(stages, "residual stream after"), "autorange": "reversed"},
            height=min(900, 160 + 14 * z.shape[0]),
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )


def effect_grid(z: np.ndarray, *, rows: Sequence[str], cols: Sequence[str], value_name: str, title: str,
                x_title: str, y_title: str = "layer") -> go.Figure:  # fmt: skip
    """Any (rows, cols) grid of effects, 0 white, exact values on hover."""
    return matrix_heatmap(z, title=title, x_title=x_title, y_title=y_title, value_name=value_name,
                          x_labels=cols, y_labels=rows)  # fmt: skip


def estimate_vs_exact(
    estimate: np.ndarray, exact: np.ndarray, names: Sequence[str], *, title: str
) -> go.Figure:
    """Attribution patching's estimate of each cell against exact patching, one point per cell."""
    lo = float(min(estimate.min(), exact.min()))
    hi = float(max(estimate.max(), exact.max()))
    return go.Figure(
        [
            go.Scatter(
                x=exact.ravel(),
                y=estimate.ravel(),
                mode="markers",
                text=list(names),
                name="cells",
                hovertemplate="%{text}<br>exact %{x:.4f}<br>estimate %{y:.4f}<extra></extra>",
            ),
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="estimate = exact", line=dict(dash="dot")),
        ],
        layout=dict(
            title=title,
            xaxis_title="exact patching: Δ logit difference",
            yaxis_title="attribution patching: Δ estimated",
            height=420,
            margin=dict(l=10, r=10, t=40, b=10),
        ),
    )
