"""The Seq2seq page's RNN tabs: the encoder unrolled through time (its gates recomposed and checked,
the gradient by distance) and sequential vs parallel (a GRU layer vs a self-attention layer, timed).

Every number is the model's own or a measurement: gates are recomposed from the model's weights and
checked against nn.GRU's states, gradients come from autograd on the model, times from the saved
benchmark table or a run on this machine.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from families.seq2seq import FAMILY, parallel, rnn
from models.checkpoints import checkpoint_name
from tasks import TASKS, Task
from views.serving import cached, card, inference, loaded_model, read_only
from viz.charts import lines
from viz.heatmaps import matrix_heatmap
from viz.timing import timing_curves

MIN_PAIRS = 20  # the held-out ratio is read at the longest distance with at least this many pairs
MEASURE_LENGTHS = (16, 32, 64, 128)  # the page's own quick measurement
MEASURE_REPEATS = 5
GATE_FIGURES = (
    ("update", "update gate z_i", "z", "s2s_rnn_update"),
    ("reset", "reset gate r_i", "r", "s2s_rnn_reset"),
    ("candidate", "candidate state n_i", "n", "s2s_rnn_candidate"),
)


# --- Cached runner calls --------------------------------------------------------------------------
seq2seq_runs = cached(FAMILY, "runs")


@st.cache_resource(max_entries=64, show_spinner=False)
def encoder_unrolled(name: str, src: tuple[str, ...]) -> rnn.EncoderUnrolled:
    model, _, src_vocab, _ = loaded_model(FAMILY, name)
    with inference(name):
        return read_only(rnn.unroll_encoder(model, src, src_vocab))


@st.cache_resource(max_entries=64, show_spinner="Differentiating each output token wrt each input…")
def gradient_map(name: str, src: tuple[str, ...]) -> rnn.GradientRun:
    model, model_card, src_vocab, tgt_vocab = loaded_model(FAMILY, name)
    with inference(name):
        return read_only(rnn.gradient_run(model, TASKS[model_card["task"]], src, src_vocab, tgt_vocab))


# --- RNN through time -----------------------------------------------------------------------------
@st.fragment
def _unrolled(unrolled: rnn.EncoderUnrolled, labels: list[str]) -> None:
    """One direction's states and gates, steps × hidden units, and the recomposition check."""
    direction = st.radio(
        "Direction",
        [d.direction for d in unrolled.directions],
        horizontal=True,
        key="s2s_rnn_direction",
        help="The encoder is bidirectional: one GRU reads left to right, another right to left.",
    )
    (shown,) = [d for d in unrolled.directions if d.direction == direction]
    reads = "top to bottom (i = 0 first)" if direction == "forward" else "bottom to top (i = S−1 first)"
    axes = dict(x_title="hidden unit", y_title="source position", y_labels=labels)
    st.plotly_chart(
        matrix_heatmap(
            shown.hidden, title=f"h_i from nn.GRU ({direction}, reads {reads})", value_name="h", **axes
        ),
        key="s2s_rnn_hidden",
    )
    columns = st.columns(3)
    for column, (field, title, value_name, key) in zip(columns, GATE_FIGURES, strict=True):
        figure = matrix_heatmap(
            getattr(shown, field), title=title, value_name=value_name, diverging=field == "candidate", **axes
        )
        column.plotly_chart(figure, key=key)
    diffs = ", ".join(f"{d.direction} {d.max_abs_diff:.2e}" for d in unrolled.directions)
    st.markdown(
        "The gates are recomposed from the weights listed above and each $x_i$, chained from "
        "$h = 0$: $h_i = (1 - z_i) \\odot n_i + z_i \\odot h_{i-1}$. "
        f"**max |h recomposed − h from nn.GRU| = {unrolled.max_abs_diff:.2e}** ({diffs})."
    )


def _reading(name: str, scoring: str, scoring_label: str, baseline: str, src: tuple[str, ...]) -> None:
    """Many-to-one vs every step, checked on this input with both models' own numbers."""
    (run,) = seq2seq_runs(name, src, 1, None)
    lines_md = [
        "- **No attention (`none`)** — many-to-one: the encoder's S steps end in one summary vector, "
        "$[\\overrightarrow{h}_{S-1};\\ \\overleftarrow{h}_0]$, and the decoder reads that same vector at "
        "every output step.",
        "- **Attention (`additive`, `dot`, `general`, `scaled_dot`)** — every step: at each output step "
        "the context $c_t = \\sum_i \\alpha_{t,i} h_i$ reads all S annotations $h_i$.",
        f"- **This model: {scoring_label}** — "
        + (
            "reads one summary vector."
            if scoring == "none"
            else f"reads every step: the smallest weight any of the {len(src)} positions got at any step "
            f"is α = {run.weights.min():.2e} (> 0: every $h_i$ is in every context)."
        ),
    ]
    st.markdown("\n".join(lines_md))
    if card(baseline) is not None:
        (base_run,) = seq2seq_runs(baseline, src, 1, None)
        final = encoder_unrolled(baseline, src).final  # (2H,)
        gap = float(np.abs(base_run.contexts - final).max())
        st.markdown(
            f"Check on your input: the baseline's context at each of its {len(base_run.output)} steps vs "
            f"its encoder's summary vector: **max |c_t − [h→; h←]| = {gap:.2e}**."
        )


