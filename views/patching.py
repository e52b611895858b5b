"""The Circuits tab's causal views: activation patching beside attribution patching, head ablations,
and value-weighted attention (see `views.circuits`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from analysis import patching as P
from views import attention
from views.inputs import md_escape
from viz.circuits import effect_grid, estimate_vs_exact

if TYPE_CHECKING:  # views.circuits imports this module's views
    from views.circuits import Case, Subject


def positions(subject: Subject, ids) -> list[str]:
    return [f"{p}: {subject.label(i)}" for p, i in enumerate(ids)]


def patching_view(subject: Subject, case: Case) -> None:
    clean_ids, corrupt_ids, pair = case.clean_ids, case.corrupt_ids, case.pair
    if corrupt_ids is None:
        st.info("Patching needs a corrupted prompt with the same token count (see above).")
        return
    key = subject.key
    n_layers, n_heads = case.clean.layers_heads
    kinds = {
        "residual stream (layer × position)": "resid_pre",
        "attention output (layer × position)": "attn_out",
        "MLP output (layer × position)": "mlp_out",
        "each head, every position": "head",
        "one layer's heads, per position": "head per position",
    }
    kind = kinds[st.selectbox("Patch", list(kinds), key=f"{key}_circ_kind")]
    layer = None
    if kind == "head per position":
        layer = st.number_input("Layer", 0, n_layers - 1, n_layers - 1, key=f"{key}_circ_layer")
    runs = {"_clean": case.clean, "_corrupt": case.corrupt}
    attributed = subject.served("circuit_attributed")(clean_ids, corrupt_ids, pair, **runs)
    gap = attributed.clean - attributed.corrupt
    labels = positions(subject, clean_ids)
    if kind in ("resid_pre", "head"):
        estimate = attributed.resid if kind == "resid_pre" else attributed.heads
        cols = labels if kind == "resid_pre" else [f"H{h}" for h in range(n_heads)]
        st.plotly_chart(
            effect_grid(
                estimate / gap if gap else estimate,
                rows=[f"L{i}" for i in range(n_layers)],
                cols=cols,
                value_name="restored (est.)",
                x_title="position" if kind == "resid_pre" else "head",
                title="Attribution patching: the instant first look",
            ),
            key=f"{key}_circ_attr",
        )
    cells = {
        "resid_pre": n_layers * len(clean_ids),
        "attn_out": n_layers * len(clean_ids),
        "mlp_out": n_layers * len(clean_ids),
        "head": n_layers * n_heads,
        "head per position": n_heads * len(clean_ids),
    }[kind]
    expected = case.seconds * cells / 2  # patched copies resume mid-way, share a prefix: about half a forward
    st.caption(
        f"Exact patching runs {cells} patched copies of the corrupted prompt: about {expected:.0f} s on "
        "this machine (estimated from this prompt's own forward)."
    )
    if not st.toggle("Run exact patching", key=f"{key}_circ_exact"):
        return
    bar = st.progress(0.0, text="Patching…")
    sweep = subject.served("circuit_sweep")(
        "head" if kind.startswith("head") else kind,
        clean_ids,
        corrupt_ids,
        pair,
        None if layer is None else int(layer),
        **runs,
        _progress=lambda share: bar.progress(share, text="Patching…"),
    )
    bar.empty()
    rows = (
        [f"H{h}" for h in range(n_heads)]
        if kind == "head per position"
        else [f"L{i}" for i in range(n_layers)]
    )
    cols = [f"H{h}" for h in range(n_heads)] if kind == "head" else labels
    st.plotly_chart(
        effect_grid(
            sweep.restored,
            rows=rows,
            cols=cols,
            value_name="restored",
            x_title="head" if kind == "head" else "position",
            y_title="head" if kind == "head per position" else "layer",
            title="(patched − corrupt) / (clean − corrupt)",
        ),
        key=f"{key}_circ_sweep",
    )
    if kind == "resid_pre":
        st.caption(
            "The causal cone: a patch at a position can only move what comes after it, so the answer's "
            "information travels from the clue's position (left) to the last position (right) as "
            "the layers go down."
        )
    if kind in ("resid_pre", "head"):
        exact = sweep.values - sweep.corrupt
        corr, worst = P.agreement(estimate, exact)
        names = [f"{rows[i]} · {cols[j]}" for i in range(len(rows)) for j in range(len(cols))]
        st.plotly_chart(
            estimate_vs_exact(estimate, exact, names, title=f"Attribution vs exact: r = {corr:.3f}"),
            key=f"{key}_circ_agree",
        )
        st.dataframe(
            [
                {"cell": f"{rows[i]} · {cols[j]}", "estimate": e, "exact": x, "gap": e - x}
                for (i, j), e, x in worst
            ],
            hide_index=True,
        )


def ablation_view(subject: Subject, case: Case) -> None:
    key, clean_ids, corrupt_ids, pair = subject.key, case.clean_ids, case.corrupt_ids, case.pair
    n_layers, n_heads = case.clean.layers_heads
    found = subject.found.get(case.choice, ())
    if found:
        heads, default = list(found), subject.found_name
    elif subject.heads_sum_to_stream:
        direct = subject.served("circuit_direct")(clean_ids, pair, _clean=case.clean)
        ranked = np.argsort(-direct.heads.ravel())[:3]
        heads = [(int(i // n_heads), int(i % n_heads)) for i in ranked]
        default = "the three with the largest direct effect here"
    else:  # no direct effects to rank by: they do not add up for this model (views.circuits.NOT_ADDITIVE)
        heads, default = [], "none: this model's heads have no additive direct effect to rank them by"
    picked = st.multiselect(
        f"Heads to ablate (default: {default})",
        [(i, h) for i in range(n_layers) for h in range(n_heads)],
        heads,
        format_func=lambda lh: f"L{lh[0]} H{lh[1]}",
        key=f"{key}_circ_ablate",
    )
    how = st.radio(
        "Ablation",
        list(P.ABLATIONS),
        horizontal=True,
        key=f"{key}_circ_how",
        format_func=lambda a: f"{a}: {P.ABLATIONS[a]}",
    )
    if how == "resample" and corrupt_ids is None:
        st.info(
            "A resampled ablation takes the heads' contexts from the corrupted prompt: give it the same "
            "token count."
        )
        return
    if not picked:
        return
    clean = case.clean
    after = subject.served("circuit_ablated")(
        clean_ids,
        pair,
        tuple(picked),
        how,
        subject.reference if how == "mean" else (),
        corrupt_ids if how == "resample" else None,
        _resample=case.corrupt if how == "resample" else None,
    )
    lowered = (clean.value - after) / clean.value if clean.value else float("nan")
    cells = st.columns(2)
    cells[0].metric("logit difference, heads ablated", f"{after:+.3f}", f"{after - clean.value:+.3f}")
    cells[1].metric("share of the logit difference removed", f"{lowered:.1%}")
    said = {"mean": f" The mean is over {md_escape(subject.reference_name)}.", "zero": "", "resample": ""}[
        how
    ]
    st.caption(f"{how.capitalize()} ablation: {P.ABLATIONS[how]}, at every position.{said}")


def value_view(subject: Subject, case: Case) -> None:
    key, clean_ids = subject.key, case.clean_ids
    n_layers, _ = case.clean.layers_heads
    layer = int(st.number_input("Layer", 0, n_layers - 1, 0, key=f"{key}_circ_vw_layer"))
    weights, norms = subject.served("circuit_value_weighted")(clean_ids, layer)
    sink = np.arange(len(clean_ids)) == 0
    labels = positions(subject, clean_ids)
    attention.value_weighted(weights, norms, labels, f"{key}_circ_vw", layer=f"L{layer}", sink=sink,
                             sink_name="the first token", rows=slice(1, None))  # fmt: skip
    if not subject.heads_sum_to_stream:
        st.caption("The norms are at the attention's output, each head's share through its slice of W_O: "
                   "this model's norm after attention then rescales the heads' sum before the stream.")


def restored_grids(
    positions: P.Sweep,
    heads: P.Sweep,
    *,
    metric: str,
    value_format: str,
    inputs: str,
    clean: Sequence[str],
    corrupt: Sequence[str],
    head_rows: Sequence[str],
    unit: str,
    key: str,
) -> None:
    """An encoder's two sweeps as the share restored, after the ``metric`` on the clean and the corrupted
    ``inputs``: the stream entering each layer at each position — columns labelled clean/corrupted where
    the two inputs differ — and each head at every position."""
    st.markdown(
        f"{metric}: **{positions.clean:{value_format}}** from the clean {inputs}, "
        f"**{positions.corrupt:{value_format}}** from the corrupted one. Each cell runs the corrupted "
        f"{inputs} with one activation taken from the clean run and shows the share restored, (patched − "
        "corrupt) / (clean − corrupt)."
    )
    if positions.clean == positions.corrupt:
        st.info("The two inputs give the same metric: there is nothing to restore. Change the clue.")
        return
    pairs = enumerate(zip(clean, corrupt, strict=True))
    columns = [f"{p}: {a}" if a == b else f"{p}: {a}/{b}" for p, (a, b) in pairs]
    grids = {
        f"{key}_positions": effect_grid(
            positions.restored,
            rows=[f"enters L{i}" for i in range(len(positions.restored))],
            cols=columns,
            value_name="restored",
            title=f"The stream at one {unit}",
            x_title=f"{unit} (clean/corrupted)",
            y_title="stream",
        ),
        f"{key}_heads": effect_grid(
            heads.restored,
            rows=list(head_rows),
            cols=[f"H{h}" for h in range(heads.values.shape[1])],
            value_name="restored",
            title="One head's output, every position",
            x_title="head",
            y_title="layer",
        ),
    }
    for grid_key, figure in grids.items():
        st.plotly_chart(figure, key=grid_key)
