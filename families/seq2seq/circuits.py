"""Causal alignment on the seq2seq models: which source annotations each output token needs, found by
activation patching, beside where attention looks.

A clean source and a corrupted one of the same length; the decoder is teacher-forced on the clean
source's greedy output in every run. Each copy of the corrupted run has one annotation h_i (the
encoder's output at source position i, what attention reads) written from the clean run; the metric
is log p(y_t) at every step t. So one batched forward gives a (steps × source positions) matrix to set
beside the alignment α. The fixed-vector model reads no annotation: patching them restores nothing,
since all of the source reaches its decoder through the final vector. Every number is the model's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from analysis.family import Served
from analysis.protocol import to_numpy
from models.patching import Patch
from models.seq2seq import Seq2Seq
from tasks.common import BOS_ID

MIN_GAP = 0.1  # nats: a step the corrupted source barely changes has no share to restore (shown blank)


@dataclass(frozen=True)
class CausalAlignment:
    """log p(y_t) per output step t, patched at each source position i, and its two ends."""

    values: np.ndarray  # (T, S) the corrupted source with annotation i from the clean run
    clean: np.ndarray  # (T,) on the clean source
    corrupt: np.ndarray  # (T,) on the corrupted source
    attention: np.ndarray | None  # (T, S) α on the clean source (None for the fixed-vector model)

    @property
    def restored(self) -> np.ndarray:
        """(T, S) (patched − corrupt) / (clean − corrupt); NaN on steps whose gap is under `MIN_GAP`."""
        gap = (self.clean - self.corrupt)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = (self.values - self.corrupt[:, None]) / gap
        return np.where(np.abs(gap) >= MIN_GAP, share, np.nan)


def causal_alignment(model: Seq2Seq, clean: Sequence[int], corrupt: Sequence[int],
                     output: Sequence[int]) -> CausalAlignment:  # fmt: skip
    """``clean`` and ``corrupt`` source ids (the same length), ``output`` the clean source's output ids
    (</s> included), which every run is teacher-forced on."""
    if len(clean) != len(corrupt):
        raise ValueError(
            f"the clean and corrupted sources have {len(clean)} and {len(corrupt)} tokens; patching swaps "
            "annotations position by position, so it needs the same count: change only the clue."
        )
    device = next(model.parameters()).device
    s = len(clean)
    tgt_in = torch.tensor([[BOS_ID, *output[:-1]]], device=device)  # (1, T)
    picked = torch.tensor(list(output), device=device)  # (T,)

    def log_p(src: Sequence[int], rows: int = 1, patch: Patch | None = None) -> torch.Tensor:
        ids = torch.tensor([list(src)], device=device).expand(rows, -1)
        logits, trace = model(ids, torch.full((rows,), s), tgt_in.expand(rows, -1), patch=patch,
                              return_trace=patch is None)  # fmt: skip
        logp = torch.log_softmax(logits, -1)  # (rows, T, V)
        return logp[:, torch.arange(len(output)), picked], trace  # (rows, T)

    with torch.inference_mode():
        memory = model.encode(
            torch.tensor([list(clean)], device=device), torch.tensor([s])
        ).memory  # (1, S, 2H)
        clean_logp, trace = log_p(clean)
        corrupt_logp, _ = log_p(corrupt)
        select = torch.eye(s, dtype=torch.bool, device=device)[:, None, :]  # (S copies, 1, S)
        patched, _ = log_p(corrupt, s, Patch("memory", select, memory))  # (S, T)
    weights = None if trace.weights is None else to_numpy(trace.weights[0])
    return CausalAlignment(to_numpy(patched.T), to_numpy(clean_logp[0]), to_numpy(corrupt_logp[0]), weights)


def _served(
    loaded, clean: tuple[int, ...], corrupt: tuple[int, ...], output: tuple[int, ...]
) -> CausalAlignment:
    return causal_alignment(loaded[0], clean, corrupt, output)


SERVED = {"causal_alignment": Served(_served, max_entries=64)}
