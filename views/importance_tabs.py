"""The "Attention vs importance" tab every page shares, drawn from what the family's registry entry
brings (`analysis.protocol.ImportanceTab`): its served measurement, what the user picks, its texts.

The tab measures the model as it is (the sidebar's interventions are not applied: the question is
whether the trained model's attention explains its own output), cached per input like the pages'
other runs (`views.serving.cached`), and draws it with the shared `views.importance` views beside
the held-out mean from the model's card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st

from analysis.family import Family, ImportanceTab
from analysis.importance import CARD_KEY, Comparison, compare
from views.importance import comparison, per_output_token
from views.serving import cached, loaded_model

ALL = "all"
MEAN = "mean"
AS_IS = "Measured on the model as it is: the sidebar's interventions are not applied here."


# --- Shared pieces --------------------------------------------------------------------------------
def _pickers(key: str, n_layers: int, n_heads: int) -> tuple[int | None, int | None]:
    """Layer (all, or one: the table and scatter keep that layer's raw and rollout rows) and head
    (mean over heads, or one, for raw attention; rollout is always over the head mean)."""
    layer_column, head_column = st.columns(2)
    layer = layer_column.selectbox(
        "Layers", [ALL, *range(n_layers)], format_func=lambda v: "every layer" if v == ALL else f"layer {v}",
        key=f"{key}_imp_layer",
    )  # fmt: skip
    head = head_column.selectbox(
        "Raw attention of", [MEAN, *range(n_heads)], format_func=lambda v: "the mean over heads" if v == MEAN
        else f"head {v}", key=f"{key}_imp_head",
    )  # fmt: skip
    return (None if layer == ALL else int(layer)), (None if head == MEAN else int(head))


def _of_layer(comp: Comparison, layer: int | None) -> Comparison:
    """The comparison with only ``layer``'s raw and rollout measures (and gradient × input)."""
    if layer is None:
        return comp
    kept = {
        name: values
        for name, values in comp.measures.items()
        if not name.startswith(("raw L", "rollout L")) or name.split()[1] == f"L{layer}"
    }
    return compare(comp.positions, comp.importance, kept, quantity=comp.quantity)


def _held_out(card: Mapping | None) -> Mapping | None:
    entry = (card or {}).get(CARD_KEY)
    return entry.get("spearman") if isinstance(entry, Mapping) else None


def _card_note(card: Mapping | None) -> None:
    entry = (card or {}).get(CARD_KEY)
    if isinstance(entry, Mapping):
        st.caption(
            f"Held-out mean: {entry.get('comparisons', '?')} comparisons over {entry.get('examples', '?')} "
            f"inputs — {entry.get('split', '')}."
        )
    else:
        st.caption(
            "The card has no held-out mean yet: `python -m training.measure importance --family …` adds it."
        )


# --- The tab -------------------------------------------------------------------------------------
def _next_token(spec: ImportanceTab, ids: Sequence[int], labels: Sequence[str]) -> tuple[int, int | None]:
    """The position whose next-token prediction is measured and the target (None: the model's top)."""
    position_column, target_column = st.columns(2)
    t = position_column.selectbox(
        "Predict after position", range(len(ids) - 1, 0, -1), format_func=lambda i: f"{i}: {labels[i]}",
        key=f"{spec.key}_imp_position",
    )  # fmt: skip
    targets = ["the model's top prediction", "the prompt's next token"] if t < len(ids) - 1 else None
    choice = target_column.radio(
        "Target token", targets or ["the model's top prediction"], horizontal=True,
        key=f"{spec.key}_imp_target",
    )  # fmt: skip
    return t, (ids[t + 1] if targets and choice == targets[1] else None)


def _output_token(spec: ImportanceTab, output: Sequence[str]) -> int:
    token_column, _ = st.columns(2)
    return token_column.selectbox(
        "Output token", range(len(output)), format_func=lambda i: f"{i + 1}: {output[i]}",
        key=f"{spec.key}_imp_token",
    )  # fmt: skip


@st.fragment
def tab(
    family: Family,
    name: str,
    inputs: tuple,
    card: Mapping | None,
    *,
    labels: Sequence[str] = (),
    after: Callable[[Any, int], None] | None = None,
) -> None:
    """The family's "Attention vs importance" tab on model ``name`` and the page's ``inputs`` (the
    measurement's hashable inputs; for a "next token" query, the prompt's ids first, ``labels`` one per
    id). ``card`` holds the held-out means (None: the page has none for this model); ``after(result, t)``
    adds what the page knows about the picked output token (a "rows" query: gold links, a map)."""
    spec = family.importance
    measure = cached(family, spec.measure)
    query = ()
    if spec.query == "next token":
        if len(inputs[0]) < 2:
            st.info(f"The prompt needs at least one token after {labels[0]} to ablate.")
            return
        query = _next_token(spec, inputs[0], labels)
    result = measure(name, *inputs, *query)
    text = spec.explain(loaded_model(family, name), inputs, result)
    st.markdown(f"{text} {AS_IS}" if spec.as_is else text)
    if (warning := spec.warning(result)) is not None:
        st.warning(warning)
    if spec.query == "rows":
        t = per_output_token(result, spec.key, held_out=_held_out(card))
        if after is not None:
            after(result, t)
        return
    picked = (_output_token(spec, result.output),) if spec.query == "output token" else ()
    layer, head = _pickers(spec.key, *spec.layers_heads(result))
    comparison(_of_layer(result.comparison(*picked, head), layer), spec.key, held_out=_held_out(card))
    if card is None and spec.without_card is not None:
        st.caption(spec.without_card)
    else:
        _card_note(card)
