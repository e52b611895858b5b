"""Positions. Sinusoids (Vaswani et al. 2017), shared by the encoder–decoder transformer (fixed) and
the GPT (the start of its learned positions), and drawn by the positional-encoding lesson; rotary
position embeddings (RoPE, Su et al. 2021), which the attention core applies to q and k per call."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Rotation:
    """The RoPE angles of some positions: channel pair (i, i + d_rot/2) of the row at position p is
    turned by p · base^(−2i/d_rot) (the half-split layout of Hugging Face's Llama)."""

    positions: Tensor  # (T,) long
    cos: Tensor  # (T, d_rot) cos of each channel's angle (the d_rot/2 angles, twice)
    sin: Tensor  # (T, d_rot)


@dataclass(frozen=True)
class RopeScaling:
    """How a long-context model stretches RoPE's frequencies (Hugging Face's ``rope_scaling``):
    ``linear`` divides every frequency by ``factor``; ``llama3`` (Llama 3.1+) divides the low ones (wavelength
    above original_max_len / low_freq_factor) by ``factor``, keeps the high ones (below original_max_len /
    high_freq_factor) and blends in between; ``factors`` divides frequency i by ``factors[i]`` (what
    llama.cpp stores for Llama 3 as the ``rope_freqs`` tensor)."""

    kind: str  # "linear", "llama3" or "factors"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192
    factors: tuple[float, ...] = ()

    def apply(self, inv_freq: Tensor) -> Tensor:
        """(dim/2,) frequencies → the scaled ones, op for op as transformers' ``modeling_rope_utils``."""
        if self.kind == "linear":
            return inv_freq / self.factor
        if self.kind == "factors":
            return inv_freq / torch.tensor(self.factors, dtype=inv_freq.dtype, device=inv_freq.device)
        low_wavelen = self.original_max_len / self.low_freq_factor
        high_wavelen = self.original_max_len / self.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / self.factor, inv_freq)  # low ones ÷ factor
        low, high = self.low_freq_factor, self.high_freq_factor
        smooth = (self.original_max_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / self.factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled)


def frequencies(*, dim: int, base: float, scaling: RopeScaling | None = None, device=None) -> Tensor:
    """(dim/2,) the angle per position of each channel pair: base^(−2i/dim), stretched by ``scaling``."""
    channel = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float()  # (dim/2,) 2i
    inv_freq = 1.0 / (base ** (channel / dim))  # (dim/2,) base^(−2i/dim)
    return inv_freq if scaling is None else scaling.apply(inv_freq)


def rotary(positions: Tensor, *, dim: int, base: float, scaling: RopeScaling | None = None) -> Rotation:
    """The angles of ``positions`` (T,) for ``dim`` rotated channels, frequencies stretched by ``scaling``."""
    inv_freq = frequencies(dim=dim, base=base, scaling=scaling, device=positions.device)  # (dim/2,)
    angles = positions.float()[:, None] * inv_freq[None]  # (T, 1) · (1, dim/2) → (T, dim/2)
    both = torch.cat([angles, angles], -1)  # (T, dim): the same angle for both channels of a pair
    return Rotation(positions, both.cos(), both.sin())


def rotate(x: Tensor, rot: Rotation) -> Tensor:
    """(…, T, d) rows rotated by their positions' angles: x·cos + rotate_half(x)·sin on the first d_rot
    channels (the rest, if any, pass through)."""
    d_rot = rot.cos.shape[-1]
    part, rest = x[..., :d_rot], x[..., d_rot:]
    half = d_rot // 2
    turned = torch.cat([-part[..., half:], part[..., :half]], -1)  # rotate_half: (x1, x2) → (−x2, x1)
    out = part * rot.cos + turned * rot.sin  # (…, T, d_rot)
    return out if rest.shape[-1] == 0 else torch.cat([out, rest], -1)


@dataclass(frozen=True)
class RotaryTrace:
    """RoPE as one call applied it: q and the new k before the rotation, and the angles' tables.
    The rotated ones are the trace's ``heads.query`` and the last ``Tq`` rows of ``heads.key``."""

    positions: Tensor  # (Tq,) the position of each new row (a cache's length onward)
    query: Tensor  # (B, h, Tq, d_head) before the rotation
    key: Tensor  # (B, h_kv, Tq, d_head) the new keys before the rotation
    cos: Tensor  # (Tq, d_rot) cos of each position's angle per channel (pair i: channels i, i + d_rot/2)
    sin: Tensor  # (Tq, d_rot)