def _curve_series(curves: dict[str, rnn.DistanceCurve], normalise: bool) -> dict:
    series = {}
    for label, c in curves.items():
        y = c.mean_norm / c.mean_norm[0] if normalise else c.mean_norm
        series[label] = (c.distance.tolist(), np.asarray(y, dtype=np.float64).tolist())
    return series


def _ratio_text(curves: dict[str, rnn.DistanceCurve], min_pairs: int) -> str:
    (attention, base) = curves.values()
    found = rnn.ratio_at_longest(attention, base, min_pairs=min_pairs)
    if found is None:
        return "The two models share no distance to compare at."
    d, ratio = found
    return (
        f"At the longest distance (|t − i| = {d}{f', ≥ {min_pairs} pairs each' if min_pairs > 1 else ''}): "
        f"attention / no attention = **{ratio:.3g}** "
        f"({attention.mean_norm[d]:.3g} vs {base.mean_norm[d]:.3g})."
    )


def _gradients(
    name: str, scoring_label: str, baseline: str, task: Task, src: tuple[str, ...], labels
) -> None:
    st.markdown(
        f"How much does output token $y_t$ depend on source vector $e_i$? The norm {rnn.GRADIENT}, "
        f"against the distance {rnn.DISTANCE} Both models are {rnn.TEACHER_FORCING}."
    )
    if card(baseline) is None:
        st.info(
            f"No baseline checkpoint `{baseline}` to compare with. Train it with "
            f"`python -m training --family seq2seq --task {task.name} --variant none`."
        )
        return
    normalise = st.toggle(
        "Divide each curve by its value at distance 0",
        key="s2s_rnn_normalise",
        help="Compares the shapes: how fast each model's dependence falls with distance.",
    )
    ours, base = gradient_map(name, src), gradient_map(baseline, src)
    curves = {f"attention ({scoring_label})": ours.curve, "no attention": base.curve}
    y_title = "mean norm ÷ norm at distance 0" if normalise else "mean ‖∂ log p(y_t)/∂ e_i‖"
    st.plotly_chart(
        lines(
            _curve_series(curves, normalise),
            x_title="|t − i|",
            y_title=y_title,
            title="Your input",
            log_y=True,
        ),
        key="s2s_rnn_grad_curve",
    )
    st.markdown(_ratio_text(curves, 1))
    left, right = st.columns(2)
    axes = dict(x_title="source position i", y_title="output step t", x_labels=labels, value_name="norm")
    for column, label, grads, key in (
        (left, "attention", ours, "s2s_rnn_grad_att"),
        (right, "no attention", base, "s2s_rnn_grad_none"),
    ):
        title = f"‖∂ log p(y_t)/∂ e_i‖, {label}"
        figure = matrix_heatmap(grads.norms, title=title, y_labels=grads.output, diverging=False, **axes)
        column.plotly_chart(figure, key=key)
    names = dict(zip(curves, (name, baseline), strict=True))
    entries = {label: (card(n) or {}).get("gradient_by_distance") for label, n in names.items()}
    if any(e is None for e in entries.values()):
        st.info("No held-out average in the model cards yet: "
                "`python -m training.measure gradient-distance --family seq2seq`.")
        return
    held = {label: rnn.curve_from_card(e) for label, e in entries.items()}
    n_examples = next(iter(entries.values()))["n"]
    st.plotly_chart(
        lines(
            _curve_series(held, normalise),
            x_title="|t − i|",
            y_title=y_title,
            title=f"Averaged over {n_examples} held-out examples (from the model cards)",
            log_y=True,
        ),
        key="s2s_rnn_grad_heldout",
    )
    st.markdown(_ratio_text(held, MIN_PAIRS))
    st.caption(
        "A confident model's log p(y_t) is near 0 and barely moves: its gradients are small at every "
        "distance, because ∂ log p / ∂ logit = 1 − p. Compare the levels and, with the toggle, the shapes."
    )


def rnn_through_time(name: str, task: Task, scoring: str, scoring_label: str, src, labels: list[str]) -> None:
    """The tab: the encoder unrolled, what the decoder reads, the gradient by distance."""
    unrolled = encoder_unrolled(name, src)
    st.markdown(
        f"**1 · One set of weights, every step.** The encoder applies the same tensors at each of the "
        f"{len(src)} steps of each direction — these, with the model's own names and shapes:"
    )
    st.dataframe(
        {
            "parameter": [w.name for w in unrolled.shared],
            "shape": [" × ".join(map(str, w.shape)) for w in unrolled.shared],
            "used at every step for": [w.role for w in unrolled.shared],
        },
        hide_index=True,
    )
    _unrolled(unrolled, labels)
    baseline = checkpoint_name("seq2seq", task.name, "none")
    st.markdown("**2 · Many-to-one or every step?**")
    _reading(name, scoring, scoring_label, baseline, src)
    st.markdown("**3 · Gradient by distance.**")
    _gradients(name, scoring_label, baseline, task, src, labels)


