"""The language-model page's Circuits tab: the shared tab (`views.circuits`) on the page's model, with the IOI
and landmark pairs as presets where they fit its tokenizer, and — for the shipped model only — its card's
IOI name movers as the ablation's default on the IOI pairs. Gemma 2's direct attribution is explained away
by the shared tab (its heads do not sum to the stream); the logit lens reads through the model's own final
norm and soft cap."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from analysis.lm import LM
from families.llm import FAMILY, runner
from families.llm.shipped import SMOLLM2, circuit_found
from tasks import probes
from views import circuits as circuit_views


def _fits(loaded: LM, contrast: probes.Contrast) -> bool:
    """Whether a preset measures on this tokenizer what it says: its target and rival one token each after a
    space, its corrupted twin the clean prompt's token count."""
    word, encode = loaded.vocabulary.word, lambda t: runner.prepare(loaded, t).ids
    one_token = word(" " + contrast.target) is not None and word(" " + contrast.rival) is not None
    return one_token and len(encode(contrast.prompt)) == len(encode(contrast.corrupt))


def circuits_view(loaded: LM, name: str, text: str, card: Mapping | None) -> None:
    """The shared Circuits tab (`views.circuits`): the IOI and landmark pairs as presets where they fit this
    tokenizer (`_fits`), and, for the shipped model, its card's IOI name movers as the ablation's default on
    the IOI pairs."""
    ioi = probes.ioi_set(3, probes.SEED, "preset")  # the first three of the shipped card's preset set
    presets = {f"IOI: {c.prompt.split(',')[0]} → {c.target}": c for c in ioi}
    presets |= {f"Landmark: {c.prompt} → {c.target}": c for c in probes.fact_set()[:3]}
    presets = {label: c for label, c in presets.items() if _fits(loaded, c)}
    heads, found_name = circuit_found(card) if name == SMOLLM2.name else ((), "")
    model = loaded.model
    subject = circuit_views.Subject(
        key="llm", name=name, family=FAMILY, encode=lambda t: runner.prepare(loaded, t).ids,
        label=loaded.label, word=lambda w: loaded.vocabulary.word(" " + w), presets=presets,
        reference=tuple(tuple(runner.prepare(loaded, c.corrupt).ids) for c in ioi),
        reference_name="the IOI presets' corrupted twins (no name repeats), every position",
        found={label: heads for label in presets if label.startswith("IOI")} if heads else {},
        found_name=found_name, heads_sum_to_stream=model.heads_sum_to_stream,
        logit_softcap=model.logit_softcap,
    )  # fmt: skip
    if not presets:
        st.caption("None of the IOI or landmark presets fits this model's tokenizer (a name or city that is "
                   "not one token, or a corrupted twin of another length): bring your own pair.")
    circuit_views.tab(subject, text)
