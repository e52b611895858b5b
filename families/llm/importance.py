"""Attention vs importance for SmolLM2, on one prompt (Abnar & Zuidema 2020).

At a chosen position t (default: the prompt's last), the quantity is log p of the token the model
predicts after it: its own top prediction there, or a given token (e.g. the prompt's actual next one).
The positions are the prompt's tokens 0…t — the first token is in (SmolLM2 reads no <s>: its first token
is a word, and the sink most heads attend to), the token at t itself too — and:

- **importance**: log p(target) − log p(target | token j replaced by a blank), the blank being the
  byte-level BPE's lone space "Ġ" (`BLANK`); the t + 1 ablated copies run as one batch;
- **raw L{l}**: layer l's attention from query t to key j (mean over heads, or ``raw L{l} H{h}``);
- **rollout L{l}**: row t of `analysis.stats.rollout` through layer l, at key j;
- **grad × input**: Σ_d (e_j − e_blank)·∂log p(target)/∂x_j, e the token embedding (SmolLM2 adds no
  position vector: RoPE turns q and k inside attention), the first-order estimate of the very ablation.

Cheap by construction: at most `MAX_TOKENS` tokens (t + 1 copies of t + 1 tokens: 4,096 token rows at 64);
a longer prompt is measured on its first `MAX_TOKENS` tokens, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from analysis import importance as imp
from analysis.protocol import ImportanceTab, Served, to_numpy
from analysis.stats import rollout
from families.llm import runner as llama

BLANK = imp.BLANK
MAX_TOKENS = 64  # tokens the ablations read: t + 1 copies of t + 1 tokens (≈ 30 s at 64 on 2 busy cores)
DEFINITION = {
    "importance": (
        "log p(target) − log p(target with token j replaced by the blank 'Ġ' (one space)), target = the "
        "model's top prediction after position t; positions 0…t (the first token in, t itself in)"
    ),
    "replacement": f"{BLANK!r}, one space (id 216 in SmolLM2's tokenizer)",
    "measures": {
        "raw L{l}": "attention of layer l from query t to key j, mean over heads",
        "rollout L{l}": "row t of the attention rollout (analysis.stats.rollout) through layer l, at key j",
        imp.GRADIENT_X_INPUT: "Σ_d (e_j − e_blank) ∂log p(target)/∂x_j, e the token embedding",
    },
}


def gradient(loaded: llama.Loaded, prefix: torch.Tensor, target: int) -> np.ndarray:
    """(T, d) ∂ log p(target after the last row)/∂x_j, x_j the token embedding entering layer 0: the
    model's own forward from a leaf of this call's (``resume=(0, leaf)``), so nothing is written on the
    shared model (its weights keep requires_grad False; the graph runs through them, not into them)."""
    model = loaded.model
    with torch.inference_mode(False), torch.enable_grad():
        leaf = model.tok_emb.weight[prefix[0]].clone()[None].requires_grad_(True)  # (1, T, d), ours alone
        out, _ = model(prefix, resume=(0, leaf), logits="last")
        objective = torch.log_softmax(out[0, -1].float(), -1)[target]
        (grad,) = torch.autograd.grad(objective, leaf)
    return to_numpy(grad[0])


def measure(loaded: llama.Loaded, ids: Sequence[int], position: int | None = None,
            target: int | None = None) -> imp.NextTokenImportance:  # fmt: skip
    """Importance by ablation and every attention measure at ``position`` (default the last) for
    ``target`` (default the model's top prediction there), on ``ids``."""
    model = loaded.model
    asked = len(ids) - 1 if position is None else position
    if not 0 <= asked < len(ids):
        raise ValueError(f"position {asked} is not in the prompt: pick one of 0…{len(ids) - 1}.")
    t = min(asked, MAX_TOKENS - 1)
    device = next(model.parameters()).device
    prefix = torch.tensor([list(ids[: t + 1])], device=device)  # (1, t + 1): later tokens do not matter
    blank = imp.blank_id(loaded.tokenizer)
    # 1) The unablated run: every layer's attention (≤ 270 maps of ≤ 64², 4.4 MB), and the target.
    with torch.inference_mode():
        logits, trace = model(prefix, return_trace=True, capture="weights", logits="last")
    weights = to_numpy(trace.weights[0])  # (L, h, t + 1, t + 1)
    target = int(logits[0, -1].argmax()) if target is None else int(target)
    # 2) The t + 1 ablated copies (token j → blank, j = 0…t) in one batch.
    batch = prefix.repeat(t + 1, 1)  # (t + 1, t + 1)
    batch[torch.arange(t + 1), torch.arange(t + 1)] = blank
    with torch.inference_mode():
        ablated, _ = model(batch, logits="last")  # (t + 1, 1, V)
        base = torch.log_softmax(logits[0, -1].float(), -1)[target]
        drop = base - torch.log_softmax(ablated[:, -1].float(), -1)[:, target]  # (t + 1,)
    no_op = imp.no_op_ablations(to_numpy(prefix[0]), to_numpy(batch))  # a blank replaced by a blank
    # 3) Gradient at the input, first order of the same ablation.
    embeddings = to_numpy(model.tok_emb.weight[prefix[0]])  # (t + 1, d)
    blank_embedding = to_numpy(model.tok_emb.weight[blank])  # (d,)
    grad = imp.gradient_x_input(gradient(loaded, prefix, target), embeddings, blank_embedding)
    return imp.NextTokenImportance(
        position=t,
        target=llama.label(loaded, target),
        target_id=target,
        positions=tuple(llama.label(loaded, i) for i in ids[: t + 1]),
        importance=imp.without_no_ops(to_numpy(drop), no_op),
        weights=weights[:, :, t, :].copy(),  # copies: a view would keep every (T, T) map in the cache
        rollout=rollout(weights)[:, t, :].copy(),
        grad_x_input=imp.without_no_ops(grad, no_op).astype(np.float32),
        asked=asked,
        tokens=len(ids),
    )


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _explain(loaded: llama.Loaded, inputs: tuple[tuple[int, ...]], result: imp.NextTokenImportance) -> str:
    t = result.position
    ranked = (f"Tokens 0…{t} are ranked, one batch of {t + 1} copies (the first token in: it is the sink "
              f"most heads look at; the token at {t} itself in); gradient × input on the token embeddings")
    return imp.next_token_explanation(result, imp.blank_id(loaded.tokenizer), ranked)


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
    without_card="SmolLM2's card has no held-out Spearman yet: the numbers above are this prompt's alone.",
)
