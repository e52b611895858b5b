"""The transformer lab's lessons: positional encoding, post- vs pre-norm, and the shape playground."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from analysis.protocol import AttentionMaps
from families.transformer import FAMILY
from families.transformer.lesson_runs import random_attention, sinusoid_table
from models.attention import Interventions
from models.checkpoints import ASSETS, CheckpointError, CheckpointFileMissing, checkpoint_name, read_json
from views import cards
from views.attention import model_view
from views.outputs import text_block
from views.serving import cached, card
from viz.charts import lines
from viz.heatmaps import matrix_heatmap
from viz.sweeps import lr_sweep

transformer_run = cached(FAMILY, "run")
batch_accuracy = cached(FAMILY, "batch_accuracy")


def positional_encoding(
    name: str, src: tuple[str, ...], interventions: Interventions, pad_to: int, d_model: int
) -> None:
    """The sinusoid table, its position similarities, and this input with the encoding removed."""
    encodings = sinusoid_table(max(len(src), 8) + 8, d_model)
    st.latex(
        r"PE_{pos,2i} = \sin\!\left(pos / 10000^{2i/d}\right),\quad "
        r"PE_{pos,2i+1} = \cos\!\left(pos / 10000^{2i/d}\right)"
    )
    table_column, similarity_column = st.columns(2)
    table = matrix_heatmap(
        encodings,
        title="Sinusoidal encodings (position × dimension)",
        x_title="dimension",
        y_title="position",
        value_name="PE",
    )
    table_column.plotly_chart(table, key="tf_pe_matrix")
    norms = np.linalg.norm(encodings, axis=1)
    similarity = matrix_heatmap(
        (encodings @ encodings.T) / np.outer(norms, norms),
        title="Cosine similarity between positions",
        x_title="position",
        y_title="position",
        value_name="cos",
    )
    similarity_column.plotly_chart(similarity, key="tf_pe_sim")
    with_pe = transformer_run(name, src, replace(interventions, positional=True), None, pad_to)
    without = transformer_run(name, src, replace(interventions, positional=False), None, pad_to)
    st.markdown(
        "The same input with positional encoding removed (everything else as in the sidebar): "
        "without positions, self-attention is order-blind."
    )
    text_block(f"with PE   : {with_pe.text}\nwithout PE: {without.text}")
    st.metric(
        "Exact match without PE", f"{batch_accuracy(name, replace(interventions, positional=False)):.0%}"
    )


def norm_placement(task_name: str) -> None:
    """Training curves and per-layer gradient norms of the pre-norm and post-norm twins, then the
    warm-up experiment: both twins with and without learning-rate warm-up over a sweep of peaks."""
    _norm_twins(task_name)
    st.subheader("Warm-up, measured")
    _warmup(task_name)


def _norm_twins(task_name: str) -> None:
    """The shipped twins' training curves and per-layer gradient norms."""
    pre, post = (card(checkpoint_name("transformer", task_name, v)) for v in ("h4", "h4-post"))
    if pre is None or post is None:
        st.info("Both the h4 (pre-norm) and h4-post checkpoints are needed for this comparison.")
        return
    st.markdown(
        "Post-norm (original paper): $x \\leftarrow \\mathrm{LN}(x + f(x))$. Pre-norm: "
        "$x \\leftarrow x + f(\\mathrm{LN}(x))$ — the residual path stays an identity, which keeps "
        "gradients to early layers healthy. Same data, seed and schedule:"
    )
    twins = {"pre": pre, "post": post}

    def steps(c: dict) -> list[int]:
        return [p["step"] for p in c["loss_curve"]]

    curves = {f"{k}-norm": (steps(c), [p["loss"] for p in c["loss_curve"]]) for k, c in twins.items()}
    st.plotly_chart(lines(curves, x_title="step", y_title="training loss", log_y=True), key="tf_norm_loss")
    for column, (k, c) in zip(st.columns(2), twins.items(), strict=True):
        groups = [g for g in c["loss_curve"][0]["grad_norms"] if "." in g]
        norms = {g: (steps(c), [p["grad_norms"].get(g, 0.0) for p in c["loss_curve"]]) for g in groups}
        fig = lines(norms, x_title="step", y_title="gradient norm", title=f"{k}-norm, per layer", log_y=True)
        column.plotly_chart(fig, key=f"tf_norm_grad_{k}")
    cards.metrics_table({"pre-norm": pre, "post-norm": post}, "tf_norm_cards")


COMBINATIONS = (("pre", True), ("pre", False), ("post", True), ("post", False))  # (norm, warm-up?)


def combination(norm: str, warmup: bool) -> str:
    return f"{norm}-norm, {'warm-up' if warmup else 'no warm-up'}"


def failed(run: dict) -> bool:
    return run["diverged"] or run["no_better_than_unigram"]


