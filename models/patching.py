"""Activation patching, a value passed per call: which activations of a batched forward to overwrite,
and with what.

Each row of a batch is one copy of the same input. At each site a model names — the residual stream
into a layer (``resid_pre``), an attention layer's output (``attn_out``), an MLP's output
(``mlp_out``), one head's context before W_O (``head``), the encoder output a seq2seq decoder
attends over (``memory``, as layer 0) — the forward asks the `Patch` what to write
there, and writes the source's activations into the rows, layers, heads and positions the patch
selects. Nothing is stored on the model: the patch is an argument, like `Interventions`, so one cached
model serves every session.

Zero, mean and resampled ablations are patches too: their source is zeros, a mean over a stated
reference set, or another input's activations (`analysis.circuits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Site = Literal["resid_pre", "attn_out", "mlp_out", "head", "memory"]
SITES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "head", "memory")


@dataclass(frozen=True)
class Patch:
    """Write ``source`` where ``select`` is True, at one kind of site.

    Shapes (B rows, L layers, T positions, h heads, d residual width, d_head a head's width):
    - ``resid_pre`` / ``attn_out`` / ``mlp_out``: ``select`` (B, L, T), ``source`` (L, T, d);
    - ``memory``: the same with L = 1 and T the source positions;
    - ``head``: ``select`` (B, L, h, T), ``source`` (L, h, T, d_head) — T may be 1 (one value for
      every position: a mean ablation).
    """

    site: Site
    select: Tensor  # bool, see above
    source: Tensor  # the activations written, per layer

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown patch site {self.site!r}; use one of {SITES}.")
        want = 4 if self.site == "head" else 3
        if self.select.dim() != want or self.source.dim() != want or self.select.dtype != torch.bool:
            raise ValueError(
                f"a {self.site!r} patch needs a bool select of {want} dims and a source of {want} dims "
                f"(see Patch's docstring); got {tuple(self.select.shape)} {self.select.dtype} and "
                f"{tuple(self.source.shape)}."
            )

    def write(self, site: str, layer: int, x: Tensor) -> Tensor:
        """x (B, T, d) at ``site`` of ``layer``, with the selected positions overwritten."""
        if site != self.site or self.site == "head":
            return x
        where = self.select[:, layer, : x.shape[1]]  # (B, T)
        if not bool(where.any()):
            return x
        return torch.where(where[..., None], self.source[layer, : x.shape[1]].to(x.dtype), x)

    def heads(self, layer: int, t: int) -> tuple[Tensor, Tensor] | None:
        """For a ``head`` patch: (select (B, h, T) bool, values (h, T or 1, d_head)) at ``layer``, the
        arguments of `MultiHeadAttention`'s ``head_values``; None where nothing is patched."""
        if self.site != "head":
            return None
        where = self.select[:, layer, :, :t]  # (B, h, T)
        if not bool(where.any()):
            return None
        return where, self.source[layer, :, :t]
