"""Generic attention views, written once against `analysis.protocol.AttentionMaps`.

Every family that returns maps gets these for free: one map (`heatmap`), the model view (layers ×
heads with a zoom), the head view (lines from queries to keys) — all three drawn by the one attention
component (`views/attention_component.py`: looking costs no rerun) — per-head statistics, export,
and the change an intervention made. A view with controls of its own renders inside its own
`st.fragment`, so moving one of its controls reruns that view alone, not the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import streamlit as st

from analysis.protocol import AttentionMaps, AttentionRun
from analysis.stats import head_statistics, mean_entropy, to_csv, to_npz
from views.attention_component import VIEWS, Outline, attention_maps, image_header


def heatmap(
    maps: AttentionMaps,
    layer: int,
    head: int,
    key: str,
    *,
    title: str = "",
    axes: tuple[str, str] = ("query", "key"),
    value_name: str = "w",
    annotate: bool = False,
    **gold,
) -> None:
    """One layer's and head's (Tq, Tk) weights with exact values on hover, zoom and pan (``gold``:
    ``gold_sure``/``gold_possible`` cells marked; ``annotate``: numbers in cells from the start)."""
    one = replace(maps, weights=maps.weights[layer : layer + 1, head : head + 1])
    attention_maps(one, key, views=("map",), in_url=False, title=title or maps.title, axes=axes,
                   value_name=value_name, numbers=annotate, layer_names=[f"L{layer}"],
                   head_names=[f"H{head}"], **gold)  # fmt: skip


@st.fragment
def explorer(
    maps: AttentionMaps,
    key: str,
    views: Sequence[str] = VIEWS,
    *,
    layer: int | None = None,
    head: int | None = None,
    **labels,
) -> None:
    """The attention component on ``maps``: any of the model view, one map and the head view. It
    starts at ``layer``/``head`` where the page picks them (and follows the page's pick when it
    changes), else at the view kept in the URL. In a fragment: a map that was not sent exact reruns
    only this view. ``labels``: `views.attention_component.payload`'s."""
    attention_maps(maps, key, views=views, layer=layer, head=head, in_url=layer is None, **labels)


def model_view(maps: AttentionMaps, key: str, **start) -> None:
    """Every layer × head as a thumbnail; click one (or use the arrow keys) to zoom into its map,
    exact values on hover. All in the browser: no rerun."""
    if maps.n_layers * maps.n_heads > 1:
        st.markdown(
            "**Model view** — every layer × head, each on its own colour scale; click one (or use the "
            "arrow keys) to zoom, hover the zoomed map for exact weights:"
        )
    explorer(maps, f"{key}_model", ("model", "map"), **start)


def head_view(maps: AttentionMaps, key: str, **start) -> None:
    """BertViz-style lines from each query to the keys it attends to, one colour per head: toggle
    heads, hover a query (or pick one) for its lines alone."""
    explorer(maps, f"{key}_heads", ("lines",), **start)


@st.fragment
def image_overlay(
    maps: AttentionMaps,
    key: str,
    picture: np.ndarray,
    grid: tuple[int, int],
    *,
    first: int = 1,
    opacity: float = 0.6,
    outline: Outline | None = None,
    **labels,
) -> None:
    """One query's row over ``picture``'s patch ``grid`` (keys ``first``… row-major), query 0's first
    (a ViT's [CLS]), and every layer × head as small overlays: click a patch for its rows, hover for the
    exact weight, opacity and the ``outline`` mask toggled — in the browser, no rerun. Rows not sent (a
    long input) come on request: one rerun of this fragment. ``labels``: the component's payload's."""
    header = image_header(picture, grid, first=first, opacity=opacity, outline=outline)
    attention_maps(maps, key, views=("image",), image=header, **labels)


def value_weighted(
    weights: np.ndarray,
    norms: np.ndarray,
    tokens: Sequence[str],
    key: str,
    *,
    layer: str,
    sink: np.ndarray,
    sink_name: str,
    rows: slice = slice(None),
) -> None:
    """Kobayashi et al. 2020 for every head of one layer: attention α (h, T, T) beside ‖α_ij · v_j W_O‖
    (what of each key reaches the head's output) as the two rows of one component — ↑/↓ switches
    between them for the same head — and per head the share each puts on the ``sink`` keys (a (T,)
    mask: the first token of a decoder, [CLS]/[SEP] in BERT), averaged over the query ``rows``."""
    labels = tuple(tokens)
    maps = AttentionMaps(title=f"layer {layer}: α and ‖α·v·W_O‖", weights=np.stack([weights, norms]),
                         queries=labels, keys=labels, special_keys=np.asarray(sink, bool))  # fmt: skip
    explorer(maps, key, ("model", "map"), layer=0, head=0, layer_names=["α", "‖α·v·W_O‖"], value_name="value")
    rows_kept = np.arange(len(tokens))[rows]
    if not len(rows_kept) or not sink.any():
        return
    on_sink = weights[:, rows_kept][..., sink].sum(-1).mean(-1)  # (h,)
    totals = norms[:, rows_kept].sum(-1)
    from_sink = norms[:, rows_kept][..., sink].sum(-1)
    moved = np.divide(from_sink, totals, out=np.zeros_like(totals), where=totals > 0)
    table = [
        {"head": h, f"attention on {sink_name}": float(on_sink[h]),
         f"share of what reaches the output from {sink_name}": float(moved.mean(-1)[h])}
        for h in range(len(weights))
    ]  # fmt: skip
    st.dataframe(table, hide_index=True, key=f"{key}_table")
    which = "with a choice " if rows != slice(None) else ""
    st.caption(f"Averaged over the query rows {which}of this input. "
               f"A head that looks at {sink_name} with a small value vector moves little from it: look at "
               "‖α v W_O‖, not α alone (Kobayashi et al. 2020).")  # fmt: skip


