"""The attention core's KV cache: generation reads each position's key and value once, not again per token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class KVCache:
    """The keys (rotated, when the model uses RoPE) and values of every position seen so far, per
    layer: what lets generation run one new token at a time instead of the whole text again.

    A value of the caller's — one per generation — passed to each forward call, which appends the new
    positions; never kept on a module. Buffers are allocated once for ``capacity`` positions.
    """

    def __init__(self, *, layers: int, batch: int, kv_heads: int, d_head: int, capacity: int, device=None,
                 dtype: torch.dtype = torch.float32):  # fmt: skip
        shape = (layers, batch, kv_heads, capacity, d_head)
        self.keys = torch.empty(shape, device=device, dtype=dtype)  # (L, B, h_kv, capacity, d_head)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.lengths = [0] * layers  # positions stored per layer
        self.capacity = capacity

    @property
    def length(self) -> int:
        """Positions every layer holds: where the next call's positions start."""
        return self.lengths[-1]

    def layer(self, index: int) -> LayerCache:
        return LayerCache(self, index)


@dataclass(frozen=True)
class LayerCache:
    """One layer's view of a `KVCache`, passed to that layer's attention call."""

    cache: KVCache
    index: int

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' key and value (B, h_kv, T, d_head); return all so far (B, h_kv, Tk, d)."""
        c, start = self.cache, self.cache.lengths[self.index]
        end = start + key.shape[-2]
        if start != c.length or end > c.capacity:
            raise ValueError(
                f"KV cache layer {self.index}: positions {start}…{end} do not follow the {c.length} stored "
                f"within its capacity of {c.capacity}; start a new cache with room for the whole generation."
            )
        c.keys[self.index, :, :, start:end] = key
        c.values[self.index, :, :, start:end] = value
        c.lengths[self.index] = end
        return c.keys[self.index, :, :, :end], c.values[self.index, :, :, :end]
