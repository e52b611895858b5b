"""Greedy and beam search, shared by every recurrent decoder (seq2seq, captioner).

A decoder supplies ``step(y_prev (n,), state) -> (logits (n, V), new_state, record)``, where
``state`` and ``record`` are tensors, tuples or dataclasses of tensors with the n hypotheses on
axis 0. Each hypothesis keeps its own record per step — its own attention — for display.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from tasks.common import BOS_ID, EOS_ID

Step = Callable[[Tensor, Any], tuple[Tensor, Any, Any]]  # (y_prev (n,), state) → (logits, state, record)


def take(obj: Any, rows: int | list[int]) -> Any:
    """Rows of every tensor inside ``obj`` (an int keeps the axis: rows i:i+1)."""
    if isinstance(obj, Tensor):
        if obj.dim() == 0:
            return obj
        return obj[rows : rows + 1] if isinstance(rows, int) else obj[rows]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(
            obj, **{f.name: take(getattr(obj, f.name), rows) for f in dataclasses.fields(obj)}
        )
    if isinstance(obj, tuple):
        return tuple(take(x, rows) for x in obj)
    return obj


def greedy_search(step: Step, state: Any, *, batch: int, max_len: int, device: torch.device,
                  bos: int = BOS_ID, eos: int = EOS_ID) -> tuple[Tensor, list[Any]]:  # fmt: skip
    """Batched greedy decoding with the same ``step`` as `beam_search`. Returns ids (B, T) — after
    a row's ``eos``, ``eos`` repeated — and every step's record; stops when all rows are done."""
    y = torch.full((batch,), bos, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, records = [], []
    for _ in range(max_len):
        logits, state, record = step(y, state)
        y = torch.where(done, eos, logits.argmax(-1))
        tokens.append(y)
        records.append(record)
        done |= y == eos
        if done.all():
            break
    return torch.stack(tokens, 1), records


def beam_search(step: Step, state: Any, *, k: int, max_len: int, device: torch.device, bos: int = BOS_ID,
                eos: int = EOS_ID) -> list[tuple[list[int], float, list[Any]]]:  # fmt: skip
    """The ``k`` best hypotheses as (tokens, log p, per-step records), ranked by log p / length.

    Hypotheses that reach ``eos`` are set aside; the search stops when ``k`` have, or at
    ``max_len`` (then unfinished ones fill the list).
    """
    if k < 1:
        raise ValueError(f"beam size k must be ≥ 1, got {k}.")
    alive: list[tuple[list[int], float, list[Any]]] = [([], 0.0, [])]
    finished: list[tuple[list[int], float, list[Any]]] = []
    for _ in range(max_len):
        y = torch.tensor([toks[-1] if toks else bos for toks, _, _ in alive], device=device)
        logits, new_state, record = step(y, state)
        logp = torch.log_softmax(logits, -1)  # (n, V)
        total = torch.tensor([lp for _, lp, _ in alive], device=device)[:, None] + logp
        best = total.flatten().topk(min(k, total.numel())).indices
        new_alive, rows = [], []
        for flat in best.tolist():
            h, tok = divmod(flat, logp.shape[1])
            toks, _, hist = alive[h]
            entry = (toks + [tok], float(total[h, tok]), hist + [take(record, h)])
            if tok == eos:
                finished.append(entry)
            else:
                new_alive.append(entry)
                rows.append(h)
        if len(finished) >= k or not new_alive:
            break
        alive, state = new_alive, take(new_state, rows)
    finished += alive[: max(0, k - len(finished))]
    finished.sort(key=lambda e: e[1] / len(e[0]), reverse=True)
    return finished[:k]
