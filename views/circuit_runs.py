"""What the Circuits tab computes, cached: one shared read-only result per (model, inputs), under the
inference policy (`views.serving`). The page hands its model in a `Subject`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from torch import nn

from analysis import circuits as C
from analysis import patching as P
from tasks.probes import Contrast
from views.serving import inference, read_only


@dataclass(frozen=True)
class Subject:
    """What a page hands the tab: its model and how its text becomes tokens."""

    key: str  # the page's widget-key prefix
    name: str  # the model's name: with the token ids, the cache key of every result
    model: nn.Module
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


@st.cache_resource(max_entries=24, show_spinner="Running the prompt with every layer traced…")
def run(name: str, _model: nn.Module, ids: tuple[int, ...]) -> tuple[C.Run, float]:
    with inference(name):
        start = time.perf_counter()
        run = C.forward(_model, ids, None)
        return run, time.perf_counter() - start


@st.cache_resource(max_entries=16, show_spinner="Reading every layer's stream out…")
def lens(name: str, _model: nn.Module, ids: tuple[int, ...], pair: C.Pair) -> C.Lens:
    with inference(name):
        return read_only(C.logit_lens(_model, C.scored(run(name, _model, ids)[0], pair), pair))


@st.cache_resource(max_entries=16, show_spinner=False)
def direct(name: str, _model: nn.Module, ids: tuple[int, ...], pair: C.Pair) -> C.Direct:
    with inference(name):
        return read_only(C.direct_attribution(_model, C.scored(run(name, _model, ids)[0], pair), pair))


@st.cache_resource(max_entries=16, show_spinner="One forward and one backward on the corrupted prompt…")
def attributed(
    name: str, _model: nn.Module, clean: tuple[int, ...], corrupt: tuple[int, ...], pair: C.Pair
) -> P.Attributed:
    runs = [C.scored(run(name, _model, ids)[0], pair) for ids in (clean, corrupt)]
    with inference(name):
        return read_only(P.attribution_patching(_model, *runs, pair))


@st.cache_resource(max_entries=16, show_spinner=False)
def sweep(
    name: str,
    _model: nn.Module,
    kind: str,
    clean: tuple[int, ...],
    corrupt: tuple[int, ...],
    pair: C.Pair,
    layer: int | None,
    _progress: P.Progress | None = None,
) -> P.Sweep:
    runs = [C.scored(run(name, _model, ids)[0], pair) for ids in (clean, corrupt)]
    with inference(name):
        if kind == "head":
            return read_only(P.head_sweep(_model, *runs, pair, layer=layer, progress=_progress))
        return read_only(P.residual_sweep(_model, *runs, pair, site=kind, progress=_progress))


@st.cache_resource(max_entries=16, show_spinner="Ablating…")
def ablated(
    name: str,
    _model: nn.Module,
    ids: tuple[int, ...],
    pair: C.Pair,
    heads: tuple,
    how: str,
    reference: tuple,
    resample: tuple[int, ...] | None,
) -> float:
    other = None if resample is None else C.scored(run(name, _model, resample)[0], pair)
    with inference(name):
        return P.head_ablation(_model, ids, pair, heads, how, reference=reference, resample=other)


@st.cache_resource(max_entries=16, show_spinner=False)
def value_weighted(
    name: str, _model: nn.Module, ids: tuple[int, ...], layer: int
) -> tuple[np.ndarray, np.ndarray]:
    with inference(name):
        return read_only(C.value_weighted(_model, ids, layer))
