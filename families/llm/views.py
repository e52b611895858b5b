"""The language-model page's analysis views, each one call the page makes inside a lazy tab, for any decoder:
how query heads share K/V heads and the KV cache, RoPE on one real query and key (learned positions: how
alike their vectors are), attention sinks, raw vs projected, attention vs importance, the Circuits tab.

Every number is the runner's (`families.llm.analysis`, `families.llm.importance`), served cached through
the family's registry entry (`views.serving.cached`) under the model's name; the figures are `viz`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import streamlit as st

from analysis import importance as imp
from analysis.importance import CARD_KEY
from analysis.lm import LM, LMRun, Prompt
from analysis.projections import RawVsProjected
from analysis.protocol import AttentionMaps
from families.llm import FAMILY
from families.llm import analysis as lm_analysis
from families.llm import importance as lm_importance
from models.attention import NO_INTERVENTION, Interventions
from models.decoder import BLOCK
from views import importance_tabs
from views import lm as lm_views
from views import projections as projection_view
from views.attention import model_view
from views.inputs import md_escape
from views.serving import cached, loaded_model
from viz.charts import lines
from viz.heatmaps import matrix_heatmap
from viz.rope import gqa_diagram, rope_pairs, rope_score

DRAWN = 48  # positions a map of a long prompt draws at once (a window the reader moves)
RELATIVE = 1e-5  # the RoPE check's bound, relative to Σ|q_i k_i| / √d (see `rope_view`)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:,.2f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:,.2f} MB"


def _window(n: int, key: str, label: str = "First position drawn") -> np.ndarray:
    """The positions a map draws: all of a short prompt, else `DRAWN` from a start the reader picks."""
    if n <= DRAWN:
        return np.arange(n)
    start = st.slider(label, 0, n - DRAWN, n - DRAWN, key=key)
    st.caption(f"Positions {start}…{start + DRAWN - 1} of {n}; rows are not renormalised: what is drawn is "
               "exactly what the model computed.")  # fmt: skip
    return np.arange(start, start + DRAWN)


# --- Grouped-query attention ----------------------------------------------------------------------
def sharing(g: lm_analysis.GQA, head: int) -> str:
    """One sentence: how this model's query heads read its K/V heads, said for ``head``."""
    kv = g.kv_heads[head]
    if g.kind == "multi-head":
        return (f"**Multi-head attention.** Each of the {g.n_heads} query heads has a key/value head of "
                f"its own (H{head} reads K/V head {kv} alone): nothing is shared, so a KV cache keeps "
                f"{g.n_heads} heads' keys and values for every token.")  # fmt: skip
    said = "Multi-query attention" if g.kind == "multi-query" else "Grouped-query attention"
    return (
        f"**{said}.** Each layer has {g.n_heads} query heads but only {g.n_kv_heads} key/value "
        f"head{'s' * (g.n_kv_heads != 1)}: query heads {', '.join(map(str, g.groups[kv]))} all score the "
        f"*same* keys and average the *same* values (K/V head {kv}); only their queries differ. The keys and "
        f"values are what a KV cache keeps for every token, so sharing them shrinks the cache by "
        f"{g.n_heads // g.n_kv_heads}× at no cost in query heads."
    )


def reads(g: lm_analysis.GQA, head: int) -> str:
    """Which K/V head ``head`` reads, and who shares it: "reads key/value head **1** (shared by H3, H4, H5:
    grouped-query attention)"."""
    kv = g.kv_heads[head]
    if g.kind == "multi-head":
        return f"reads key/value head **{kv}**, its own (multi-head attention: nothing shared)"
    shared = ", ".join(f"H{h}" for h in g.groups[kv])
    return f"reads key/value head **{kv}** (shared by {shared}: {g.kind} attention)"


def windows_said(windows: Sequence[int | None]) -> str:
    """One sentence on the sliding windows, or "" for a model without."""
    windowed = [i for i, w in enumerate(windows) if w is not None]
    if not windowed:
        return ""
    listed = ", ".join(f"L{i}" for i in windowed)
    which = "every layer" if len(windowed) == len(windows) else f"layers {listed}"
    sizes = sorted({windows[i] for i in windowed})
    return (f"On {which} a query sees only the last {', '.join(f'{w:,}' for w in sizes)} keys (a sliding "
            "window, itself included); the KV cache here still keeps every key — the window is part of the "
            "mask, so a cached step reads exactly what the whole-prompt forward reads — and a cache that "
            "dropped the keys outside the window would hold at most the window per such layer.")  # fmt: skip