@st.cache_resource(show_spinner=False)
def warmup_card(task_name: str) -> dict | None:
    """The warm-up experiment's card (shared by every session: read it, never write into it);
    None when it has not been produced. A damaged file raises `CheckpointError`."""
    fix = f"run `python -m training --experiment warmup --task {task_name} --threads 1`"
    try:
        return read_json(ASSETS / f"warmup-{task_name}.json", fix)
    except CheckpointFileMissing:
        return None


def _runs(experiment: dict, layers: int, norm: str, warmup: bool) -> list[dict]:
    """The runs of one combination at one depth, by increasing peak learning rate."""
    runs = experiment["runs"]
    mine = [r for r in runs if r["n_layers"] == layers and r["norm"] == norm and r["warmup"] == warmup]
    return sorted(mine, key=lambda r: r["peak_lr"])


def _outcome(run: dict) -> str:
    return "diverged" if run["diverged"] else f"collapsed, loss {run['final_loss']:.2f}"


def _result(run: dict) -> str:
    """A run's final loss and held-out exact match, or that it diverged."""
    if run["final_loss"] is None:
        return "diverged"
    return f"loss {run['final_loss']:.2f} ({run['test']['exact_match']:.0%} exact match)"


def warmup_statement(experiment: dict, layers: int, peak: float) -> str:
    """What happened at ``layers`` layers (and at ``peak`` in particular), in words built from the
    card's numbers only."""
    # 1) The rules, with the baseline they are measured against.
    runs = [r for r in experiment["runs"] if r["n_layers"] == layers]
    diverged = sum(r["diverged"] for r in runs)
    statement = [
        f"{layers} layers, {experiment['steps']} steps per run. {diverged} of {len(runs)} runs diverged "
        "(a non-finite loss, or a final loss above the first); a run *collapsed* when it ended no better "
        f"than the unigram baseline (loss {experiment['unigram_loss']:.2f}: it learned nothing from the "
        "input). Either is a failure."
    ]
    # 2) One line per combination: where it failed, its best held-out exact match, where it has none.
    first_failure = {}
    for norm, warmup in COMBINATIONS:
        mine = _runs(experiment, layers, norm, warmup)
        bad = [r for r in mine if failed(r)]
        first_failure[norm, warmup] = bad[0]["peak_lr"] if bad else None
        what = (
            "failed at peak " + ", ".join(f"{r['peak_lr']:g} ({_outcome(r)})" for r in bad)
            if bad
            else "never failed"
        )
        best = max(mine, key=lambda r: r["test"]["exact_match"])
        zero = [f"{r['peak_lr']:g}" for r in mine if r["test"]["exact_match"] == 0]
        statement.append(
            f"- **{combination(norm, warmup)}** {what}; best held-out exact match "
            f"{best['test']['exact_match']:.0%} (peak {best['peak_lr']:g})"
            + (f"; 0% at peak {', '.join(zero)}." if zero else ".")
        )
    # 3) At the chosen peak: what warm-up changed for each twin.
    at_peak = {(r["norm"], r["warmup"]): r for r in runs if r["peak_lr"] == peak}
    changes = [
        f"{norm}-norm from {_result(at_peak[norm, False])} to {_result(at_peak[norm, True])}"
        for norm in ("post", "pre")
        if (norm, False) in at_peak and (norm, True) in at_peak
    ]
    if changes:
        statement.append(f"At peak {peak:g}, warm-up took {' and '.join(changes)}.")

    # 4) The verdict on the claim: post-norm needs warm-up, pre-norm does not.
    def first(norm: str, warmup: bool) -> str:
        at = first_failure[norm, warmup]
        return "did not fail at any peak tried" if at is None else f"first failed at peak {at:g}"

    statement.append(
        f"Post-norm without warm-up {first('post', False)}; with warm-up it {first('post', True)}. "
        f"Pre-norm without warm-up {first('pre', False)}; with warm-up it {first('pre', True)}."
    )
    return "\n".join(statement)


def _sweep(experiment: dict, layers: int, value) -> dict:
    """Per combination: (peaks, ``value(run)`` per run, failed flags), the input of `lr_sweep`."""
    series = {}
    for norm, warmup in COMBINATIONS:
        runs = _runs(experiment, layers, norm, warmup)
        series[combination(norm, warmup)] = (
            [r["peak_lr"] for r in runs],
            [value(r) for r in runs],
            [failed(r) for r in runs],
        )
    return series


