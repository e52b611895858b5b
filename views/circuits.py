"""The Circuits tab, shared by the decoder pages (the real LLM and our GPT): a clean and a corrupted
prompt, a target and a rival token, then the logit lens, direct logit attribution, activation and
attribution patching, head ablations and value-weighted attention — all `analysis.circuits` /
`analysis.patching` on the page's own model, cached per input, nothing per family here.

The tab measures the model as it is: the sidebar's interventions are not applied (the question is
how the model itself gets its answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import streamlit as st
import torch

from analysis import circuits as C
from tasks.probes import Contrast
from views import circuit_runs as R
from views.circuit_runs import Subject

__all__ = ["Subject", "direct_view", "lens_view", "tab"]
from views.inputs import token_key
from views.patching import ablation_view, patching_view, positions, value_view
from viz.circuits import effect_grid, lens_grid

OWN = "your own pair"
CANDIDATES = 10  # next tokens offered as target and rival
MAX_TOKENS = 128  # per prompt: every layer's maps are traced (SmolLM2: 30 × 9 × 128² floats, 18 MB)
AS_IS = "Measured on the model as it is: the sidebar's interventions are not applied here."
SECTIONS = ("Logit lens", "Direct attribution", "Patching", "Ablation", "Value-weighted attention")


# --- The tab --------------------------------------------------------------------------------------
def tab(subject: Subject, prompt: str) -> None:
    """The whole tab; ``prompt`` is the page's own text, offered as the clean prompt of "your own pair"."""
    key, model = subject.key, subject.model
    st.caption(AS_IS)
    choice = st.selectbox("Prompt pair", [*subject.presets, OWN], key=f"{key}_circ_pair")
    preset = subject.presets.get(choice)
    clean_text = st.text_area(
        "Clean prompt",
        preset.prompt if preset else prompt,
        height=80,
        key=token_key(f"{key}_circ_clean", [choice]),
    )
    corrupt_text = st.text_area(
        "Corrupted prompt (the same token count; only the clue changed)",
        preset.corrupt if preset else prompt,
        height=80,
        key=token_key(f"{key}_circ_corrupt", [choice]),
    )
    try:
        clean_ids, corrupt_ids = subject.encode(clean_text), subject.encode(corrupt_text)
    except ValueError as err:  # InputError: empty text and the like, with its message
        st.info(str(err))
        return
    if max(len(clean_ids), len(corrupt_ids)) > MAX_TOKENS:
        st.info(
            f"The circuit tools trace every layer of both prompts and patch them position by position: "
            f"they read prompts of up to {MAX_TOKENS} tokens (these have {len(clean_ids)} and "
            f"{len(corrupt_ids)}). Shorten the prompts; the other tabs read the whole prompt."
        )
        return
    clean_run, seconds = R.run(subject.name, model, clean_ids)
    pair = _pick_pair(subject, clean_run, preset)
    if pair is None:
        return
    clean = C.scored(clean_run, pair)
    same_count = len(clean_ids) == len(corrupt_ids)
    corrupt = C.scored(R.run(subject.name, model, corrupt_ids)[0], pair) if same_count else None
    t, r = subject.label(pair.target), subject.label(pair.rival)
    columns = st.columns(2)
    columns[0].metric(f"logit({t}) − logit({r}), clean", f"{clean.value:+.3f}")
    if corrupt is not None:
        columns[1].metric("…on the corrupted prompt", f"{corrupt.value:+.3f}")
    else:
        st.warning(
            f"The clean prompt has {len(clean_ids)} tokens and the corrupted one {len(corrupt_ids)}: "
            "patching swaps activations position by position, so it needs the same count. Change only the "
            "clue (a name for a one-token name). The logit lens, direct attribution and value-weighted "
            "attention need only the clean prompt."
        )
    section = st.radio("Look at", SECTIONS, horizontal=True, key=f"{key}_circ_section")
    inputs = (subject, clean_ids, corrupt_ids if same_count else None, pair, seconds, choice)
    {
        "Logit lens": _lens_view,
        "Direct attribution": _direct_view,
        "Patching": patching_view,
        "Ablation": ablation_view,
        "Value-weighted attention": value_view,
    }[section](*inputs)


