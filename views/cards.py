"""Model-card views for any family: the held-out metrics of several checkpoints, one card's facts."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

CARD_FACTS = (
    "name",
    "config",
    "seed",
    "data_seed",
    "n_train",
    "steps",
    "batch",
    "lr",
    "params",
    "training_seconds",
    "device",
)
METRICS = {
    "exact_match": "exact match",
    "token_accuracy": "token accuracy",
    "aer": "AER",
    "bleu": "BLEU",
    "bleu4": "BLEU-4",
    "pointing_game": "pointing game",
    "pointing_game_strict": "pointing game (strict)",
}


def metrics_table(cards: Mapping[str, dict], key: str) -> None:
    """One row per checkpoint (label → card): its test-split metrics, size and training time."""
    rows = []
    for label, c in cards.items():
        test = c["test"]
        row = {"model": label} | {name: test[k] for k, name in METRICS.items() if test.get(k) is not None}
        rows.append(row | {"params": c["params"], "training s": c["training_seconds"]})
    st.dataframe(rows, hide_index=True, key=key)


def card_facts(card: dict) -> None:
    """How one checkpoint was made: config, seeds, data size, schedule, size, time, device."""
    st.markdown(
        f"Scored on the {card['test']['n']}-example test split (seed {card['test_seed']}, never trained on)."
    )
    st.json({k: card[k] for k in CARD_FACTS if k in card}, expanded=False)
