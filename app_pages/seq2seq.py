"""Seq2seq alignment: a trained GRU encoder–decoder translates; explore the attention behind it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from runners.seq2seq import Run
from tasks import TASKS, bucket_label
from tasks.common import EOS, Vocab, aer, argmax_links
from views.serving import (
    cached_decode,
    card,
    checked_source,
    from_url,
    held_out_examples,
    md_escape,
    quoted,
    to_url,
)
from viz.figures import attention_heatmap, length_curves, step_bars, token_bars, vector_strips

SCORING_LABELS = {
    "additive": "additive (Bahdanau)",
    "dot": "dot (Luong)",
    "general": "general (Luong)",
    "scaled_dot": "scaled dot (Vaswani)",
    "none": "no attention (fixed vector)",
}
SCORE_FORMULAS = {
    "additive": r"e_{t,i} = v^\top \tanh(W_q\, s_{t-1} + W_k\, h_i + b)",
    "dot": r"e_{t,i} = s_{t-1} \cdot h_i",
    "general": r"e_{t,i} = s_{t-1}^\top W\, h_i",
    "scaled_dot": r"e_{t,i} = \dfrac{s_{t-1} \cdot h_i}{\sqrt{d_k}}",
}

st.title("Seq2seq alignment")
st.markdown(
    "A GRU encoder reads the source into one vector $h_i$ per token. Without attention the decoder "
    "gets only the encoder's final state — one fixed vector for the whole sentence, a bottleneck. "
    "With attention, each decoder step t scores every $h_i$, turns the scores into weights "
    "$\\alpha_t = \\mathrm{softmax}(e_t)$, and reads its own context $c_t = \\sum_i \\alpha_{t,i} h_i$. "
    "Every number below is the trained model's own."
)

# --- Controls -------------------------------------------------------------------------------------
MODES = {"example": "Example from the test split", "text": "Your own text"}
DECODINGS = {"greedy": "greedy", "beam": "beam search"}
from_url("s2s_task", "task", "dates", valid=lambda v: v in TASKS)
from_url("s2s_scoring", "scoring", "additive", valid=lambda v: v in SCORINGS)
from_url("s2s_decoding", "decoding", "greedy", parse=DECODINGS.__getitem__)
from_url("s2s_beam", "k", 4, parse=int, valid=lambda v: 2 <= v <= 8)
from_url("s2s_mode", "input", MODES["example"], parse=MODES.__getitem__)
c1, c2, c3 = st.columns([2, 2, 2])
task_name = c1.selectbox("Task", list(TASKS), format_func=lambda n: TASKS[n].title, key="s2s_task")
scoring = c2.selectbox("Scoring function", SCORINGS, format_func=SCORING_LABELS.get, key="s2s_scoring")
decoding = c3.radio("Decoding", ["greedy", "beam search"], horizontal=True, key="s2s_decoding")
beam = c3.slider("Beam size k", 2, 8, key="s2s_beam") if decoding == "beam search" else 1
task = TASKS[task_name]
name = checkpoint_name("seq2seq", task_name, scoring)
model_card = card(name)
if model_card is None:
    st.error(
        f"No trained checkpoint `{name}` in assets/. Train it with "
        f"`python -m training.train --task {task_name} --scoring {scoring}`."
    )
    st.stop()
src_vocab, tgt_vocab = Vocab(tuple(model_card["src_vocab"])), Vocab(tuple(model_card["tgt_vocab"]))

mode = st.radio("Input", list(MODES.values()), horizontal=True, key="s2s_mode")
gold = None
if mode == MODES["example"]:
    examples = held_out_examples(task_name)
    from_url(f"s2s_example_{task_name}", "example", 0, parse=int, valid=lambda v: 0 <= v < len(examples))
    idx = st.selectbox(
        f"Example (held-out test split, {len(examples)} shown)",
        range(len(examples)),
        format_func=lambda i: task.joiner.join(examples[i].src),
        key=f"s2s_example_{task_name}",
    )
    gold = examples[idx]
    text, reference = task.joiner.join(gold.src), gold.tgt
    st.caption(f"Gold target: {md_escape(task.joiner.join(gold.tgt))}")
else:
    from_url(f"s2s_text_{task_name}", "text", task.placeholder, valid=lambda v: len(v) <= 5000)
    from_url(f"s2s_ref_{task_name}", "ref", "", valid=lambda v: len(v) <= 5000)
    text = st.text_input(
        f"Source text (at most {task.max_source} {task.unit})",
        max_chars=5000,
        key=f"s2s_text_{task_name}",
    )
    ref_text = st.text_input(
        "Reference target (optional): the model is also run with teacher forcing on it",
        key=f"s2s_ref_{task_name}",
    )
    reference = task.tokenize(ref_text) or None
    if task_name == "dates":
        st.caption("Input is lower-cased and spaces are folded: the model was trained on lower-case dates.")
    else:
        st.caption('Input is lower-cased and . , ! ? ; : " ( ) are dropped: the model saw no punctuation.')

own = mode == MODES["text"]
to_url(
    "s2s",
    task=task_name,
    scoring=scoring,
    decoding="beam" if beam > 1 else "greedy",
    k=beam if beam > 1 else None,
    input="text" if own else "example",
    example=None if own else idx,
    text=text if own else None,
    ref=(ref_text or None) if own else None,
)
prepared, reference = checked_source(task, text, src_vocab, reference)
src = prepared.tokens
# Axis labels: unknown tokens are marked, so a reader sees which columns the model read as <unk>.
labels = [f"{tok} (unk)" if tok in prepared.unknown else tok for tok in src]

# --- Output ---------------------------------------------------------------------------------------
runs = cached_decode(name, src, beam, None)
if len(runs) > 1:
    pick = st.radio(
        "Beam hypotheses (ranked by log p / length) — each keeps its own attention",
        range(len(runs)),
        format_func=lambda i: f"#{i + 1}: {runs[i].text}  (log p {runs[i].log_prob:.3f})",
        key="s2s_hyp",
    )
    run = runs[pick]
else:
    run = runs[0]
st.subheader("Output")
st.code(run.text or "(empty output)", language=None)
if run.rows and run.rows[-1] != EOS:
    st.warning(f"The model did not finish within {task.max_target} tokens; the output is cut there.")

matches_gold = gold is not None and tuple(run.rows[:-1]) == gold.tgt and run.rows[-1] == EOS
m1, m2, m3, m4 = st.columns(4)
m1.metric("log p(output)", f"{run.log_prob:.3f}")
m2.metric("Model's test exact match", f"{model_card['test']['exact_match']:.1%}")
m3.metric("Model's test AER", f"{model_card['test']['aer']:.3f}")
if gold is not None:
    m4.metric("Output = gold?", "yes" if matches_gold else "no")

tab_align, tab_step, tab_tf, tab_neck, tab_card = st.tabs(
    ["Alignment", "Step inspector", "Teacher forcing", "Bottleneck study", "Model card"]
)


def gold_cells(ex) -> dict:
    return {"gold_sure": sorted(ex.sure), "gold_possible": sorted(ex.possible)}


def example_aer(r: Run) -> float:
    w = r.weights[: len(gold.tgt)]
    return aer(argmax_links(w.tolist()), gold.sure, gold.possible)


with tab_align:
    st.plotly_chart(
        attention_heatmap(
            run.weights,
            run.rows,
            labels,
            title="Alignment α (row t: where output token t looked)",
            **(gold_cells(gold) if matches_gold else {}),
        ),
        key="s2s_heatmap",
    )
    if matches_gold:
        st.markdown(
            f"Red squares: sure gold links; amber circles: possible links. "
            f"**AER of the argmax attention on this example: {example_aer(run):.3f}** (0 is perfect)."
        )
    elif gold is not None:
        st.caption(
            "The output differs from the gold target, so the gold links are shown on the "
            "teacher-forced alignment (Teacher forcing tab)."
        )

with tab_step:
    t = st.select_slider(
        "Decoder step t",
        options=list(range(len(run.rows))),
        format_func=lambda i: f"t={i + 1} → {run.rows[i]}",
        key="s2s_step",
    )
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**1 · Scores** — the query is the previous decoder state $s_{t-1}$:")
        st.latex(SCORE_FORMULAS[scoring])
        st.markdown("**2 · Weights and context:**")
        st.latex(
            r"\alpha_{t,i} = \frac{\exp e_{t,i}}{\sum_j \exp e_{t,j}}, \qquad "
            r"c_t = \sum_i \alpha_{t,i}\, h_i"
        )
        st.plotly_chart(step_bars(run.scaled_scores[t], run.weights[t], labels), key="s2s_bars")
    with right:
        table = {
            "i": list(range(len(src))),
            "token": labels,
            "e_t,i (raw)": run.raw_scores[t],
            "α_t,i": run.weights[t],
        }
        if run.scale != 1.0:
            table["e_t,i · 1/√d_k"] = run.scaled_scores[t]
        st.dataframe(
            table,
            hide_index=True,
            height=min(420, 40 + 35 * len(src)),
            column_config={
                k: st.column_config.NumberColumn(format="%.5f") for k in table if k not in ("i", "token")
            },
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
    st.plotly_chart(
        vector_strips(
            {
                "s_{t-1} (query)": run.queries[t],
                "c_t (context)": run.contexts[t],
                "s_t (new state)": run.states[t],
            }
        ),
        key="s2s_vectors",
    )

with tab_tf:
    if reference is None:
        st.info(
            "Pick an example (its gold target is the reference) or type a reference target to see "
            "the teacher-forced alignment and the loss of each reference token."
        )
    else:
        (tf,) = cached_decode(name, src, 1, reference)
        ref_unknown = tgt_vocab.unknown(reference)
        if ref_unknown:
            st.warning(f"Reference tokens the model cannot output (read as <unk>): {quoted(ref_unknown)}.")
        losses = -tf.token_log_probs
        st.markdown(
            f"Teacher forcing feeds the reference token $y_{{t-1}}$ at every step instead of the model's "
            f"own guess. Loss −log p(reference) = **{losses.sum():.3f}** "
            f"(mean {losses.mean():.3f} per token, perplexity {np.exp(losses.mean()):.3f})."
        )
        a, b = st.columns(2)
        a.plotly_chart(
            attention_heatmap(
                tf.weights,
                tf.rows,
                labels,
                title="Teacher-forced α",
                **(gold_cells(gold) if gold is not None else {}),
            ),
            key="s2s_tf_heatmap",
        )
        b.plotly_chart(
            attention_heatmap(run.weights, run.rows, labels, title="Free-running α"), key="s2s_free_heatmap"
        )
        if gold is not None:
            st.markdown(f"AER of the teacher-forced argmax attention vs gold: **{example_aer(tf):.3f}**")
        st.plotly_chart(
            token_bars(tf.rows, losses, name="−log p", title="Loss per reference token"), key="s2s_tf_loss"
        )

with tab_neck:
    base_name = checkpoint_name("seq2seq", task_name, "none")
    curves = {}
    for s in SCORINGS + ("none",):
        c = card(checkpoint_name("seq2seq", task_name, s))
        if c is not None:
            curves[SCORING_LABELS[s]] = {b: v["exact_match"] for b, v in c["test"]["by_length"].items()}
    st.markdown(
        "Exact match on the test split by source length, from the model cards. The no-attention model "
        "must squeeze the whole source into one vector; its accuracy falls as inputs grow, while the "
        "attention models read what they need at each step."
    )
    st.plotly_chart(
        length_curves(curves, unit=task.unit, highlight=bucket_label(len(src), task.buckets)), key="s2s_curve"
    )
    if card(base_name) is not None:
        (base,) = cached_decode(base_name, src, 1, None)
        st.markdown(f"**Your input ({len(src)} {task.unit})** through both models:")
        st.code(f"attention ({scoring}): {run.text}\nno attention        : {base.text}", language=None)

with tab_card:
    rows = []
    for s in SCORINGS + ("none",):
        c = card(checkpoint_name("seq2seq", task_name, s))
        if c is not None:
            m = c["test"]
            rows.append(
                {
                    "scoring": SCORING_LABELS[s],
                    "exact match": m["exact_match"],
                    "token accuracy": m["token_accuracy"],
                    "AER": m["aer"],
                    "BLEU": m.get("bleu"),
                    "params": c["params"],
                    "training s": c["training_seconds"],
                }
            )
    st.markdown(
        f"All checkpoints of this task, on the same {model_card['test']['n']}-example test split "
        f"(seed {model_card['test_seed']}, never trained on):"
    )
    st.dataframe(rows, hide_index=True)
    st.json(
        {
            k: model_card[k]
            for k in (
                "name",
                "config",
                "seed",
                "data_seed",
                "n_train",
                "steps",
                "batch",
                "lr",
                "params",
                "training_seconds",
                "device",
            )
        },
        expanded=False,
    )
