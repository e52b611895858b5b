r"""Seq2seq alignment

A GRU encoder reads the source into one vector $h_i$ per token. Without attention the decoder gets
only the encoder's final state — one fixed vector for the whole sentence, a bottleneck. With
attention, each decoder step t scores every $h_i$, turns the scores into weights
$\alpha_t = \mathrm{softmax}(e_t)$, and reads its own context $c_t = \sum_i \alpha_{t,i} h_i$.
Every number below is the trained model's own.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.importance import CARD_KEY, PerToken
from analysis.protocol import AttentionMaps
from families.seq2seq import FAMILY
from families.seq2seq.circuits import MIN_GAP
from families.seq2seq.importance import gold_agreement
from families.seq2seq.rnn_views import rnn_through_time, sequential_vs_parallel
from families.seq2seq.runner import Seq2SeqRun
from families.seq2seq.views import step_inspector
from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from tasks import InputError, bucket_label, prepare
from tasks.common import EOS, Vocab, aer, argmax_links
from views import attention, cards, importance_tabs
from views.inputs import md_escape, nearest_source, quoted, source_picker, task_select, token_key
from views.layout import lazy_tabs, page_header
from views.outputs import task_output, text_block
from views.serving import cached, card
from viz.charts import length_curves, token_bars
from viz.circuits import effect_grid

seq2seq_runs = cached(FAMILY, "runs")
SCORING_LABELS = {
    "additive": "additive (Bahdanau)",
    "dot": "dot (Luong)",
    "general": "general (Luong)",
    "scaled_dot": "scaled dot (Vaswani)",
    "none": "no attention (fixed vector)",
}

page_header(__doc__)

# --- Inputs ---------------------------------------------------------------------------------------
task_column, scoring_column, decoding_column = st.columns(3)
task = task_select(task_column)
scoring = scoring_column.selectbox(
    "Scoring function",
    SCORINGS,
    key="scoring",
    bind="query-params",
    help=" · ".join(SCORING_LABELS[s] for s in SCORINGS),
)
decoding = decoding_column.radio(
    "Decoding", ["greedy", "beam"], horizontal=True, key="decoding", bind="query-params"
)
beam = (
    decoding_column.slider("Beam size k", 2, 8, 4, key="k", bind="query-params") if decoding == "beam" else 1
)
name = checkpoint_name("seq2seq", task.name, scoring)
model_card = card(name)
if model_card is None:
    st.error(
        f"No trained checkpoint `{name}` in assets/. Train it with "
        f"`python -m training --family seq2seq --task {task.name} --variant {scoring}`."
    )
    st.stop()
src_vocab, tgt_vocab = Vocab(tuple(model_card["src_vocab"])), Vocab(tuple(model_card["tgt_vocab"]))
source = source_picker(task, src_vocab, st)
gold, reference, src = source.gold, source.reference, source.prepared.tokens
# Axis labels: unknown tokens are marked, so a reader sees which columns the model read as <unk>.
labels = [f"{tok} (unk)" if tok in source.prepared.unknown else tok for tok in src]

# --- Run ------------------------------------------------------------------------------------------
runs = seq2seq_runs(name, src, beam, None)
run = runs[0]
if len(runs) > 1:
    pick = st.radio(
        "Beam hypotheses (ranked by log p / length) — each keeps its own attention",
        range(len(runs)),
        format_func=lambda i: f"#{i + 1}: {runs[i].text}  (log p {runs[i].log_prob:.3f})",
        key="s2s_hyp",
    )
    run = runs[pick]
task_output(run, task)
if run.output and run.output[-1] != EOS:
    st.warning(f"The model did not finish within {task.max_target} tokens; the output is cut there.")
matches_gold = gold is not None and run.output == (*gold.tgt, EOS)
log_p_cell, exact_cell, aer_cell, gold_cell = st.columns(4)
log_p_cell.metric("log p(output)", f"{run.log_prob:.3f}")
exact_cell.metric("Model's test exact match", f"{model_card['test']['exact_match']:.1%}")
aer_cell.metric("Model's test AER", f"{model_card['test']['aer']:.3f}")
if gold is not None:
    gold_cell.metric("Output = gold?", "yes" if matches_gold else "no")


def gold_cells() -> dict:
    return {"gold_sure": sorted(gold.sure), "gold_possible": sorted(gold.possible)}


def example_aer(r: Seq2SeqRun) -> float:
    return aer(argmax_links(r.weights[: len(gold.tgt)].tolist()), gold.sure, gold.possible)


def teacher_forcing() -> None:
    if reference is None:
        st.info(
            "Pick an example (its gold target is the reference) or type a reference target to see "
            "the teacher-forced alignment and the loss of each reference token."
        )
        return
    (forced,) = seq2seq_runs(name, src, 1, reference)
    ref_unknown = tgt_vocab.unknown(reference)
    if ref_unknown:
        st.warning(f"Reference tokens the model cannot output (read as <unk>): {quoted(ref_unknown)}.")
    losses = -forced.token_log_probs
    st.markdown(
        f"Teacher forcing feeds the reference token $y_{{t-1}}$ at every step instead of the model's "
        f"own guess. Loss −log p(reference) = **{losses.sum():.3f}** "
        f"(mean {losses.mean():.3f} per token, perplexity {np.exp(losses.mean()):.3f})."
    )
    forced_column, free_column = st.columns(2)
    for column, r, title, key, marks in (
        (forced_column, forced, "Teacher-forced α", "s2s_tf_heatmap", gold_cells() if gold else {}),
        (free_column, run, "Free-running α", "s2s_free_heatmap", {}),
    ):
        with column:
            maps = AttentionMaps.single(title, r.weights, r.output, labels)
            attention.heatmap(maps, 0, 0, key, axes=("output", "source"), value_name="α", **marks)
    if gold is not None:
        st.markdown(f"AER of the teacher-forced argmax attention vs gold: **{example_aer(forced):.3f}**")
    st.plotly_chart(
        token_bars(forced.output, losses, name="−log p", title="Loss per reference token"), key="s2s_tf_loss"
    )


def task_cards() -> dict[str, dict]:
    """Every shipped checkpoint of this task, by scoring label."""
    found = {s: card(checkpoint_name("seq2seq", task.name, s)) for s in SCORINGS + ("none",)}
    return {SCORING_LABELS[s]: c for s, c in found.items() if c is not None}


def bottleneck() -> None:
    st.markdown(
        "Exact match on the test split by source length, from the model cards. The no-attention model "
        "must squeeze the whole source into one vector; its accuracy falls as inputs grow, while the "
        "attention models read what they need at each step."
    )
    curves = {
        label: {b: v["exact_match"] for b, v in c["test"]["by_length"].items()}
        for label, c in task_cards().items()
    }
    highlight = bucket_label(len(src), task.buckets)
    st.plotly_chart(length_curves(curves, unit=task.unit, highlight=highlight), key="s2s_curve")
    baseline = checkpoint_name("seq2seq", task.name, "none")
    if card(baseline) is not None:
        (base,) = seq2seq_runs(baseline, src, 1, None)
        st.markdown(f"**Your input ({len(src)} {task.unit})** through both models:")
        text_block(f"attention ({scoring}): {run.text}\nno attention        : {base.text}")


def alignment() -> None:
    attention.heatmap(
        run.maps["alignment"],
        0,
        0,
        "s2s_heatmap",
        title="Alignment α (row t: where output token t looked)",
        axes=("output", "source"),
        value_name="α",
        **(gold_cells() if matches_gold else {}),
    )
    if matches_gold:
        st.markdown(
            "Red squares: sure gold links; amber circles: possible links. "
            f"**AER of the argmax attention on this example: {example_aer(run):.3f}** (0 is perfect)."
        )
    elif gold is not None:
        st.caption(
            "The output differs from the gold target, so the gold links are shown on the "
            "teacher-forced alignment (Teacher forcing tab)."
        )


def gold_links(per_token: PerToken, t: int) -> None:
    """Under the importance tab: whether each measure's top source token is a gold link."""
    agreement = gold_agreement(per_token, gold) if gold is not None else None
    if agreement is not None and agreement.scored[t]:
        linked = {m: "a gold link" if hit[t] else "not linked" for m, hit in agreement.top_is_gold.items()}
        tops = "; ".join(f"{m}: “{md_escape(src[top[t]])}” ({linked[m]})" for m, top in agreement.top.items())
        st.markdown(f"**Against the gold alignment**, the top source token by {tops}.")
    if "gold" in model_card.get(CARD_KEY, {}):
        gold_card = model_card[CARD_KEY]["gold"]
        shares = ", ".join(f"{m} {v:.1%}" for m, v in gold_card["top_is_gold_link"].items())
        st.caption(f"Held out ({gold_card['tokens']} output tokens): the top is a gold link for {shares}.")


