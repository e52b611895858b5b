"""Attention vs importance for the GPT, on one prompt (Abnar & Zuidema 2020).

At a chosen position t (default: the prompt's last), the quantity is log p of the token the model
predicts after it: by default its own top prediction there (defined at every position, the prompt's
end included), or a given token (e.g. the prompt's actual next one). The positions are the prompt's
tokens 1…t — <s> is left out, the token at t itself is in — and:

- **importance**: log p(target) − log p(target | token j replaced by a blank), the blank being the
  byte-level BPE's lone space "Ġ" (`analysis.importance.blank_id`); the t ablated copies run as one batch;
- **raw L{l}**: layer l's attention from query t to key j (mean over heads, or ``raw L{l} H{h}``);
- **rollout L{l}**: row t of `analysis.stats.rollout` through layer l, at key j;
- **grad × input**: Σ_d (e_j − e_blank)·∂log p(target)/∂x_j, e the token embedding (the position's
  embedding is the same in both), the first-order estimate of the very ablation.

Smeared keys: a token's key also reads the token before it, so ablating j also changes key j + 1;
attention does not see that, ablation does. The measure is every decoder's (`analysis.lm_importance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis import importance as imp
from analysis.family import ImportanceTab, Served
from analysis.importance import CARD_KEY
from analysis.lm import LM
from analysis.lm_importance import measure
from families.gpt.runner import DEFAULT, load
from models.checkpoints import ASSETS, write_entry
from tasks import stdlib

BLANK = imp.BLANK
PROMPT = 64  # held-out prompts: <s> and the first 63 tokens of a test window; t = the last
DEFINITION = {
    "importance": (
        "log p(target) − log p(target with token j replaced by the blank 'Ġ' (one space)), target = the "
        "model's top prediction after position t; positions 1…t (<s> left out, t itself in)"
    ),
    "replacement": f"{BLANK!r}, one space (id 224 in the shipped tokenizer)",
    "measures": {
        "raw L{l}": "attention of layer l from query t to key j, mean over heads",
        "rollout L{l}": "row t of the attention rollout (analysis.stats.rollout) through layer l, at key j",
        imp.GRADIENT_X_INPUT: (
            "Σ_d (e_j − e_blank) ∂log p(target)/∂x_j, e the token embedding (positions unchanged)"
        ),
    },
}


def held_out(loaded: LM, windows: Sequence[stdlib.Window]) -> dict:
    """The card's entry: per measure the mean Spearman over held-out prompts, each <s> and the first
    `PROMPT` − 1 tokens of a test window, measured at its last position."""
    per_input = [[measure(loaded, w.ids[:PROMPT].tolist()).comparison()] for w in windows]
    split = (
        f"the first {len(windows)} test windows (tasks.stdlib.generate(n, TEST_SEED, 'test'): held-out "
        f"files), each cut to <s> and its first {PROMPT - 1} tokens, measured at the last position"
    )
    return imp.card_entry(per_input, split=split, definition=DEFINITION)


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _explain(loaded: LM, inputs: tuple[tuple[int, ...]], result: imp.NextTokenImportance) -> str:
    ranked = f"Tokens 1…{result.position} are ranked (<s> left out, the token at {result.position} itself in)"
    return imp.next_token_explanation(result, imp.blank_id(loaded.vocabulary.tokenizer), ranked)


SERVED = {"importance": Served(measure, max_entries=64, spinner="Ablating each earlier token…")}
TAB = ImportanceTab(
    key="gpt",
    **imp.NEXT_TOKEN,
    explain=_explain,
)


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The GPT's card: its held-out entry over the first ``n`` test windows, cut to prompts."""
    loaded = load(DEFAULT, folder)
    entry = held_out(loaded, stdlib.generate(n, loaded.card["test_seed"], "test"))
    return write_entry(DEFAULT, CARD_KEY, entry, folder)
