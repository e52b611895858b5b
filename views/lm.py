"""What every decoder page shares (our GPT's, a pretrained LLM's): the sidebar's interventions, the three
headline numbers of a run, and the table of what each intervention changed (`analysis.lm.compare`).

Keys are the page's (its prefix: ``gpt``, ``llm``): ``<prefix>_ablate``, ``_hidden``, ``_temp``,
``_unprojected``, ``_causal``, ``_rope``; none is bound to the URL (sidebar interventions are not in a
shared link).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from analysis.lm import Change, LMRun
from models.attention import Interventions
from views import interventions as controls

CAUSAL_HELP = (
    "Off: every position also sees the tokens after it — under teacher forcing it can peek at the very token "
    "it is asked to predict. Generation is always causal."
)
ROPE_OFF = (
    "RoPE off: q and k are not rotated, so a score no longer depends on how far apart two tokens are "
    "(the model then sees the prompt as a bag of tokens, except for the causal mask)."
)


@dataclass(frozen=True)
class Chosen:
    """The sidebar's interventions: each one alone (those switched on) and all of them together."""

    each: dict[str, Interventions]  # name → that intervention alone, for those on
    together: Interventions
    unprojected: tuple[int, ...]  # layers run with Q = K = x

    def rows(self) -> list[tuple[str, Interventions]]:
        """What the changes table lists: each intervention, then all together when more than one is on."""
        return [*self.each.items(), *([("all together", self.together)] if len(self.each) > 1 else [])]


def sidebar(n_layers: int, n_heads: int, tokens: Sequence[str], *, key: str, block: str, hidden_label: str,
            hidden_help: str | None = None, projections: bool = False,
            rope: bool = False) -> Chosen:  # fmt: skip
    """The interventions a decoder offers, in the sidebar: heads off, hidden tokens, a temperature on the
    attention logits, (``projections``) layers without W_Q and W_K, the causal mask, (``rope``) RoPE off.
    ``block`` is the model's name for its self-attention in `Interventions.ablate`."""
    with st.sidebar:
        st.header("Interventions")
        ablate = controls.heads_off(n_layers, n_heads, key=f"{key}_ablate")
        hidden = controls.hidden_tokens(hidden_label, tokens, key=f"{key}_hidden", help=hidden_help)
        temperature = controls.attention_temperature(key=f"{key}_temp")
        unprojected = (
            controls.projections_off("Projections off (Q = K = x: no W_Q, W_K)", range(n_layers),
                                     key=f"{key}_unprojected", name=lambda i: f"L{i}")  # fmt: skip
            if projections
            else []
        )
        causal = controls.causal_mask("Causal mask", key=f"{key}_causal", help=CAUSAL_HELP)
        positional = (st.checkbox("RoPE (rotary positions)", True, key=f"{key}_rope", help=ROPE_OFF)
                      if rope else True)  # fmt: skip
    every = {
        "heads off": Interventions(ablate=frozenset((block, i, h) for i, h in ablate)),
        "hidden tokens": Interventions(hidden_keys=hidden),
        "attention temperature": Interventions(temperature=temperature),
        "projections off": Interventions(unprojected=frozenset((block, i) for i in unprojected)),
        "causal mask off": Interventions(causal=causal),
        "RoPE off": Interventions(positional=positional),
    }
    together = Interventions(causal=causal, hidden_keys=hidden, temperature=temperature,
                             positional=positional, ablate=every["heads off"].ablate,
                             unprojected=every["projections off"].unprojected)  # fmt: skip
    plain = Interventions()
    return Chosen({n: iv for n, iv in every.items() if iv != plain}, together, tuple(unprojected))


def headline(run: LMRun, base: LMRun, changed: bool, *, tokens_label: str = "Tokens read") -> None:
    """Tokens read, the loss on the prompt's tokens (its change under the interventions) and the next
    token after the prompt with its probability."""
    tokens_cell, loss_cell, next_cell = st.columns(3)
    tokens_cell.metric(tokens_label, len(run.ids))
    finite = np.isfinite(run.loss)
    loss_cell.metric("Loss on the prompt's tokens (nats)", f"{run.loss:.3f}" if finite else "— (one token)",
                     delta=controls.vs_plain(run.loss - base.loss, changed and finite),
                     delta_color="inverse")  # fmt: skip
    next_cell.metric("Next token after the prompt", run.top_tokens[-1][0], f"p = {run.top_probs[-1, 0]:.1%}",
                     delta_color="off", delta_arrow="off")  # fmt: skip


def changes(chosen: Chosen, change: Callable[[Interventions], Change]) -> None:
    """One row per intervention (and all together): ``change(iv)``, the run under it against the run
    without (`analysis.lm.compare`). The KL column says which KL it is: over every position where the runs
    keep every position's distribution, else after the prompt's last token."""
    rows = []
    for name, iv in chosen.rows():
        c = change(iv)
        kl = ({"mean KL over positions, next-token distribution": c.kl_mean_over_positions}
              if c.kl_mean_over_positions is not None else
              {"KL after the prompt, next-token distribution": c.kl_after_prompt})  # fmt: skip
        rows.append({
            "intervention": name, "Δ loss (nats)": c.loss, **kl,
            "positions whose top guess changed": c.top1_changed,
            "next token after the prompt": f"{c.next_before[0]} {c.next_before[1]:.0%} → "
            f"{c.next_after[0]} {c.next_after[1]:.0%}",
        })  # fmt: skip
    st.markdown("**What each intervention changed** (teacher forcing on the prompt, vs no intervention):")
    st.dataframe(rows, hide_index=True)
