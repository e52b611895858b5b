"""The Circuits tab, shared by the decoder pages (the real LLM and our GPT): a clean and a corrupted
prompt, a target and a rival token, then the logit lens, direct logit attribution, activation and
attribution patching, head ablations and value-weighted attention — all `analysis.circuits` /
`analysis.patching` on the page's own model, served by its family (`analysis.lm_circuits`, cached per
input by `views.serving.cached`); this module only draws, and holds nothing per family.

The tab measures the model as it is: the sidebar's interventions are not applied (the question is
how the model itself gets its answer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from analysis import circuits as C
from analysis.family import Family
from tasks.probes import Contrast
from views.inputs import token_key
from views.patching import ablation_view, patching_view, positions, value_view
from views.serving import cached
from viz.circuits import effect_grid, lens_grid

OWN = "your own pair"
CANDIDATES = 10  # next tokens offered as target and rival
MAX_TOKENS = 128  # per prompt: every layer's maps are traced (SmolLM2: 30 × 9 × 128² floats, 18 MB)
AS_IS = "Measured on the model as it is: the sidebar's interventions are not applied here."
SECTIONS = ("Logit lens", "Direct attribution", "Patching", "Ablation", "Value-weighted attention")


@dataclass(frozen=True)
class Subject:
    """What a page hands the tab: its family (serving `analysis.lm_circuits`) and how its text becomes
    tokens."""

    key: str  # the page's widget-key prefix
    name: str  # the model's name: with the token ids, the cache key of every result
    family: Family  # the page's own declaration, whose served ``circuit_*`` calls measure its model
    encode: Callable[[str], tuple[int, ...]]  # text → the ids the page's runner reads (raises InputError)
    label: Callable[[int], str]  # a token as the page shows it
    word: Callable[[str], int | None]  # " word" → its one token id, None when it is several
    presets: Mapping[str, Contrast]  # name → a clean prompt, its target and rival, its corrupted twin
    reference: tuple[tuple[int, ...], ...]  # the mean ablation's reference prompts
    reference_name: str  # what they are, said wherever a mean ablation is shown
    found: Mapping[str, tuple[tuple[int, int], ...]] = field(
        default_factory=dict
    )  # preset → heads a card found
    found_name: str = ""  # where they were found, and what ablating them removed there
    heads_sum_to_stream: bool = True  # the model's: False where a head's term is not its W_O slice (Gemma 2)
    logit_softcap: float | None = None  # the model's cap on its output logits (Gemma 2), or None

    def served(self, call: str) -> Callable:
        """The family's served ``call`` (`views.serving.cached`) on this model: called with the call's
        inputs, the model's name put first."""
        served = cached(self.family, call)
        return lambda *inputs, **unkeyed: served(self.name, *inputs, **unkeyed)


@dataclass(frozen=True)
class Case:
    """The prompt pair the tab measures: the ids, the metric's two tokens and the traced runs (scored),
    which each served call that starts from them is handed (`analysis.lm_circuits`)."""

    clean_ids: tuple[int, ...]
    corrupt_ids: tuple[int, ...] | None  # None: not the clean prompt's token count
    pair: C.Pair
    clean: C.Run
    corrupt: C.Run | None
    seconds: float  # the clean prompt's forward: what exact patching's time is estimated from
    choice: str  # the preset picked, or OWN


# --- The tab --------------------------------------------------------------------------------------
def tab(subject: Subject, prompt: str) -> None:
    """The whole tab; ``prompt`` is the page's own text, offered as the clean prompt of "your own pair"."""
    key = subject.key
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
    traced = subject.served("circuit_run")
    clean_run, seconds = traced(clean_ids)
    pair = _pick_pair(subject, clean_run, preset)
    if pair is None:
        return
    clean = C.scored(clean_run, pair)
    same_count = len(clean_ids) == len(corrupt_ids)
    corrupt = C.scored(traced(corrupt_ids)[0], pair) if same_count else None
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
    case = Case(clean_ids, corrupt_ids if same_count else None, pair, clean, corrupt, seconds, choice)
    {
        "Logit lens": _lens_view,
        "Direct attribution": _direct_view,
        "Patching": patching_view,
        "Ablation": ablation_view,
        "Value-weighted attention": value_view,
    }[section](subject, case)


def _pick_pair(subject: Subject, run: C.Run, preset: Contrast | None) -> C.Pair | None:
    """Target and rival: the model's top candidates at the last position (defaults: its top two, or
    the preset's words)."""
    top = C.candidates(run, CANDIDATES).tolist()
    wanted = [subject.word(w) for w in (preset.target, preset.rival)] if preset else []
    options = list(dict.fromkeys([*(w for w in wanted if w is not None), *top]))
    default = (
        [options.index(w) for w in wanted if w is not None]
        if len(wanted) == 2 and None not in wanted
        else [0, 1]
    )
    labels = {i: subject.label(i) for i in options}  # a widget keeps its format_func: labels, not the model
    target, rival = (
        column.selectbox(f"{role} token", options, index=index, format_func=labels.__getitem__,
                         key=token_key(f"{subject.key}_circ_{role.lower()}", [str(run.ids.tolist())]))
        for column, role, index in zip(st.columns(2), ("Target", "Rival"), default, strict=True)
    )  # fmt: skip
    if target == rival:
        st.info("Pick a rival other than the target: the metric is logit(target) − logit(rival).")
        return None
    return C.Pair(int(target), int(rival))


def _lens_view(subject: Subject, case: Case) -> None:
    lens = subject.served("circuit_lens")(case.clean_ids, case.pair, _clean=case.clean)
    lens_view(lens, case.pair, subject.label, positions(subject, case.clean_ids), key=f"{subject.key}_circ",
              softcap=subject.logit_softcap)  # fmt: skip


def lens_view(
    lens: C.Lens, pair: C.Pair, label: Callable[[int], str], columns: Sequence[str], *, key: str,
    softcap: float | None = None,
) -> None:  # fmt: skip
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
    capped = f", then its soft cap {softcap:g} · tanh(logit / {softcap:g})" if softcap is not None else ""
    st.markdown(
        f"Each row is the residual stream after that step, read out by the model's own final norm and "
        f"unembedding{capped}. The last row is the model's output itself (the same computation on the same "
        "tensor). "
        f"At the last position the target is first ranked {int(lens.target_rank[:, last].min())} "
        f"at {lens.stages[int(lens.target_rank[:, last].argmin())]}."
    )


NOT_ADDITIVE = (
    "**Direct attribution is not shown for this model**: what each of its layers adds to the residual "
    "stream is a norm of the heads' sum (a norm after attention, before the residual add: Gemma 2's "
    "sandwich norms), γ ⊙ (Σ heads) / rms(Σ heads), not one term per head — so no number per head adds up "
    "to the logit difference, and showing each head's W_O slice as if it did would mislead. The logit lens, "
    "patching (exact and attribution) and ablation measure this model as it is: use them."
)


def _direct_view(subject: Subject, case: Case) -> None:
    if not subject.heads_sum_to_stream:
        st.info(NOT_ADDITIVE)
        return
    direct = subject.served("circuit_direct")(case.clean_ids, case.pair, _clean=case.clean)
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
