r"""Transformer attention lab

A small encoder–decoder transformer, trained here on the same tasks as the seq2seq page. Every
attention block runs the project's one attention core: $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$ per
head, heads concatenated, mixed by $W_O$. Change masks, scaling, heads and positions in the sidebar:
the output is recomputed each time.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from analysis.stats import mean_entropy
from families.transformer import FAMILY, lessons
from families.transformer import circuits_view as encoder_decoder_circuits
from families.transformer import walkthrough_view as walkthrough
from families.transformer.runner import BLOCK_TITLES, FIXED_BATCH, SELF_ATTENTION_BLOCKS, projections
from models.attention import Interventions
from models.checkpoints import checkpoint_name
from models.transformer import BLOCKS, PRESETS
from tasks.common import Vocab
from views import attention, importance_tabs
from views import interventions as controls
from views import projections as projection_view
from views.inputs import source_picker, task_select
from views.layout import lazy_tabs, page_header
from views.outputs import task_output, text_block
from views.serving import cached, card, loaded_model

transformer_run = cached(FAMILY, "run")
batch_accuracy = cached(FAMILY, "batch_accuracy")
head_ranking = cached(FAMILY, "head_ranking")
page_header(__doc__)

# --- Model and input ------------------------------------------------------------------------------
task_column, model_column, input_column = st.columns(3)
task = task_select(task_column)
available = [v for v in PRESETS if card(checkpoint_name("transformer", task.name, v)) is not None]
if not available:
    st.error(
        f"No trained transformer for this task in assets/. Train one with "
        f"`python -m training --family transformer --task {task.name} --variant h4`."
    )
    st.stop()


def variant_label(v: str) -> str:
    c = card(checkpoint_name("transformer", task.name, v))
    heads, d_model, norm = c["config"]["n_heads"], c["config"]["d_model"], c["config"]["norm"]
    plural = "s" if heads > 1 else ""
    exact = c["test"]["exact_match"]
    return f"{heads} head{plural} (d_k={d_model // heads}), {norm}-norm — test exact {exact:.1%}"


variant = model_column.selectbox(
    "Model (h = heads; -post = post-norm)",
    available,
    index=available.index("h4") if "h4" in available else 0,
    key="model",
    bind="query-params",
)
model_column.caption(variant_label(variant))
name = checkpoint_name("transformer", task.name, variant)
model_card = card(name)
cfg = model_card["config"]
n_heads, n_layers = cfg["n_heads"], cfg["n_layers"]
source = source_picker(task, Vocab(tuple(model_card["src_vocab"])), input_column)
src, reference = source.prepared.tokens, source.reference

# --- Interventions (sidebar) ----------------------------------------------------------------------
with st.sidebar:
    st.header("Interventions")
    causal = controls.causal_mask(
        "Causal mask in decoder self-attention",
        key="tf_causal",
        help="Acts on teacher forcing: free-running decoding has no future to peek at.",
    )
    padding = st.checkbox("Padding mask", True, key="tf_padding")
    padded = st.checkbox(
        "Run the input in a padded batch",
        False,
        key="tf_padded",
        help="Pads the source to the task's longest input, as in a batch with a longer one.",
    )
    hidden = controls.hidden_tokens("Hide source tokens (custom key mask)", src, key="tf_hidden")
    scaled = st.checkbox("Scale logits by 1/√d_k", True, key="tf_scaled")
    temperature = controls.attention_temperature(key="tf_temp")
    positional = st.checkbox("Positional encoding", True, key="tf_pe")
    ablate = controls.heads_off(n_layers, n_heads, key=f"tf_ablate_{variant}", blocks=BLOCKS)
    unprojected = controls.projections_off(
        "Projections off (Q = K = x)",
        [(b, i) for b in BLOCKS for i in range(n_layers)],
        key="tf_unprojected",
        name=lambda t: f"{t[0]} L{t[1]}",
        help="Skip W_Q and W_K in these layers: each head scores its slice of the raw rows, x_i · x_j.",
    )
interventions = Interventions(
    causal=causal,
    padding=padding,
    hidden_keys=hidden,
    scaled=scaled,
    temperature=temperature,
    ablate=frozenset(ablate),
    positional=positional,
    unprojected=frozenset(unprojected),
)
pad_to = task.max_source if padded else 0
plain = Interventions()
changed = interventions != plain or padded

# --- Output ---------------------------------------------------------------------------------------
free = transformer_run(name, src, interventions, None, pad_to)
task_output(free, task)
log_p_cell, exact_cell, entropy_cell, plain_cell = st.columns(4)
log_p_cell.metric("log p(output)", f"{free.log_prob:.3f}")
acc, base_acc = batch_accuracy(name, interventions), batch_accuracy(name, plain)
exact_cell.metric(
    f"Exact match, {FIXED_BATCH} test examples",
    f"{acc:.0%}",
    delta=controls.vs_plain(acc - base_acc, changed, "+.0%"),
)
base = transformer_run(name, src, plain)
shown = free.real_positions(len(src))  # padding rows compared with nothing: they are not the input
entropy_now = mean_entropy(shown["encoder"])
if changed:
    plain_cell.metric("Output without interventions", base.text or "(empty)")
entropy_cell.metric(
    "Mean encoder attention entropy (nats)",
    f"{entropy_now:.3f}",
    delta=controls.vs_plain(entropy_now - mean_entropy(base.maps["encoder"]), changed),
    delta_color="off",
)
controls.deltas(
    replace(free, maps=shown), base, changed, "What the interventions changed, per attention block"
)
forced = None
if reference is not None:
    forced = transformer_run(name, src, interventions, tuple(reference), pad_to)
    wrong = sum(p != r for p, r in zip(forced.predictions, forced.output, strict=True))
    st.markdown(
        f"**Teacher forcing on the reference** — at each position the model's top prediction, given the "
        f"reference prefix{' and, with the causal mask off, the future too' if not causal else ''}: "
        f"{wrong} of {len(forced.output)} positions predicted wrong; −log p(reference) = "
        f"**{-forced.log_prob:.3f}**."
    )
    text_block(" ".join(forced.predictions))
view = forced or free


# --- Views ----------------------------------------------------------------------------------------
def heads() -> None:
    block = st.radio("Block", BLOCKS, format_func=BLOCK_TITLES.get, horizontal=True, key="tf_heads_block")
    attention.model_view(view.maps[block], "tf")
    attention.head_view(view.maps[block], "tf")


def raw_vs_projected() -> None:
    block_column, layer_column = st.columns(2)
    block = block_column.radio(
        "Block", SELF_ATTENTION_BLOCKS, format_func=BLOCK_TITLES.get, horizontal=True, key="tf_proj_block"
    )
    layer = layer_column.selectbox("Layer", range(n_layers), key="tf_proj_layer")
    held_out = model_card.get("diagonal_mass", {}).get(block)
    projection_view.comparison(
        projections(view, block, layer, pre_norm=cfg["norm"] == "pre"),
        "tf",
        held_out=held_out and {"n": held_out["n"], **held_out["layers"][layer]},
        note="Switch the projections off in the sidebar to see what the model does without them.",
        window=range(len(src)) if block == "encoder" else None,  # a padded run's <pad> rows are not input
        projections_off=(block, layer) in interventions.unprojected,
    )


def ablation() -> None:
    st.markdown(
        f"Each head switched off alone (its context zeroed before W_O), on top of the sidebar's "
        f"interventions; exact match on {FIXED_BATCH} held-out examples. Worst first."
    )
    if not st.toggle("Rank all heads", key="tf_rank"):
        st.caption(f"Ranking runs {3 * n_layers * n_heads} batched decodes; switch it on to compute.")
        return
    ranking = [
        {"block": b, "layer": i, "head": h, "exact match without it": a, "drop": acc - a}
        for b, i, h, a in head_ranking(name, interventions)
    ]
    bar = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f")
    st.dataframe(ranking, hide_index=True, column_config={"exact match without it": bar})


lazy_tabs(
    {
        "Walkthrough": lambda: walkthrough.one_head(
            loaded_model(FAMILY, name)[0], view, norm=cfg["norm"], teacher_forced=forced is not None
        ),
        "Heads": heads,
        "Raw vs projected": raw_vs_projected,
        "Ablation": ablation,
        "Positional encoding": lambda: lessons.positional_encoding(
            name, src, interventions, pad_to, cfg["d_model"]
        ),
        "Post- vs pre-norm": lambda: lessons.norm_placement(task.name),
        "Playground": lessons.playground,
        **attention.statistics_tabs(
            view.maps, "tf", file_stem=name, diagonal_mass=model_card.get("diagonal_mass")
        ),
        "Attention vs importance": lambda: importance_tabs.tab(FAMILY, name, (tuple(src),), model_card
        ),
        "Circuits": lambda: encoder_decoder_circuits.tab(name, task, tuple(src)),
    },
    key="tf_view",
)