@st.fragment
def gqa_view(name: str, run: LMRun, layer: int, head: int) -> None:
    """Which query heads share each K/V head (multi-head: none; multi-query: all one), the group of ``head``
    in ``layer`` side by side, and the KV cache this prompt needs with and without the sharing. A fragment
    keeps its arguments for its reruns, in every session until it expires: the model's name, not the model
    (a session that lingers must not keep a dropped model in memory)."""
    g = lm_analysis.gqa(loaded_model(FAMILY, name), len(run.ids))
    kv = g.kv_heads[head]
    st.markdown(sharing(g, head))
    st.plotly_chart(gqa_diagram(g.kv_heads, picked=head), key="llm_gqa_diagram")
    if tuple(run.kv_heads) != g.kv_heads:
        st.error(f"The run's trace names K/V heads {run.kv_heads}, the model's layer {g.kv_heads}.")
    shared, unshared = g.cache_bytes(), g.cache_bytes(shared=False)
    cells = st.columns(3)
    cells[0].metric(f"KV cache for this prompt ({g.tokens:,} token{'s' * (g.tokens != 1)})", _size(shared))
    cells[1].metric(f"… with {g.n_heads} K/V heads (no sharing)", _size(unshared))
    cells[2].metric("Saved", _size(unshared - shared))
    per_token = g.cache_bytes(1)
    st.markdown(
        f"KV cache = 2 (keys and values) × layers × K/V heads × d_head × tokens × 4 bytes (float32) = "
        f"2 × {g.layers} × {g.n_kv_heads} × {g.d_head} × T × 4 = **{per_token:,} bytes a token** "
        f"({g.cache_bytes(1, shared=False):,} with {g.n_heads} K/V heads). At the full context of "
        f"{g.context:,} tokens: **{_size(g.cache_bytes(g.context))}** against "
        f"**{_size(g.cache_bytes(g.context, shared=False))}** without sharing. {windows_said(g.windows)}"
    )
    if layer not in run.layers:
        st.info(f"The run holds maps of layers {', '.join(map(str, run.layers))} only: pick one of them.")
        return
    group = list(g.groups[kv])
    weights = run.maps["self"].weights[run.layers.index(layer)][group]  # (3, T, T)
    shown = _window(len(run.ids), "llm_gqa_window")
    tokens = [run.inputs[i] for i in shown]
    st.markdown(f"**Layer {layer}, K/V head {kv}: its {len(group)} query head{'s' * (len(group) != 1)} "
                f"{'side by side** (same keys, own queries).' if len(group) > 1 else '** (its own keys).'}")
    maps = AttentionMaps(title=f"layer {layer}, K/V head {kv}", weights=weights[:, shown][:, :, shown][None],
                         queries=tuple(tokens), keys=tuple(tokens),
                         special_keys=np.zeros(len(tokens), dtype=bool))  # fmt: skip
    model_view(maps, "llm_gqa_group", layer=0, head=group.index(head) if head in group else 0,
               layer_names=[f"L{layer}"], head_names=[f"H{h}" for h in group])  # fmt: skip


# --- RoPE on real numbers -------------------------------------------------------------------------
def _position(column, label: str, options: Sequence[int], index: int, tokens: Sequence[str], key: str) -> int:
    return column.selectbox(label, options, index=index, key=key,
                            format_func=lambda i: f"{i}: {tokens[i]}")  # fmt: skip


NO_ROPE = (
    "**This model has no RoPE.** Its positions are learned: a vector per position (its `wpe` rows), added to "
    "each token's embedding before the first layer, so q and k are never turned by position and a score "
    "does not depend on the offset alone. Below: how alike those position vectors are — the model's own "
    "weights, compared by cosine."
)