def _pick_pair(subject: Subject, run: C.Run, preset: Contrast | None) -> C.Pair | None:
    """Target and rival: the model's top candidates at the last position (defaults: its top two, or
    the preset's words)."""
    top = torch.topk(run.logits[0, -1].float(), CANDIDATES).indices.tolist()
    wanted = [subject.word(w) for w in (preset.target, preset.rival)] if preset else []
    options = list(dict.fromkeys([*(w for w in wanted if w is not None), *top]))
    default = (
        [options.index(w) for w in wanted if w is not None]
        if len(wanted) == 2 and None not in wanted
        else [0, 1]
    )
    target, rival = (
        column.selectbox(f"{role} token", options, index=index, format_func=subject.label,
                         key=token_key(f"{subject.key}_circ_{role.lower()}", [str(run.ids.tolist())]))
        for column, role, index in zip(st.columns(2), ("Target", "Rival"), default, strict=True)
    )  # fmt: skip
    if target == rival:
        st.info("Pick a rival other than the target: the metric is logit(target) − logit(rival).")
        return None
    return C.Pair(int(target), int(rival))


def _lens_view(subject: Subject, clean_ids, corrupt_ids, pair: C.Pair, seconds: float, choice: str) -> None:
    lens = R.lens(subject.name, subject.model, clean_ids, pair)
    lens_view(lens, pair, subject.label, positions(subject, clean_ids), key=f"{subject.key}_circ")


def lens_view(
    lens: C.Lens, pair: C.Pair, label: Callable[[int], str], columns: Sequence[str], *, key: str
) -> None:
    """The logit lens grid (stages × positions) with its chooser of what to colour by, and a summary."""
    shown = st.radio(
        "Show",
        ["probability of the target", "rank of the target", "logit difference"],
        horizontal=True,
        key=f"{key}_lens",
    )
    values = {
        "probability of the target": lens.target_prob,
        "rank of the target": lens.target_rank,
        "logit difference": lens.logit_diff,
    }[shown]
    tops = [
        [
            " · ".join(f"{label(i)} {p:.0%}" for i, p in zip(ids, ps, strict=True))
            for ids, ps in zip(lens.top_ids[s], lens.top_probs[s], strict=True)
        ]
        for s in range(len(lens.stages))
    ]
    name = {
        "probability of the target": "p(target)",
        "rank of the target": "rank",
        "logit difference": "logit diff",
    }[shown]
    st.plotly_chart(
        lens_grid(
            values,
            tops,
            lens.stages,
            columns,
            value_name=name,
            title=f"Logit lens: {label(pair.target)} vs {label(pair.rival)}",
        ),
        key=f"{key}_lens_grid",
    )
    last = len(columns) - 1
    st.markdown(
        "Each row is the residual stream after that step, read out by the model's own final norm and "
        "unembedding. The last row is the model's output itself (the same computation on the same tensor). "
        f"At the last position the target is first ranked {int(lens.target_rank[:, last].min())} "
        f"at {lens.stages[int(lens.target_rank[:, last].argmin())]}."
    )


def _direct_view(subject: Subject, clean_ids, corrupt_ids, pair: C.Pair, seconds: float, choice: str) -> None:
    direct = R.direct(subject.name, subject.model, clean_ids, pair)
    direct_view(direct, [f"L{i}" for i in range(direct.heads.shape[0])], key=f"{subject.key}_circ")


def direct_view(direct: C.Direct, rows: Sequence[str], *, key: str) -> None:
    """The heads' direct effects as a grid (``rows`` names its rows), the largest terms, and their sum."""
    n_heads = direct.heads.shape[1]
    st.plotly_chart(
        effect_grid(
            direct.heads,
            rows=list(rows),
            cols=[f"H{h}" for h in range(n_heads)],
            value_name="direct effect",
            title="Each head's direct effect on logit(target) − logit(rival)",
            x_title="head",
        ),
        key=f"{key}_dla",
    )
    order = np.argsort(-np.abs(direct.effects))[:12]
    st.dataframe(
        [{"term": direct.names[j], "direct effect": float(direct.effects[j])} for j in order], hide_index=True
    )
    st.caption(
        f"The final stream at the last position is the sum of {len(direct.names)} terms; through the "
        f"final norm (a linear map at this input's scale, {direct.scale:.4g}) and the unembedding their "
        "effects sum to "
        f"{direct.effects.sum():+.4f}; the model's own logit difference is {direct.total:+.4f}."
    )
