"""Attention vs importance on any decoder (`analysis.lm.LM`), on one prompt (Abnar & Zuidema 2020).

At a chosen position t (default: the prompt's last), the quantity is log p of the token the model
predicts after it: its own top prediction there, or a given token (e.g. the prompt's actual next one).
The tokens ranked are the prompt's up to t — from the first, or from the one after <s> where the
vocabulary prepends one (<s> is in every prompt: ablating it says nothing about this one) — and:

- **importance**: log p(target) − log p(target | token j replaced by a blank), the blank being the
  byte-level BPE's lone space "Ġ" (`analysis.importance.blank_id`); the ablated copies run as one batch;
- **raw L{l}**: layer l's attention from query t to key j (mean over heads, or ``raw L{l} H{h}``);
- **rollout L{l}**: row t of `analysis.stats.rollout` through layer l, at key j;
- **grad × input**: Σ_d (e_j − e_blank)·∂log p(target)/∂x_j, e the token embedding and x_j the stream
  entering layer 0 (a position vector added there is the same in both), the first-order estimate of the
  very ablation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from analysis import importance as imp
from analysis.lm import LM
from analysis.protocol import to_numpy
from analysis.stats import rollout


def gradient(lm: LM, prefix: torch.Tensor, target: int) -> np.ndarray:
    """(T, d) ∂ log p(target after the last row)/∂x_j, x_j the stream entering layer 0 (the sum of the
    model's `embedding_terms`): the model's own forward from a leaf of this call's (``resume=(0, leaf)``),
    so nothing is written on the shared model (its weights keep requires_grad False; the graph runs
    through them, not into them)."""
    model = lm.model
    with torch.inference_mode(False), torch.enable_grad():
        stream = sum(model.embedding_terms(prefix).values())  # (1, T, d)
        leaf = stream.detach().clone().requires_grad_(True)  # ours alone
        out, _ = model(prefix, resume=(0, leaf), logits="last")
        objective = torch.log_softmax(out[0, -1].float(), -1)[target]
        (grad,) = torch.autograd.grad(objective, leaf)
    return to_numpy(grad[0])


def measure(lm: LM, ids: Sequence[int], position: int | None = None, target: int | None = None,
            *, max_tokens: int | None = None) -> imp.NextTokenImportance:  # fmt: skip
    """Importance by ablation and every attention measure at ``position`` (default the last) for
    ``target`` (default the model's top prediction there), on ``ids``. ``max_tokens`` caps the tokens the
    ablations read (t + 1 copies of t + 1 tokens): a later position is measured at the cap, said in the
    result's ``asked`` and ``tokens``."""
    first = 0 if lm.vocabulary.bos is None else 1  # <s> is not ranked
    asked = len(ids) - 1 if position is None else position
    if not first <= asked < len(ids):
        raise ValueError(f"position {asked} has no token to ablate: pick one of {first}…{len(ids) - 1}.")
    t = asked if max_tokens is None else min(asked, max_tokens - 1)
    model = lm.model
    device = next(model.parameters()).device
    prefix = torch.tensor([list(ids[: t + 1])], device=device)  # (1, t + 1): later tokens do not matter
    blank = imp.blank_id(lm.vocabulary.tokenizer)
    n = t + 1 - first  # tokens ranked
    # 1) The unablated run: every layer's attention, and the target (the top prediction unless given).
    with torch.inference_mode():
        logits, trace = model(prefix, return_trace=True, capture="weights", logits="last")
    weights = to_numpy(trace.weights[0])  # (L, h, t + 1, t + 1)
    target = int(logits[0, -1].argmax()) if target is None else int(target)
    # 2) The n ablated copies (token j → blank, j = first…t) in one batch.
    batch = prefix.repeat(n, 1)  # (n, t + 1)
    batch[torch.arange(n), torch.arange(first, t + 1)] = blank
    with torch.inference_mode():
        ablated, _ = model(batch, logits="last")  # (n, 1, V)
        base = torch.log_softmax(logits[0, -1].float(), -1)[target]
        drop = base - torch.log_softmax(ablated[:, -1].float(), -1)[:, target]  # (n,)
    no_op = imp.no_op_ablations(to_numpy(prefix[0]), to_numpy(batch))  # a blank replaced by a blank
    # 3) Gradient at the input, first order of the same ablation.
    embeddings = to_numpy(model.tok_emb.weight[prefix[0, first:]])  # (n, d)
    blank_embedding = to_numpy(model.tok_emb.weight[blank])  # (d,)
    grad = imp.gradient_x_input(gradient(lm, prefix, target)[first:], embeddings, blank_embedding)
    return imp.NextTokenImportance(
        position=t,
        target=lm.label(target),
        target_id=target,
        positions=tuple(lm.label(i) for i in ids[first : t + 1]),
        importance=imp.without_no_ops(to_numpy(drop), no_op),
        weights=weights[:, :, t, first:].copy(),  # copies: a view would keep every (T, T) map in the cache
        rollout=rollout(weights)[:, t, first:].copy(),
        grad_x_input=imp.without_no_ops(grad, no_op).astype(np.float32),
        asked=asked,
        tokens=len(ids),
    )