@st.fragment
def causal_alignment() -> None:
    """Which annotation each output token needs (activation patching) beside where attention looks."""
    default = nearest_source(task, src)
    corrupt_text = st.text_input(
        "Corrupted source (the same length: change only the clue)",
        task.joiner.join(default or src),
        key=token_key("s2s_patch_corrupt", src),
    )
    try:
        corrupt = prepare(task, corrupt_text, src_vocab).tokens
    except InputError as err:
        st.info(str(err))
        return
    if len(corrupt) != len(src):
        st.info(
            f"Patching swaps annotations position by position, so it needs the same length: the source has "
            f"{len(src)} {task.unit}, the corrupted one {len(corrupt)}."
        )
        return
    found = cached(FAMILY, "causal_alignment")(
        name,
        tuple(src_vocab.encode(src)),
        tuple(src_vocab.encode(corrupt)),
        tuple(tgt_vocab.encode(run.output)),
    )
    st.markdown(
        "Every run is teacher-forced on the output above. Each column runs the corrupted source with one "
        "annotation $h_i$ — what attention reads — taken from the clean run; each cell is the share of "
        "log p(output token) restored, (patched − corrupt) / (clean − corrupt). Rows the corrupted source "
        f"changes by less than {MIN_GAP} nats are blank."
    )
    columns = [a if a == b else f"{a}/{b}" for a, b in zip(labels, corrupt, strict=True)]
    left, right = st.columns(2)
    maps = AttentionMaps.single("alignment α on the clean source", found.attention, run.output, src)
    with left:
        attention.heatmap(maps, 0, 0, "s2s_causal_alpha")
    right.plotly_chart(
        effect_grid(
            found.restored,
            rows=list(run.output),
            cols=columns,
            value_name="restored",
            title="Causal alignment: the annotation patched",
            x_title="source (clean/corrupted)",
            y_title="output token",
        ),
        key="s2s_causal_grid",
    )


def model_cards() -> None:
    cards.metrics_table(task_cards(), "s2s_cards")
    cards.card_facts(model_card)


lazy_tabs(
    {
        "Alignment": alignment,
        "Step inspector": lambda: step_inspector(run, scoring, labels),
        "Teacher forcing": teacher_forcing,
        "Bottleneck study": bottleneck,
        "Attention vs importance": lambda: importance_tabs.tab(
            FAMILY, name, (src, run.output), model_card, after=gold_links
        ),
        "RNN through time": lambda: rnn_through_time(
            name, task, scoring, SCORING_LABELS[scoring], src, labels
        ),
        "Causal alignment": causal_alignment,
        "Sequential vs parallel": sequential_vs_parallel,
        "Statistics & export": lambda: attention.statistics_and_export(run.maps, "s2s", file_stem=name),
        "Model card": model_cards,
    },
    key="s2s_view",
)
