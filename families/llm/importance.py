"""Attention vs importance for the language-model page's model, on one prompt (Abnar & Zuidema 2020).

At a chosen position t (default: the prompt's last), the quantity is log p of the token the model
predicts after it: its own top prediction there, or a given token (e.g. the prompt's actual next one).
The positions are the prompt's tokens 0…t — the first token is in (SmolLM2 reads no <s>: its first token
is a word, and the sink most heads attend to; a model whose tokenizer writes <s> first has that ranked too),
the token at t itself too — and:

- **importance**: log p(target) − log p(target | token j replaced by a blank), the blank being the
  tokenizer's one-space token ("Ġ" in a byte-level BPE, "▁" in a SentencePiece one: `analysis.importance.
  blank_id`); the t + 1 ablated copies run as one batch;
- **raw L{l}**: layer l's attention from query t to key j (mean over heads, or ``raw L{l} H{h}``);
- **rollout L{l}**: row t of `analysis.stats.rollout` through layer l, at key j;
- **grad × input**: Σ_d (e_j − e_blank)·∂log p(target)/∂x_j, e the token embedding (a learned position
  vector, GPT-2's, is the same in both; RoPE adds none), the first-order estimate of the very ablation.

Cheap by construction: at most `MAX_TOKENS` tokens (t + 1 copies of t + 1 tokens: 4,096 token rows at 64);
a longer prompt is measured on its first `MAX_TOKENS` tokens, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis import importance as imp
from analysis import lm_importance
from analysis.family import ImportanceTab, Served
from analysis.lm import LM

MAX_TOKENS = 64  # tokens the ablations read: t + 1 copies of t + 1 tokens (≈ 30 s at 64 on 2 busy cores)
DEFINITION = {
    "importance": (
        "log p(target) − log p(target with token j replaced by the blank 'Ġ' (one space)), target = the "
        "model's top prediction after position t; positions 0…t (the first token in, t itself in)"
    ),
    "replacement": "the tokenizer's one-space token ('Ġ' byte-level, '▁' SentencePiece; id 216 in SmolLM2's)",
    "measures": {
        "raw L{l}": "attention of layer l from query t to key j, mean over heads",
        "rollout L{l}": "row t of the attention rollout (analysis.stats.rollout) through layer l, at key j",
        imp.GRADIENT_X_INPUT: "Σ_d (e_j − e_blank) ∂log p(target)/∂x_j, e the token embedding",
    },
}


def measure(loaded: LM, ids: Sequence[int], position: int | None = None,
            target: int | None = None) -> imp.NextTokenImportance:  # fmt: skip
    """`analysis.lm_importance.measure` on at most `MAX_TOKENS` tokens."""
    return lm_importance.measure(loaded, ids, position, target, max_tokens=MAX_TOKENS)


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _explain(loaded: LM, inputs: tuple[tuple[int, ...]], result: imp.NextTokenImportance) -> str:
    t = result.position
    ranked = (f"Tokens 0…{t} are ranked, one batch of {t + 1} copies (the first token in: it is the sink "
              f"most heads look at; the token at {t} itself in); gradient × input on the token embeddings")
    return imp.next_token_explanation(result, imp.blank_id(loaded.vocabulary.tokenizer), ranked)


def _warning(result: imp.NextTokenImportance) -> str | None:
    if result.asked == result.position:
        return None
    return (
        f"Ablation reads at most {MAX_TOKENS} tokens ({MAX_TOKENS} copies of {MAX_TOKENS} tokens a forward): "
        f"measured after position {result.position}, not {result.asked}, on the prompt's first "
        f"{MAX_TOKENS} of {result.tokens} tokens."
    )


SERVED = {"importance": Served(measure, max_entries=32, spinner="Ablating each earlier token…")}
TAB = ImportanceTab(
    key="llm",
    **imp.NEXT_TOKEN,
    explain=_explain,
    warning=_warning,
    without_card="The model's card has no held-out Spearman yet: the numbers above are this prompt's alone.",
)