def _warmup(task_name: str) -> None:
    """The experiment's card as plots: the schedules, the sweep, one peak's curves, the statement."""
    try:
        experiment = warmup_card(task_name)
    except CheckpointError as err:
        st.error(err.brief)
        return
    if experiment is None:
        st.info(
            f"No warm-up experiment for {task_name} yet: run `python -m training --experiment warmup "
            f"--task {task_name} --threads 1` (writes assets/warmup-{task_name}.json)."
        )
        return
    # 1) The two schedules, at the chosen peak.
    schedule, steps = experiment["schedule"], experiment["steps"]
    shipped = card(checkpoint_name("transformer", task_name, "h4"))
    short = f" (the shipped checkpoints train {shipped['steps']}: these are short runs)" if shipped else ""
    st.markdown(
        f"Both twins again, each trained {steps} steps{short} from the same initial weights on the same "
        f"batches, with a linear warm-up over the first {schedule['warmup_steps']} steps or none (starting "
        f"at the peak), then the same cosine decay: {schedule['definition']}."
    )
    depths = experiment["depths"]
    layers = (
        st.radio("Layers", depths, format_func=lambda n: f"{n} layers", horizontal=True, key="tf_warm_layers")
        if len(depths) > 1
        else depths[0]
    )
    peaks = sorted({r["peak_lr"] for r in experiment["runs"] if r["n_layers"] == layers})
    peak = st.select_slider(
        "Peak learning rate",
        peaks,
        value=peaks[len(peaks) // 2],
        format_func=lambda x: f"{x:g}",
        key=f"tf_warm_lr_{layers}",  # one per depth: the depths sweep different peaks
    )
    x = list(range(steps))
    lr_curves = {
        label: (x, [peak * m for m in schedule["multiplier"][key]])
        for label, key in (("warm-up", "warmup"), ("no warm-up", "none"))
    }
    schedule_column, curves_column = st.columns(2)
    schedule_column.plotly_chart(
        lines(lr_curves, x_title="step", y_title="learning rate", title=f"Schedule at peak {peak:g}"),
        key="tf_warm_schedule",
    )
    # 2) The loss curves of the four combinations at that peak, against the unigram baseline.
    curves = {
        combination(norm, warmup): (run["curve"]["step"], run["curve"]["loss"])
        for norm, warmup in COMBINATIONS
        for run in _runs(experiment, layers, norm, warmup)
        if run["peak_lr"] == peak
    }
    curves["unigram baseline"] = ([0, steps - 1], [experiment["unigram_loss"]] * 2)
    curves_column.plotly_chart(
        lines(
            curves,
            x_title="step",
            y_title="training loss (running mean)",
            title=f"Loss at peak {peak:g}",
            log_y=True,
        ),
        key="tf_warm_curves",
    )
    # 3) Final loss and held-out exact match against the peak, one line per combination.
    loss_column, match_column = st.columns(2)
    loss_column.plotly_chart(
        lr_sweep(
            _sweep(experiment, layers, lambda r: r["final_loss"]),
            y_title="final training loss",
            title="Final loss vs peak (× failed: collapsed or diverged)",
            log_y=True,
            reference=("unigram baseline", experiment["unigram_loss"]),
        ),
        key="tf_warm_sweep_loss",
    )
    match_column.plotly_chart(
        lr_sweep(
            _sweep(experiment, layers, lambda r: r["test"]["exact_match"]),
            y_title=f"exact match ({experiment['n_test']} test examples)",
            title="Held-out exact match vs peak",
            y_range=(0, 1.02),
        ),
        key="tf_warm_sweep_match",
    )
    # 4) What happened, in words from the numbers above.
    st.markdown(warmup_statement(experiment, layers, peak))
    machine = experiment["machine"]
    st.caption(
        f"{len(experiment['runs'])} runs: {experiment['cpu_seconds']:.0f} CPU s in all, "
        f"{experiment['training_seconds']:.0f} s of training by the wall clock on a shared "
        f"{machine['cpu_count']}-core {machine['device']} machine, "
        f"{machine['torch_threads']} torch thread(s); seed {experiment['seed']}, Adam with gradient "
        f"clipping at 1. Card: assets/{experiment['name']}.json."
    )


@st.fragment
def playground() -> None:
    """Random weights, the user's dimensions: the shape arithmetic of multi-head attention."""
    st.markdown("Random weights, your dimensions: the shape arithmetic of multi-head attention.")
    width_column, heads_column, tokens_column = st.columns(3)
    d = int(width_column.number_input("d_model", 1, 512, 4, key="tf_pg_d"))
    h = int(heads_column.number_input("heads h", 1, 64, 2, key="tf_pg_h"))
    tokens = tokens_column.text_input(
        "Tokens (space-separated)", "the cat sat", max_chars=400, key="tf_pg_text"
    ).split()[:32]
    if not tokens:
        st.info("Type at least one token.")
        return
    try:
        weights = random_attention(d, h, len(tokens))  # (1, h, n, n)
    except ValueError as err:
        st.error(str(err))
        return
    n, d_k = len(tokens), d // h
    st.markdown(
        f"X: {n}×{d} → Q = X W_Qᵀ: {n}×{d} → split into {h} heads of d_k = {d}/{h} = {d_k}: "
        f"{h}×{n}×{d_k} → scores QKᵀ per head: {h}×{n}×{n} → softmax → ×V: {h}×{n}×{d_k} → "
        f"concat: {n}×{d} → × W_O ({d}×{d}): {n}×{d}."
    )
    heads = AttentionMaps(title="random weights", weights=weights, queries=tuple(tokens), keys=tuple(tokens),
                          special_keys=np.zeros(len(tokens), dtype=bool))  # fmt: skip
    model_view(heads, "tf_pg_grid", layer=0, head=0, layer_names=["random"])
