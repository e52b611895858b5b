"""Token text as Plotly shows it, for every figure module (see viz/heatmaps.py for conventions)."""

from __future__ import annotations

import html
from collections.abc import Sequence

SCALE = "Viridis"


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as Plotly text: '<', '>' and '&' escaped (Plotly reads pseudo-HTML in labels, so
    '</s>' or a user's '<b>' would be parsed as markup) and blanks shown as '␣'."""
    return [html.escape(t, quote=False) if t.strip() else "␣" for t in tokens]


def axis(labels: Sequence[str] | None, title: str) -> dict:
    if labels is None:
        return dict(title=title)
    ticks = list(range(len(labels)))
    return dict(title=title, tickmode="array", tickvals=ticks, ticktext=token_labels(labels))
