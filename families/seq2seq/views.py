"""The seq2seq page's step inspector: one decoder step of a run, every number the model's own."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from families.seq2seq.runner import Seq2SeqRun
from views.inputs import md_escape
from viz.charts import step_bars, vector_strips

SCORE_FORMULAS = {
    "additive": r"e_{t,i} = v^\top \tanh(W_q\, s_{t-1} + W_k\, h_i + b)",
    "dot": r"e_{t,i} = s_{t-1} \cdot h_i",
    "general": r"e_{t,i} = s_{t-1}^\top W\, h_i",
    "scaled_dot": r"e_{t,i} = \dfrac{s_{t-1} \cdot h_i}{\sqrt{d_k}}",
}


@st.fragment
def step_inspector(run: Seq2SeqRun, scoring: str, labels: Sequence[str]) -> None:
    """One decoder step of ``run`` (its source tokens shown as ``labels``): scores, weights, context
    (checked against Σ α h), next-token probabilities."""
    t = st.select_slider(
        "Decoder step t",
        options=list(range(len(run.output))),
        format_func=lambda i: f"t={i + 1} → {run.output[i]}",
        key="s2s_step",
    )
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**1 · Scores** — the query is the previous decoder state $s_{t-1}$:")
        st.latex(SCORE_FORMULAS[scoring])
        st.markdown("**2 · Weights and context:**")
        st.latex(
            r"\alpha_{t,i} = \frac{\exp e_{t,i}}{\sum_j \exp e_{t,j}}, \qquad c_t = \sum_i \alpha_{t,i}\, h_i"
        )
        st.plotly_chart(step_bars(run.masked_scores[t], run.weights[t], labels), key="s2s_bars")
    with right:
        table = {
            "i": list(range(len(labels))),
            "token": labels,
            "e_t,i (raw)": run.raw_scores[t],
            "α_t,i": run.weights[t],
        }
        if run.scale != 1.0:
            table["e_t,i · 1/√d_k (into the softmax)"] = run.masked_scores[t]
        number = st.column_config.NumberColumn(format="%.5f")
        st.dataframe(
            table,
            hide_index=True,
            height=min(420, 40 + 35 * len(labels)),
            column_config={k: number for k in table if k not in ("i", "token")},
        )
        recomposed = run.weights[t] @ run.memory  # (S,) @ (S, 2H): Σ α_t,i h_i from the shown numbers
        gap = np.abs(recomposed - run.contexts[t]).max()
        st.markdown(
            f"$\\sum_i \\alpha_{{t,i}}$ = **{run.weights[t].sum():.6f}**  \n"
            f"$\\max |\\sum_i \\alpha_{{t,i}} h_i - c_t|$ = **{gap:.2e}** "
            "(c_t recomputed from the weights and annotations shown equals the model's)"
        )
        top = ", ".join(f"{tok} {p:.4f}" for tok, p in zip(run.top_tokens[t], run.top_probs[t], strict=True))
        st.markdown(f"**3 · Next-token probabilities** (top {len(run.top_tokens[t])}): {md_escape(top)}")
    st.markdown(
        "**Vectors of this step** — query $s_{t-1}$, context $c_t$ and new state "
        "$s_t = \\mathrm{GRU}([\\mathrm{emb}(y_{t-1}); c_t],\\, s_{t-1})$:"
    )
    vectors = {
        "s_{t-1} (query)": run.queries[t],
        "c_t (context)": run.contexts[t],
        "s_t (new state)": run.states[t],
    }
    st.plotly_chart(vector_strips(vectors), key="s2s_vectors")
