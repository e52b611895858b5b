"""The "Attention vs importance" view every page shares: does attention explain the output here?

A family's runner builds a `runners.importance.Comparison` (importance by ablation, and raw
attention, rollout, gradient × input on the same positions); this view shows the Spearman of each
measure with importance on the current input, next to the held-out average from the model's card,
a scatter of the chosen measure, and what a low value means.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import streamlit as st

from runners.importance import Comparison
from viz.charts import importance_scatter

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