def statistics(
    all_maps: Mapping[str, AttentionMaps], key: str, *, diagonal_mass: Mapping | None = None
) -> None:
    """Per block, layer and head: mean entropy, mean max weight, mean mass on special tokens, and for
    self-attention the weight on self (with the card's held-out mean, ``diagonal_mass``, if given)."""
    st.markdown(
        "Per head: mean entropy of its attention rows (0 = each query looks at one key; ln Tk = "
        "uniform), the mean of each row's largest weight, the share of attention that lands on "
        "special tokens (start/end markers, padding, [CLS]/[SEP]) and, in self-attention, the mean "
        "weight a token puts on itself (softmax(XXᵀ) without projections puts nearly all of it there: "
        "see *Raw vs projected*)."
    )
    held_out = diagonal_mass or {}
    rows = [
        {"block": name, **row}
        for name, maps in all_maps.items()
        for row in head_statistics(maps, held_out.get(name, {}).get("layers"))
    ]
    st.dataframe(rows, hide_index=True, key=f"{key}_stats")


def _pick(column, label: str, n: int, key: str, index: int = 0) -> int:
    """A layer or head picker; nothing to pick (and no widget) when there is only one."""
    return column.selectbox(label, range(n), index=index, key=key) if n > 1 else 0


@st.fragment
def export(all_maps: Mapping[str, AttentionMaps], key: str, *, file_stem: str = "attention") -> None:
    """One head's weights as CSV (tokens as headers), or every block, layer and head as NPZ."""
    names = list(all_maps)
    block_column, layer_column, head_column = st.columns(3)
    name = block_column.selectbox(
        "Block", names, format_func=lambda n: all_maps[n].title, key=f"{key}_ex_block"
    )
    maps = all_maps[name]
    layer = _pick(layer_column, "Layer", maps.n_layers, f"{key}_ex_layer")
    head = _pick(head_column, "Head", maps.n_heads, f"{key}_ex_head")
    st.download_button(
        "Weights of this head as CSV",
        to_csv(maps, layer, head),
        f"{file_stem}_{name}_L{layer}_H{head}.csv",
        "text/csv",
        key=f"{key}_csv",
    )
    st.download_button(
        "Every block, layer and head as NPZ (<block>_weights (L, h, Tq, Tk), <block>_queries, <block>_keys)",
        lambda: to_npz(all_maps),  # built when clicked: compressing every block is not free
        f"{file_stem}.npz",
        "application/octet-stream",
        key=f"{key}_npz",
    )


def statistics_tabs(
    all_maps: Mapping[str, AttentionMaps],
    key: str,
    *,
    file_stem: str = "attention",
    diagonal_mass: Mapping | None = None,
    export_note: str | None = None,
) -> dict[str, Callable[[], None]]:
    """The "Head statistics" and "Export" entries of a page's `views.layout.lazy_tabs` table
    (``export_note``: a caption under the export)."""

    def export_tab() -> None:
        export(all_maps, key, file_stem=file_stem)
        if export_note:
            st.caption(export_note)

    return {
        "Head statistics": lambda: statistics(all_maps, key, diagonal_mass=diagonal_mass),
        "Export": export_tab,
    }


def statistics_and_export(all_maps: Mapping[str, AttentionMaps], key: str, *, file_stem: str) -> None:
    """Both in one tab ("Statistics & export"), for a page with few blocks."""
    statistics(all_maps, key)
    export(all_maps, key, file_stem=file_stem)


def intervention_deltas(run: AttentionRun, base: AttentionRun) -> None:
    """What an intervention changed: the output, its log-probability, and per block the mean
    attention entropy and the largest change of any weight (against the run without it)."""
    if run.output or base.output:
        output_cell, log_p_cell = st.columns(2)
        same = run.output == base.output
        output_cell.metric("Output vs no intervention", "unchanged" if same else "changed")
        if same:
            delta = float(run.token_log_probs.sum() - base.token_log_probs.sum())
            log_p_cell.metric("Δ log p(output)", f"{delta:+.4f}")
    rows = []
    for name, maps in run.maps.items():
        before = base.maps.get(name)
        row = {"block": maps.title, "mean entropy (nats)": mean_entropy(maps)}
        if before is not None:
            row["Δ entropy"] = row["mean entropy (nats)"] - mean_entropy(before)
            if before.weights.shape == maps.weights.shape:
                row["max |Δw|"] = float(np.abs(maps.weights - before.weights).max())
        rows.append(row)
    # A static table: this view appears and disappears as interventions are switched on and off, and
    # mounting an interactive grid each time cost a visible part of the click.
    st.table(rows, hide_index=True)
