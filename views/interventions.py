"""The sidebar's intervention controls the attention pages share, and how a page shows what they changed.

Each control sets one field of the frozen `models.attention.Interventions` the page passes to its
runner. Keys are the page's own (its prefix: ``tf_``, ``bert_``, ``gpt_``); none is bound to the URL
(sidebar interventions are not in a shared link). Controls render where they are called: inside
``with st.sidebar:`` on the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from analysis.protocol import AttentionRun
from views.attention import intervention_deltas
from views.inputs import token_key

NONE_ON = "No intervention is on: switch one on in the sidebar."


def head_name(head: tuple) -> str:
    """(layer, head) → 'L1 H2'; (block, layer, head) → 'cross L1 H2'."""
    *block, layer, index = head
    return " ".join([*map(str, block), f"L{layer}", f"H{index}"])


def heads_off(
    n_layers: int,
    n_heads: int,
    *,
    key: str,
    blocks: Sequence[str] = (),
    name: Callable[[tuple], str] = head_name,
) -> list[tuple]:
    """The heads to switch off (each one's context zeroed before W_O: ``Interventions.ablate``), picked
    from every (layer, head), or every (block, layer, head) of ``blocks``."""
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    if blocks:
        heads = [(block, *h) for block in blocks for h in heads]
    return st.multiselect("Switch heads off", heads, format_func=name, key=key)


def hidden_tokens(label: str, tokens: Sequence[str], *, key: str, help: str | None = None) -> tuple[int, ...]:
    """Positions no query may attend to (``Interventions.hidden_keys``), listed as 'j: token'. The
    key carries the tokens (`token_key`): another input starts with nothing hidden."""
    return tuple(
        st.multiselect(
            label,
            range(len(tokens)),
            format_func=lambda j: f"{j}: {tokens[j]}",
            key=token_key(key, tokens),
            help=help,
        )
    )


def attention_temperature(*, key: str) -> float:
    """T dividing every attention logit before the softmax (``Interventions.temperature``; 1 = as trained)."""
    return st.slider("Temperature on attention logits", 0.1, 5.0, 1.0, 0.1, key=key)


def projections_off(
    label: str, layers: Sequence, *, key: str, name: Callable, help: str | None = None
) -> list:
    """The layers (or (block, layer) pairs) whose heads skip W_Q and W_K and score the raw rows,
    x_i · x_j (``Interventions.unprojected``)."""
    return st.multiselect(label, layers, format_func=name, key=key, help=help)


def causal_mask(label: str, *, key: str, help: str) -> bool:
    """The causal mask on (the default) or off (``Interventions.causal``): off, each position also
    sees the ones after it. ``help`` says where that matters on the page."""
    return st.checkbox(label, True, key=key, help=help)


def vs_plain(change: float, changed: bool, spec: str = "+.3f") -> str | None:
    """A metric's delta against the same run without interventions; None (no delta drawn) when none is on."""
    return f"{change:{spec}} vs no intervention" if changed else None


def deltas(run: AttentionRun, base: AttentionRun, changed: bool, label: str) -> None:
    """What the interventions changed per attention block (`views.attention.intervention_deltas`), in
    an expander that is always there, so the layout does not jump when one is switched on."""
    with st.expander(label):
        if changed:
            intervention_deltas(run, base)
        else:
            st.caption(NONE_ON)
