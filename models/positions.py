"""Sinusoidal positions (Vaswani et al. 2017), shared by the encoder–decoder transformer (fixed) and
the GPT (the start of its learned positions), and drawn by the positional-encoding lesson."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoids(length: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…). Shape (length, d_model)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe
