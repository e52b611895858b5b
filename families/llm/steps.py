"""SmolLM2's steps of the learner's path: a real LLM's attention (GQA, RoPE, the first-token sink) and a
head that moves a name (IOI), from the page's own served calls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from analysis import circuits as C
from analysis import lm
from analysis.family import Family, Query, Quiz, Step
from families.llm import runner as llama
from families.llm.shipped import SMOLLM2
from models.attention import Interventions
from tasks import probes
from views.attention import model_view
from views.inputs import md_escape
from views.serving import cached, loaded_model
from viz.circuits import effect_grid


def ids_of(family: Family, query: Query) -> tuple[int, ...]:
    """The page's prompt ids (its prompt mode, the page's default) from its URL parameter."""
    return llama.prepare(loaded_model(family, SMOLLM2.name), query.get("llm_prompt", llama.EXAMPLE)).ids


# --- 11. A real LLM: GQA, RoPE, attention sinks ---------------------------------------------------
HIDE_FIRST = Interventions(hidden_keys=(0,))  # no query may attend to the first token


@dataclass(frozen=True)
class Real:
    run: lm.LMRun  # every layer's maps (the page's run of the prompt)
    hidden: lm.LMRun  # the same prompt with the first token hidden from every query (no maps)

    @property
    def first(self) -> str:
        return self.run.inputs[0]

    def next_token(self, run: lm.LMRun) -> tuple[str, float]:
        return run.top_tokens[-1][0], float(run.top_probs[-1, 0])


def measure_real(family: Family, query: Query) -> Real:
    ids, cfg = ids_of(family, query), loaded_model(family, SMOLLM2.name).model.cfg
    run = cached(family, "run")(SMOLLM2.name, ids, Interventions(), llama.page_layers(cfg, len(ids), 0))
    return Real(run, cached(family, "scores")(SMOLLM2.name, ids, HIDE_FIRST))


def view_real(result: Real, key: str) -> None:
    run, kv = result.run, result.run.kv_heads
    groups = ", ".join("/".join(f"H{h}" for h in range(len(kv)) if kv[h] == g) for g in sorted(set(kv)))
    st.caption(f"{len(run.layers)} layers × {len(kv)} query heads; the heads {groups} share their keys and "
               "values (grouped-query attention).")  # fmt: skip
    model_view(run.maps["self"], key, layer=len(run.layers) // 2, head=0)
    if st.toggle(f"Hide the first token ‘{md_escape(result.first)}’ from every query", key=f"{key}_hide"):
        (word, p), (before, q) = result.next_token(result.hidden), result.next_token(run)
        st.metric("Next token after the prompt, first token hidden", word, f"p = {p:.1%} (was ‘{before}’ "
                  f"p = {q:.1%})", delta_color="off")  # fmt: skip


def quiz_real(result: Real) -> Quiz:
    run, first = result.run, md_escape(result.first)
    (after, p_after), (before, p_before) = result.next_token(result.hidden), result.next_token(run)
    n_layers, n_heads = run.maps["self"].n_layers, run.maps["self"].n_heads
    candidates = tuple(dict.fromkeys((*run.top_tokens[-1][:4], after)))
    on_first = float(run.maps["self"].weights[:, :, -1, 0].mean())
    feedback = (
        f"With ‘{first}’ hidden the model says ‘{md_escape(after)}’ (p = {p_after:.2f}) where it said "
        f"‘{md_escape(before)}’ (p = {p_before:.2f}){'' if after == before else ' — another word'}. Yet "
        f"‘{first}’ carries little meaning: of the last token's attention, {on_first:.2f} on average over "
        f"all {n_layers} × {n_heads} heads lands on it. Heads with nothing to do park their weight there (a "
        "sink); hide it and that weight is spread over real tokens."
    )
    question = (f"Most heads put much of their weight on the first token ‘{first}’ "
                "(the bright first column). Hide it from every query: what does the model predict after the "
                "prompt?")  # fmt: skip
    return Quiz(question, after, feedback, candidates)


# --- 12. A head that moves a name: indirect object identification ---------------------------------
@dataclass(frozen=True)
class Movers:
    contrast: probes.Contrast  # the prompt, its answer and the rival
    direct: C.Direct  # every term's direct effect on logit(answer) − logit(rival)


def contrast_of(text: str) -> probes.Contrast:
    """The page's preset prompt pair (IOI or a landmark) whose clean prompt is ``text``."""
    found = [c for c in (*probes.ioi_set(168, probes.SEED, "preset"), *probes.fact_set()) if c.prompt == text]
    if not found:
        raise ValueError(f"{text!r} is no preset prompt pair of the Circuits tab: pick one of tasks.probes'.")
    return found[0]


def measure_movers(family: Family, query: Query) -> Movers:
    contrast, vocabulary = contrast_of(query["llm_prompt"]), loaded_model(family, SMOLLM2.name).vocabulary
    pair = C.Pair(vocabulary.word(" " + contrast.target), vocabulary.word(" " + contrast.rival))
    return Movers(contrast, cached(family, "circuit_direct")(SMOLLM2.name, ids_of(family, query), pair))


def view_movers(result: Movers, key: str) -> None:
    n_layers, n_heads = result.direct.heads.shape
    target, rival = result.contrast.target, result.contrast.rival
    title = f"Each head's direct effect on logit(‘{target}’) − logit(‘{rival}’)"
    figure = effect_grid(result.direct.heads, rows=[f"L{i}" for i in range(n_layers)],
                         cols=[f"H{h}" for h in range(n_heads)], value_name="direct effect", x_title="head",
                         title=title)  # fmt: skip
    st.plotly_chart(figure, key=f"{key}_grid")


def quiz_movers(result: Movers) -> Quiz:
    heads = result.direct.heads  # (L, h)
    effects = heads.ravel()
    ranked = np.argsort(-heads.ravel(), kind="stable")
    names = tuple(f"L{i} H{h}" for i in range(heads.shape[0]) for h in range(heads.shape[1]))
    target, rival = (md_escape(w) for w in (result.contrast.target, result.contrast.rival))
    feedback = (
        f"{names[ranked[0]]} adds {effects[ranked[0]]:+.2f} to logit(‘{target}’) − logit(‘{rival}’), of "
        f"{result.direct.total:.2f} in all; next {names[ranked[1]]} {effects[ranked[1]]:+.2f}. Its output, "
        "through W_O, the final norm and the unembedding, writes the answer over the rival: it moves the "
        "answer to the last position."
    )
    question = (f"The model should say ‘{target}’, not ‘{rival}’. Which head writes ‘{target}’ over "
                f"‘{rival}’ most directly?")  # fmt: skip
    return Quiz(question, names[ranked[0]], feedback, names)


SHIPPED = {"llm_checkpoint": SMOLLM2.name}  # links open the shipped model, whatever the operator's default
IOI = "When Mary and John went to the store, John gave a drink to"
JAPAN = "The capital of Japan is"
STEPS = (
    Step(
        id="sinks", idea="A real LLM: grouped-query attention, RoPE, attention sinks",
        explain=(
            "SmolLM2-135M is a real, modern language model: 30 layers of 9 heads. To save memory, groups of "
            "3 query heads share one key/value head (grouped-query attention). Positions are not added to "
            "the input but rotate each query and key (RoPE), so a score depends on how far apart two "
            "tokens are. And many heads put most of their weight on the first token, whatever it is: an "
            "attention sink."
        ),
        look_for="the bright first column in most of the 270 maps — then hide that token.",
        query={**SHIPPED, "llm_prompt": JAPAN, "llm_view": "Attention sinks"},
        contrast={"llm_prompt": llama.EXAMPLE},
        measure=measure_real, view=view_real, quiz=quiz_real,
        deeper="every head's share on the first token, and the losses with it hidden",
        more={"GQA and the KV cache": {**SHIPPED, "llm_prompt": JAPAN, "llm_view": "GQA"},
              "RoPE on one query and key": {**SHIPPED, "llm_prompt": JAPAN, "llm_view": "RoPE"}},
    ),
    Step(
        id="name-movers", idea="What one head does: moving a name (IOI)",
        explain=(
            "“When Mary and John went to the store, John gave a drink to” — the answer is Mary, the name "
            "that is not repeated. Researchers found heads in GPT-2 that copy that name to the last "
            "position (name movers). Direct logit attribution splits the model's final answer into what "
            "each head wrote: every head's output, read through the final norm and the unembedding."
        ),
        look_for="the few red cells: heads that write the answer over the rival.",
        query={**SHIPPED, "llm_prompt": IOI, "llm_view": "Circuits"}, contrast={"llm_prompt": llama.EXAMPLE},
        measure=measure_movers, view=view_movers, quiz=quiz_movers,
        deeper="the logit lens, activation patching, and the name movers ablated",
    ),
)  # fmt: skip