def positions_view(loaded: LM, name: str) -> None:
    """For learned positions: `NO_ROPE`, and the cosine similarity of the first position vectors."""
    st.markdown(NO_ROPE)
    similar = cached(FAMILY, "position_similarity")(name)
    n = len(similar)
    labels = [str(i) for i in range(n)]
    st.plotly_chart(matrix_heatmap(similar, title=f"cosine similarity of position vectors 0…{n - 1}",
                                   x_title="position", y_title="position", value_name="cosine",
                                   x_labels=labels, y_labels=labels), key="llm_positions")  # fmt: skip
    near = float(np.mean(np.diag(similar, 1))) if n > 1 else float("nan")
    far = float(np.mean(np.diag(similar, n // 2))) if n > 2 else float("nan")
    st.caption(f"Mean cosine of neighbouring positions {near:.3f}; of positions {n // 2} apart {far:.3f}. "
               "The sidebar has no RoPE switch for this model: nothing inside attention turns by position.")


@st.fragment
def rope_view(name: str, prompt: Prompt, layer: int, head: int,
              iv: Interventions = NO_INTERVENTION) -> None:  # fmt: skip
    """One query of ``head`` and one key of its K/V head in ``layer``, before rotation, scored as the offset
    between them moves; per frequency pair; checked against the model's own score. ``iv``: the page's
    interventions (only to say that RoPE off there does not change this view, which reads the model as is).
    A model with learned positions gets `positions_view` instead. (A fragment: the model's name, as
    `gqa_view`.)"""
    loaded = loaded_model(FAMILY, name)
    if loaded.model.cfg.positions != "rope":
        return positions_view(loaded, name)
    ids = prompt.ids
    tokens = [loaded.label(i) for i in ids]
    t = len(ids)
    query_column, key_column = st.columns(2)
    query = _position(query_column, "Query position", range(t - 1, -1, -1), 0, tokens, "llm_rope_query")
    key = _position(key_column, "Key position", range(query, -1, -1), min(1, query), tokens, "llm_rope_key")
    sweep = cached(FAMILY, "rope_sweep")(name, ids, layer, head, query, key)
    cfg = loaded.model.cfg
    scaled = f"√{round(1 / sweep.scale**2, 4):g}"  # the dot product's divisor as the labels write it: √d_head
    stretched = "" if cfg.rope_scaling is None else f", its frequencies stretched ({cfg.rope_scaling.kind})"
    cap = sweep.softcap
    capped = "" if cap is None else f" — then soft-capped to {cap:g} · tanh(score / {cap:g}) as the model is"
    st.markdown(
        f"**RoPE on real numbers.** The query of head {head} at position {query} "
        f"(‘{md_escape(tokens[query])}’) and the key of its K/V head {sweep.kv_head} at position {key} "
        f"(‘{md_escape(tokens[key])}’), layer {layer}, *before* rotation, from the model's trace. RoPE "
        f"turns each of the {cfg.rope_dim // 2} channel pairs (i, i + {cfg.rope_dim // 2}) of q and k by "
        f"position × base^(−2i/{cfg.rope_dim}) (base {cfg.rope_base:,.0f}{stretched}), so the score "
        f"q·R(Δ)k / {scaled}{capped} depends only on the offset Δ between them. "
        "Below, the key stays where it is and the query is turned as if it stood Δ tokens after it, by the "
        "attention core's own `rotary` and `rotate`."
    )
    products = np.abs(sweep.q * sweep.k).sum() * sweep.scale  # the cap (tanh) shrinks gaps: the bound holds
    gap = abs(sweep.at_offset - sweep.model_score)
    cells = st.columns(4)
    cells[0].metric(f"Model's score (offset {sweep.offset})", f"{sweep.model_score:.4f}")
    cells[1].metric("The sweep at that offset", f"{sweep.at_offset:.4f}", f"|Δ| {gap:.1e}", delta_color="off")
    cells[2].metric(f"No rotation: q·k / {scaled}", f"{sweep.unrotated:.4f}")
    cells[3].metric("Score range over Δ", f"{sweep.score.min():.2f} … {sweep.score.max():.2f}")
    check = "✅" if gap <= RELATIVE * products else "⚠️"
    st.caption(
        f"{check} Check: the sweep at the real offset is {gap:.1e} from the model's pre-softmax score (its "
        f"trace's scaled scores), within {RELATIVE:g} × Σ|q_i k_i| / {scaled} = {RELATIVE * products:.1e}: "
        f"the same rotated vectors, but the model sums the {cfg.d_head} products inside one matmul over "
        "every key, the sweep one dot product at a time — float32 adds them in another order. The model "
        "read the prompt through its KV cache here (the key's and the query's rows traced alone: no T × T "
        "map kept)."
    )
    st.plotly_chart(rope_score(sweep.offsets, sweep.score, offset=sweep.offset, model_score=sweep.model_score,
                               unrotated=sweep.unrotated, scaled=scaled), key="llm_rope_score")  # fmt: skip
    slow = int((sweep.wavelengths > cfg.max_len).sum())
    half = cfg.rope_dim // 2
    summed = ("sum to the curve above" if sweep.softcap is None else
              "sum to the score before its cap")  # fmt: skip
    before_cap = sweep.score if sweep.softcap is None else sweep.pairs.sum(0)  # the cap is not a sum
    st.markdown(
        f"**Per frequency pair.** Pair i's part of the score, (q_i k_i + q_{{i+{half}}} k_{{i+{half}}}) "
        f"turned by Δ · base^(−2i/{cfg.rope_dim}), ÷ {scaled}; the {half} rows {summed} (largest gap "
        f"{np.abs(sweep.pairs.sum(0) - before_cap).max():.1e}, float order again). Pair 0 turns once every "
        f"{sweep.wavelengths[0]:.1f} tokens; the last {slow} pairs have wavelengths beyond the "
        f"{cfg.max_len:,}-token context, so they barely turn at all: they score what the token is, the "
        "fast ones where it is."
    )
    st.plotly_chart(rope_pairs(sweep.pairs, sweep.offsets, sweep.wavelengths, offset=sweep.offset),
                    key="llm_rope_pairs")  # fmt: skip
    if not iv.positional:
        st.info(f"{lm_views.ROPE_OFF} The sidebar has RoPE off for the page's run; this view reads the model "
                "as is.")
    else:
        st.caption(f"The sidebar's RoPE switch: {lm_views.ROPE_OFF}")


# --- Attention sinks ------------------------------------------------------------------------------
def _head_table(values: np.ndarray, title: str) -> object:
    n_layers, n_heads = values.shape
    return matrix_heatmap(values, title=title, x_title="head", y_title="layer", value_name="share",
                          x_labels=[f"H{h}" for h in range(n_heads)],
                          y_labels=[f"L{i}" for i in range(n_layers)], diverging=False)  # fmt: skip


def sinks_view(loaded: LM, name: str, prompt: Prompt, card: Mapping | None, layer: int | None = None,
               head: int | None = None) -> None:  # fmt: skip
    """Each head's share of attention on the first token, on this prompt beside the card's measurement, and
    what hiding the first token does; with ``layer`` and ``head``, that head's weight on it row by row."""
    ids = prompt.ids
    if len(ids) < 2:
        st.info("A one-token prompt has no row that could look anywhere but the first token: type more.")
        return
    sinks = cached(FAMILY, "sinks")(name, ids)
    share, held_out = sinks.share, lm_analysis.card_first_token(card)
    first = md_escape(sinks.first)
    st.markdown(
        f"**Attention sinks.** How much of each head's attention lands on the first token (‘{first}’), "
        f"averaged over query rows 1…{len(ids) - 1} (row 0 can only look at itself): the model's own softmax "
        "weights. Many heads park their weight there when nothing else fits — the first token is visible "
        "to every row, so it makes a cheap ‘no-op’ target (Xiao et al. 2023)."
    )
    cells = st.columns(3)
    cells[0].metric(f"Mean share, all {share.size:,} heads", f"{share.mean():.3f}")
    cells[1].metric("Heads with share ≥ 0.5", f"{int((share >= 0.5).sum())} / {share.size}")
    if held_out is not None:
        r = float(np.corrcoef(share.ravel(), held_out.ravel())[0, 1])
        cells[2].metric("Correlation with the card, per head", f"{r:.2f}")
    windowed = windows_said(lm_analysis.gqa(loaded, len(ids)).windows)
    if windowed:
        st.caption("Sliding windows: a row further than the window from the first token cannot see it, so "
                   "its weight there is exactly 0 on those layers.")  # fmt: skip
    left, right = st.columns(2)
    left.plotly_chart(_head_table(share, "this prompt"), key="llm_sink_share")
    if held_out is not None:
        probe = card.get("in_context", {}).get("probe", {})
        right.plotly_chart(_head_table(held_out, "the card (held out)"), key="llm_sink_card")
        right.caption(
            f"The card's first-token score: the same mean, over {probe.get('sequences', '?')} sequences of "
            f"‘{md_escape(loaded.label(probe.get('first_id', 0)))}’ then {probe.get('length', '?')} random "
            "tokens repeated once "
            f"({md_escape(str(probe.get('tokens', '')))}; seed {probe.get('seed', '?')})."
        )
    else:
        right.info("No card with first-token scores for this model: the Model card tab measures one.")
    change = sinks.hidden
    st.markdown("**Hiding the first token** from every query (hidden keys (0,), as the sidebar hides):")
    cells = st.columns(4)
    cells[0].metric("Loss on the prompt", f"{sinks.loss + change.loss:.3f}", f"{change.loss:+.3f} nats",
                    delta_color="inverse")  # fmt: skip
    cells[1].metric("KL of the next token", f"{change.kl_after_prompt:.4f} nats")
    (before, p_before), (after, p_after) = change.next_before, change.next_after
    cells[2].metric("Next token", f"{after} {p_after:.0%}", f"was {before} {p_before:.0%}", delta_color="off")
    cells[3].metric("Positions whose top token changed", f"{change.top1_changed} / {len(ids)}")
    st.caption(
        f"Loss without hiding: {sinks.loss:.3f} nats over {len(ids) - 1} predicted tokens. Row 0, whose one "
        "key is the first token itself, then sees nothing: all-zero weights, no attention output."
    )
    if layer is not None and head is not None:
        tokens = [loaded.label(i) for i in ids]
        weights = sinks.on_first[layer, head]
        fig = lines({f"L{layer} H{head}": (range(1, len(ids)), weights[1:])}, x_title="query position",
                    y_title="weight on the first token",
                    title=f"Layer {layer}, head {head}, row by row")  # fmt: skip
        st.plotly_chart(fig, key="llm_sink_rows")
        top = int(np.argmax(weights[1:])) + 1
        st.caption(f"Most: row {top} ‘{md_escape(tokens[top])}’ at {weights[top]:.3f}.")
    st.caption(
        "Memory: every layer is traced, but the rows run in chunks through the KV cache so that one chunk's "
        f"maps stay within {sinks.budget / 2**20:.0f} MiB (SmolLM2's 270 maps of 2,048 tokens would be "
        f"4.5 GB); only each row's weight on the first token is kept ({share.size:,} × T floats)."
    )


# --- Raw vs projected ------------------------------------------------------------------------------
class _Layers(Sequence):
    """Every layer's comparison, each computed (and cached) when the layer picker first asks for it."""

    def __init__(self, name: str, ids: tuple[int, ...], iv: Interventions, n_layers: int):
        self.name, self.ids, self.iv, self.n_layers = name, ids, iv, n_layers

    def __len__(self) -> int:
        return self.n_layers

    def __getitem__(self, layer: int) -> RawVsProjected:
        if not 0 <= layer < self.n_layers:
            raise IndexError(layer)
        return cached(FAMILY, "raw_vs_projected")(self.name, self.ids, self.iv, layer)


def projections_view(loaded: LM, name: str, prompt: Prompt, iv: Interventions = NO_INTERVENTION) -> None:
    """softmax(XXᵀ) beside a layer's learned heads on the rows its W_Q, W_K, W_V read (`views.projections`),
    under the page's interventions (``iv``), on the prompt's first `PROJECTION_TOKENS` tokens."""
    ids = prompt.ids[: lm_analysis.PROJECTION_TOKENS]
    if len(ids) < 2:
        st.info("Raw vs projected needs at least two tokens: type a longer prompt.")
        return
    if len(prompt.ids) > len(ids):
        st.info(f"Raw vs projected reads the prompt's first {len(ids)} of {len(prompt.ids)} tokens (a "
                "layer's maps of more would be too large to keep); causal, those rows are the whole "
                "prompt's.")  # fmt: skip
    n_layers = loaded.model.cfg.n_layers
    unprojected = sorted(i for block, i in iv.unprojected if block == BLOCK)
    layers = _Layers(name, ids, iv, n_layers)
    window = _window(len(ids), "llm_proj_window")
    projection_view.layer_view(lambda: layers, n_layers, "llm", held_out=None, window=window,
                               unprojected=unprojected)  # fmt: skip


# --- Attention vs importance -----------------------------------------------------------------------
def importance_view(loaded: LM, name: str, prompt: Prompt, card: Mapping | None) -> None:
    """The shared "Attention vs importance" tab on the prompt's first `lm_importance.MAX_TOKENS` tokens."""
    cap = lm_importance.MAX_TOKENS
    ids = prompt.ids[:cap]
    if len(prompt.ids) > cap:
        st.info(f"Ablation runs one copy of the prompt per token: it reads the first {cap} of the prompt's "
                f"{len(prompt.ids)} tokens ({cap} copies of {cap} tokens, about half a minute on 2 "
                "cores).")  # fmt: skip
    labels = [loaded.label(i) for i in ids]
    held_out = card if card and CARD_KEY in card else None  # the card holds no held-out Spearman yet
    try:
        imp.blank_id(loaded.vocabulary.tokenizer)
    except ValueError as err:  # a vocabulary without a one-space token: nothing to ablate a token with
        st.info(f"Attention vs importance replaces each token by a blank: {err} Its other tabs still work.")
        return
    importance_tabs.tab(FAMILY, name, (ids,), held_out, labels=labels)
