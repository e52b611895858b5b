"""Why Q, K, V projections exist: one layer's learned heads beside softmax(X Xᵀ) on the same rows.

Shared by the transformer, BERT and GPT pages. The arrays come from `analysis.projections` (the
softmax computed by the attention core, under the mask the model's block used); the held-out means
from the model's card (``diagonal_mass``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import streamlit as st

from analysis.projections import RawVsProjected
from analysis.protocol import AttentionMaps
from views.attention import heatmap
from viz.heatmaps import matrix_heatmap

EXPLAIN = (
    "Without W_Q and W_K a row can only be scored by its raw vector: $x_i \\cdot x_j$. A vector "
    "usually agrees with itself more than with any other ($\\lVert x_i \\rVert^2$ against "
    "$x_i \\cdot x_j$), so $\\mathrm{softmax}(XX^\\top)$ piles its weight on the diagonal and the output "
    "$\\mathrm{softmax}(XX^\\top)X$ is mostly each row's own vector: nothing is gathered from the "
    "others. The projections let a head ask one question ($q = W_Q x$) and match it against "
    "another description of every row ($k = W_K x$), and W_V choose what is passed on."
)


def comparison(result: RawVsProjected, key: str, *, held_out: Mapping | None = None, note: str = "",
               window: Sequence[int] | None = None, projections_off: bool = False) -> None:  # fmt: skip
    """Learned head, softmax(X Xᵀ) and softmax(X Xᵀ/√d) side by side; the weight on self of each,
    on this input and (``held_out``: this layer's entry of the card) averaged over held-out inputs.
    ``window``: the positions drawn (a long input's window); the numbers are over the whole input."""
    shown = np.arange(len(result.tokens)) if window is None else np.asarray(window)
    cut = np.ix_(shown, shown)
    tokens = [result.tokens[i] for i in shown]
    st.markdown(EXPLAIN)
    st.caption(f"X = {result.x_is}. {note}")
    n_heads = result.learned.shape[0]
    head = st.selectbox("Learned head", range(n_heads), key=f"{key}_proj_head") if n_heads > 1 else 0
    if projections_off:
        st.warning(
            "The projections are switched off in this layer (sidebar): the map titled 'head' below is the "
            "model's run with Q = K = x, not its learned W_Q and W_K."
        )
    if not result.rows.any():
        st.info(
            "Every query here sees only itself (one visible key), so there is no weight on self to "
            "compare: type a longer input or show fewer hidden tokens."
        )
    diagonal = result.diagonal
    cells = st.columns(4)
    cells[0].metric("Weight on self, softmax(XXᵀ)", f"{diagonal['raw']:.3f}")
    cells[1].metric("… softmax(XXᵀ/√d)", f"{diagonal['raw ÷ √d']:.3f}")
    cells[2].metric(f"… learned head {head}", f"{diagonal[f'head {head}']:.3f}")
    cells[3].metric("… learned heads, mean", f"{diagonal['heads (mean)']:.3f}")
    if held_out:
        heads = held_out["heads"]
        st.markdown(
            f"Averaged over **{held_out['n']} held-out inputs** (from the model's card), this layer: "
            f"softmax(XXᵀ) **{held_out['raw']:.3f}**, softmax(XXᵀ/√d) **{held_out['raw ÷ √d']:.3f}**, "
            f"learned heads **{sum(heads) / len(heads):.3f}** on average "
            f"({', '.join(f'{h}: {v:.3f}' for h, v in enumerate(heads))})."
        )
    else:
        st.caption("No held-out average for this layer in the model's card.")
    d = result.x.shape[-1]
    maps = {
        f"{'head' if projections_off else 'learned head'} {head}": result.learned[head][cut],
        "no projections: softmax(XXᵀ)": result.raw[cut],
        f"softmax(XXᵀ/√{d})": result.raw_scaled[cut],
    }
    for i, (column, (title, weights)) in enumerate(zip(st.columns(3), maps.items(), strict=True)):
        with column:
            heatmap(AttentionMaps.single(title, weights, tokens, tokens), 0, 0, f"{key}_proj_map{i}")
    st.markdown(
        f"**The output** $X' = \\mathrm{{softmax}}(XX^\\top)X$ ({len(result.tokens)} × {d}): each row's "
        f"cosine with its own input row is **{result.self_similarity:.3f}** on average "
        "(1 = the row passed through unchanged)."
    )
    out = matrix_heatmap(result.raw_output[shown], title="X' = softmax(XXᵀ) X", x_title="dimension",
                         y_title="row", y_labels=tokens, value_name="x'")  # fmt: skip
    st.plotly_chart(out, key=f"{key}_proj_output")


@st.fragment
def layer_view(layers: Callable[[], Sequence[RawVsProjected]], n_layers: int, key: str, *,
               held_out: Mapping | None, window: Sequence[int] | None = None,
               unprojected: Collection[int] = ()) -> None:  # fmt: skip
    """A layer picker over ``layers()`` (every layer's comparison) and the card's block entry
    ``held_out`` (``diagonal_mass[block]``: its ``n`` and per-layer means)."""
    layer = st.selectbox("Layer", range(n_layers), key=f"{key}_proj_layer")
    entry = {"n": held_out["n"], **held_out["layers"][layer]} if held_out else None
    comparison(layers()[layer], key, held_out=entry, window=window, projections_off=layer in unprojected)
