"""Generic attention views, written once against `runners.protocol.AttentionMaps`.

Every family that returns maps gets these for free: the model view (layers × heads), the head view
(lines from queries to keys), per-head statistics, export, and the change an intervention made.
A view with controls of its own renders inside its own `st.fragment`, so moving one of its
controls reruns that view alone, not the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import streamlit as st

from runners.protocol import AttentionMaps, AttentionRun
from runners.stats import head_statistics, mean_entropy, to_csv, to_npz
from views.inputs import token_key
from viz.heatmaps import attention_heatmap, head_grid
from viz.lines import head_lines


def heatmap(
    maps: AttentionMaps,
    layer: int,
    head: int,
    key: str,
    *,
    title: str = "",
    axes: tuple[str, str] = ("query", "key"),
    value_name: str = "w",
    plot_config=None,
    annotate: bool = False,
    **gold,
):
    """One layer's and head's (Tq, Tk) weights with exact values on hover (``gold``: link cells;
    ``annotate``: each value written in its cell too)."""
    fig = attention_heatmap(
        maps.weights[layer, head],
        maps.queries,
        maps.keys,
        title=title or maps.title,
        row_title=axes[0],
        col_title=axes[1],
        value_name=value_name,
        annotate=annotate,
        **gold,
    )
    st.plotly_chart(fig, key=key, config=plot_config)


def _pick(column, label: str, n: int, key: str, index: int = 0) -> int:
    """A layer or head picker; nothing to pick (and no widget) when there is only one."""
    return column.selectbox(label, range(n), index=index, key=key) if n > 1 else 0


def model_view(maps: AttentionMaps, key: str, *, height_per_row: int = 200, plot_config=None) -> None:
    """Layers × heads thumbnails, then one head zoomed. The thumbnails are drawn outside the zoom's
    fragment: picking another head reruns and redraws only the zoom, never the (large) grid."""
    if maps.n_layers * maps.n_heads > 1:
        st.markdown("**Model view** — every layer × head (hover for exact weights); zoom into one below:")
        grid = head_grid(
            maps.weights,
            maps.queries,
            maps.keys,
            row_names=[f"L{i}" for i in range(maps.n_layers)],
            col_names=[f"H{h}" for h in range(maps.n_heads)],
            height_per_row=height_per_row,
        )
        st.plotly_chart(grid, key=f"{key}_model_view", config=plot_config)
    zoom(maps, key, plot_config=plot_config)


@st.fragment
def zoom(maps: AttentionMaps, key: str, *, plot_config=None) -> None:
    """One layer's and head's map, picked by select boxes, with exact values on hover."""
    layer_column, head_column = st.columns(2)
    layer = _pick(layer_column, "Zoom: layer", maps.n_layers, f"{key}_mv_layer")
    head = _pick(head_column, "Zoom: head", maps.n_heads, f"{key}_mv_head")
    title = f"{maps.title}: layer {layer} · head {head}"
    heatmap(maps, layer, head, f"{key}_zoom", title=title, plot_config=plot_config)


@st.fragment
def head_view(maps: AttentionMaps, key: str, *, plot_config=None) -> None:
    """BertViz-style lines from each query to the keys it attends to, one colour per head."""
    layer_column, heads_column, query_column = st.columns([1, 3, 2])
    layer = _pick(layer_column, "Layer", maps.n_layers, f"{key}_hv_layer")
    heads = list(range(maps.n_heads))
    if maps.n_heads > 1:
        heads = heads_column.multiselect("Heads (toggle)", heads, default=heads, key=f"{key}_hv_heads")
    query = query_column.selectbox(
        "Only lines from query",
        [None, *range(len(maps.queries))],
        format_func=lambda i: "all queries" if i is None else f"{i}: {maps.queries[i]}",
        key=token_key(f"{key}_hv_query", maps.queries),
    )
    fig = head_lines(maps.weights[layer], maps.queries, maps.keys, heads, query=query)
    st.plotly_chart(fig, key=f"{key}_head_view", config=plot_config)
    st.caption("Left: queries; right: keys. Line opacity ∝ weight (≥ 0.05 drawn).")


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
