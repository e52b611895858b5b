"""What the transformer lab's lessons compute, as numpy for `families.transformer.lessons` to draw: the
sinusoid table the model adds to its embeddings, and the playground's multi-head attention on random
weights (the core's `MultiHeadAttention`, at the user's sizes)."""

from __future__ import annotations

import numpy as np
import torch

from models.attention import MultiHeadAttention
from models.positions import sinusoids

PLAYGROUND_SEED = 0  # the playground's weights and input: the same sizes always draw the same maps
PLAYGROUND_SCALE = 0.5  # the weights' standard deviation


def sinusoid_table(length: int, d_model: int) -> np.ndarray:
    """(length, d_model) float32: PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…)."""
    return sinusoids(length, d_model).numpy()


def random_attention(d_model: int, n_heads: int, n_tokens: int) -> np.ndarray:
    """(1, h, n, n) float32: the attention weights of a `MultiHeadAttention(d_model, n_heads)` whose
    parameters are drawn from N(0, 0.5²), on an input X (1, n, d_model) from N(0, 1), self-attention
    (Q = K = V = X), all drawn by a generator of its own (no global seeding per request). Raises the
    core's ValueError when ``d_model`` is not divisible by ``n_heads``."""
    mha = MultiHeadAttention(d_model, n_heads)
    generator = torch.Generator().manual_seed(PLAYGROUND_SEED)
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * PLAYGROUND_SCALE)
        x = torch.randn(1, n_tokens, d_model, generator=generator)
        _, trace = mha(query=x, key=x, value=x, return_trace=True)
    return trace.heads.weights.numpy()
