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
attention does not see that, ablation does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from analysis import importance as imp
from analysis.protocol import ImportanceTab, Served, to_numpy
from analysis.stats import rollout
from families.gpt.runner import label
from models.gpt import GPT
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


def measure(
    model: GPT,
    tokenizer: Tokenizer,
    ids: Sequence[int],
    position: int | None = None,
    target: int | None = None,
) -> imp.NextTokenImportance:
    """Importance by ablation and every attention measure at ``position`` (default the last) for
    ``target`` (default the model's top prediction there), on ``ids`` (<s> first)."""
    t = len(ids) - 1 if position is None else position
    if not 1 <= t < len(ids):
        raise ValueError(f"position {t} has no earlier token to ablate: pick one of 1…{len(ids) - 1}.")
    device = next(model.parameters()).device
    prefix = torch.tensor([list(ids[: t + 1])], device=device)  # (1, t + 1): later tokens do not matter
    blank = imp.blank_id(tokenizer)
    # 1) The unablated run: attention, and the target (the top prediction unless given).
    with torch.inference_mode():
        logits, trace = model(prefix, return_trace=True, capture="weights")
    weights = to_numpy(trace.weights[0])  # (L, h, t + 1, t + 1)
    target = int(logits[0, t].argmax()) if target is None else int(target)
    # 2) The t ablated copies (token j → blank, j = 1…t) in one batch.
    batch = prefix.repeat(t, 1)  # (t, t + 1)
    batch[torch.arange(t), torch.arange(1, t + 1)] = blank
    with torch.inference_mode():
        ablated, _ = model(batch)
        base = torch.log_softmax(logits[0, t].float(), -1)[target]
        drop = base - torch.log_softmax(ablated[:, t].float(), -1)[:, target]  # (t,)
    no_op = imp.no_op_ablations(to_numpy(prefix[0]), to_numpy(batch))  # (t,) a blank replaced by a blank
    # 3) Gradient at the input. x_j = e_j + pos_j, and row j of the position table is used at
    #    position j alone, so ∂f/∂(pos row j) = ∂f/∂x_j: the model's own forward, no copy of it.
    with torch.enable_grad():
        out, _ = model(prefix)
        objective = torch.log_softmax(out[0, t].float(), -1)[target]
        (gradient,) = torch.autograd.grad(objective, model.pos_emb.weight)  # (max_len, d)
    embeddings = to_numpy(model.tok_emb.weight[prefix[0, 1:]])  # (t, d)
    blank_embedding = to_numpy(model.tok_emb.weight[blank])  # (d,)
    grad = imp.gradient_x_input(to_numpy(gradient[1 : t + 1]), embeddings, blank_embedding)
    return imp.NextTokenImportance(
        position=t,
        target=label(tokenizer, target),
        target_id=target,
        positions=tuple(label(tokenizer, i) for i in ids[1 : t + 1]),
        importance=imp.without_no_ops(to_numpy(drop), no_op),
        weights=weights[:, :, t, 1:],
        rollout=rollout(weights)[:, t, 1:],
        grad_x_input=imp.without_no_ops(grad, no_op).astype(np.float32),
    )


def held_out(model: GPT, tokenizer: Tokenizer, windows: Sequence[stdlib.Window]) -> dict:
    """The card's entry: per measure the mean Spearman over held-out prompts, each <s> and the first
    `PROMPT` − 1 tokens of a test window, measured at its last position."""
    per_input = [[measure(model, tokenizer, w.ids[:PROMPT].tolist()).comparison()] for w in windows]
    split = (
        f"the first {len(windows)} test windows (tasks.stdlib.generate(n, TEST_SEED, 'test'): held-out "
        f"files), each cut to <s> and its first {PROMPT - 1} tokens, measured at the last position"
    )
    return imp.card_entry(per_input, split=split, definition=DEFINITION)


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _served_measure(loaded, ids: tuple[int, ...], position: int, target: int | None
                    ) -> imp.NextTokenImportance:  # fmt: skip
    model, _, tokenizer = loaded
    return measure(model, tokenizer, ids, position, target)


def _explain(loaded, inputs: tuple[tuple[int, ...]], result: imp.NextTokenImportance) -> str:
    ranked = f"Tokens 1…{result.position} are ranked (<s> left out, the token at {result.position} itself in)"
    return imp.next_token_explanation(result, imp.blank_id(loaded[2]), ranked)


SERVED = {"importance": Served(_served_measure, max_entries=64, spinner="Ablating each earlier token…")}
TAB = ImportanceTab(
    key="gpt",
    **imp.NEXT_TOKEN,
    explain=_explain,
)