# --- Sequential vs parallel -----------------------------------------------------------------------
def _timing_figure(table: parallel.ParallelTable, title: str):
    series, dashed = {}, []
    for layer, layer_label in (("gru", "GRU"), ("attention", "self-attention")):
        for mode, mode_label in (("forward", "forward"), ("forward_backward", "forward + backward")):
            series[f"{layer_label}, {mode_label}"] = table.times(layer, mode)
            if mode == "forward_backward":
                dashed.append(f"{layer_label}, {mode_label}")
    return timing_curves(table.lengths, series, dashed=dashed, title=title)


def _conditions(table: parallel.ParallelTable) -> str:
    return (
        f"d = {table.width}, {table.heads} heads, batch {table.batch}, median of {table.repeats}; "
        f"{table.device}, {table.torch_threads} torch threads, torch {table.torch_version}; "
        f"{table.machine}; {table.date}"
    )


def _crossovers(table: parallel.ParallelTable) -> str:
    parts = []
    for mode, label in (("forward", "forward"), ("forward_backward", "forward + backward")):
        n = table.crossover(mode)
        parts.append(f"{label}: " + (f"**from n = {n} on**" if n else "**not within the measured lengths**"))
    return "Self-attention becomes slower than the GRU — " + "; ".join(parts) + "."


@st.fragment
def _measure_here(saved: parallel.ParallelTable | None) -> None:
    if st.button("Measure on this machine", key="s2s_par_measure"):
        bar = st.progress(0.0, text="Timing…")
        with inference("sequential-vs-parallel"):
            table = parallel.measure(
                MEASURE_LENGTHS,
                width=saved.width if saved else 64,
                heads=saved.heads if saved else 4,
                batch=saved.batch if saved else 1,
                repeats=MEASURE_REPEATS,
                progress=lambda fraction, message: bar.progress(fraction, text=message),
            )
        st.session_state["s2s_par_result"] = table.to_json()  # this session's own result, shown below
    if "s2s_par_result" not in st.session_state:
        st.caption(
            f"Lengths {', '.join(map(str, MEASURE_LENGTHS))}, median of {MEASURE_REPEATS}; nothing is saved."
        )
        return
    mine = parallel.ParallelTable.from_json(st.session_state["s2s_par_result"])
    st.plotly_chart(_timing_figure(mine, "Measured now, on this machine"), key="s2s_par_mine")
    st.caption(_conditions(mine))
    st.markdown(_crossovers(mine))


def sequential_vs_parallel() -> None:
    """The tab: the saved benchmark table drawn, its counts, where attention gets slower, and a re-run."""
    st.markdown(
        "A GRU takes its n steps one after another (step i needs $h_{i-1}$); self-attention computes all "
        "n positions at once, in a few matrix products, at the price of n × n scores. One layer of each, "
        "the same width, timed (`benchmarks/bench_parallel.py`; the attention layer is the project's "
        "`MultiHeadAttention`)."
    )
    try:
        saved = parallel.read_table()
    except ValueError as err:
        st.info(str(err))
        saved = None
    saved_column, mine_column = st.columns(2)
    if saved is not None:
        with saved_column:
            st.plotly_chart(_timing_figure(saved, "Saved measurement"), key="s2s_par_saved")
            st.caption(_conditions(saved))
            st.markdown(_crossovers(saved))
    with mine_column:
        _measure_here(saved)
    if saved is None:
        return
    st.markdown("**The counts that explain the times** (per sequence, from the layers' own weight shapes):")
    rows = saved.rows
    st.dataframe(
        {
            "n": [r.length for r in rows],
            "sequential steps (GRU vs attention)": [
                f"{r.gru_sequential_steps} vs {r.attention_sequential_steps}" for r in rows
            ],
            "longest path between positions": [
                f"{r.gru_longest_path} vs {r.attention_longest_path}" for r in rows
            ],
            "GRU multiply-adds (n · 6d²)": [r.gru_multiply_adds for r in rows],
            "attention multiply-adds (n · 4d² + 2n²d)": [r.attention_multiply_adds for r in rows],
            "attention ÷ GRU": [round(r.attention_multiply_adds / r.gru_multiply_adds, 3) for r in rows],
        },
        hide_index=True,
    )
    st.caption(
        "Multiply-adds leave out elementwise work (gates, softmax). Attention does more arithmetic once "
        "2n²d outgrows the GRU's extra 2nd² (n > d), but in one parallel step; the GRU's n steps are each "
        "small and must wait for each other."
    )
