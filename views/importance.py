"""The "Attention vs importance" view every page shares: does attention explain the output here?

A family's runner builds a `analysis.importance.Comparison` (importance by ablation, and raw
attention, rollout, gradient × input on the same positions); this view shows the Spearman of each
measure with importance on the current input, next to the held-out average from the model's card,
a scatter of the chosen measure, and what a low value means.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import streamlit as st

from analysis.importance import Comparison, PerToken, mean_correlations
from viz.charts import importance_scatter
from viz.heatmaps import matrix_heatmap

CAVEAT = (
    "**How to read this.** Spearman compares rankings: +1 means the measure orders the positions "
    "exactly as ablation does, 0 means its order says nothing about which positions the output needs, "
    "and a negative value means it points the other way. A low value for raw attention is what "
    "Jain & Wallace (2019) and Abnar & Zuidema (2020) reported on larger models: a weight says where a "
    "head looked, not what the output depended on — the residual stream, later layers and the values "
    "themselves all stand between the two. Ablation is itself one definition of importance (a position "
    "replaced, one at a time; interactions between positions are not measured)."
)


def _value(x: float) -> str:
    return "— (a constant ranking)" if np.isnan(x) else f"{x:+.3f}"


def comparison(
    comp: Comparison, key: str, *, held_out: Mapping[str, Mapping[str, float]] | None = None
) -> None:
    """Spearman of every measure with importance (this input, and the card's held-out mean), a
    scatter of one measure, the per-position numbers, and the caveat."""
    rows = [
        {
            "measure": name,
            "Spearman, this input": _value(r),
            "Spearman, held-out mean": (
                f"{_value(held_out[name]['mean'])} (n = {held_out[name]['n']})"
                if held_out and name in held_out
                else "not in the card"
            ),
        }
        for name, r in comp.correlations.items()
    ]
    st.markdown(
        f"**Importance** of each position = the drop in {comp.quantity} when that position alone is "
        "ablated. Each measure below is ranked against it (Spearman rank correlation):"
    )
    st.table(rows)
    names = list(comp.measures)
    name = st.radio("Scatter", names, horizontal=True, key=f"{key}_imp_measure")
    st.plotly_chart(
        importance_scatter(
            comp.importance,
            comp.measures[name],
            comp.positions,
            measure_name=name,
            quantity=comp.quantity,
            correlation=comp.correlations[name],
        ),
        key=f"{key}_imp_scatter",
    )
    with st.expander("Per-position numbers"):
        number = st.column_config.NumberColumn(format="%.5f")
        table = {"position": list(comp.positions), "importance": comp.importance, **comp.measures}
        st.dataframe(table, hide_index=True, column_config={k: number for k in list(table)[1:]})
    st.info(CAVEAT)


def per_output_token(
    per_token: PerToken, key: str, *, held_out: Mapping[str, Mapping[str, float]] | None = None
) -> int:
    """An output-token picker (widget key ``{key}_imp_token``), each measure's Spearman averaged
    over this output's tokens, and the picked token's `comparison`. Returns the picked token's
    index, for the page to add what it knows about that token (gold links, a map)."""
    output = per_token.output
    t = st.select_slider(
        "Output token (importance = the drop in its log p)",
        options=list(range(len(output))),
        format_func=lambda i: f"{i + 1}: {output[i]}",
        key=f"{key}_imp_token",
    )
    means = mean_correlations(per_token.comparisons())
    shown = ", ".join(f"{name} **{_value(m['mean'])}**" for name, m in means.items())
    st.markdown(f"Spearman with importance, averaged over this output's {len(output)} tokens: {shown}.")
    comparison(per_token.comparison(t), key, held_out=held_out)
    return t


def grid_maps(per_token: PerToken, t: int, grid: int, key: str) -> None:
    """For positions that tile an image (row-major grid × grid regions): output token ``t``'s
    importance and every measure drawn over the grid side by side, exact values on hover."""
    word = per_token.output[t]
    maps = {"importance": per_token.importance[t], **{n: v[t] for n, v in per_token.measures.items()}}
    for i, (column, (name, values)) in enumerate(zip(st.columns(len(maps)), maps.items(), strict=True)):
        figure = matrix_heatmap(
            np.asarray(values).reshape(grid, grid),
            title=f"{name} for “{word}”",
            x_title="column",
            y_title="row",
            value_name=name,
            diverging=bool(np.min(values) < 0),  # importance and gradient × input can be negative
        )
        column.plotly_chart(figure, key=f"{key}_imp_map_{i}")
