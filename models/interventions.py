"""What a caller may change in one forward pass of any model on the attention core, as a value.

One frozen `Interventions` per call: a shared cached model is never switched into a mode, so two
sessions intervening differently at once each get their own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

# What a returned trace keeps: everything, or only the softmax weights (one (Tq, Tk) tensor per head
# instead of four: what the views draw, at the memory and speed of a reference eager forward).
Capture = Literal["full", "weights"]


@dataclass(frozen=True)
class Interventions:
    """What to change in one forward pass, for any model on this core. The default changes
    nothing. Frozen and hashable: a cache key, passed per call — a shared cached model is never
    switched into a mode. Fields a model does not have (a causal mask in BERT) are ignored by it."""

    causal: bool = True  # decoder self-attention may not look ahead (teacher forcing only)
    padding: bool = True  # padding keys are hidden
    hidden_keys: tuple[int, ...] = ()  # source positions no query may attend to
    scaled: bool = True  # divide q·k by sqrt(d_k)
    temperature: float = 1.0  # divide the attention logits by this
    ablate: frozenset[tuple[str, int, int]] = frozenset()  # (block, layer, head) switched off
    positional: bool = True  # add the positional encoding (RoPE's: rotate q and k by their positions)
    unprojected: frozenset[tuple[str, int]] = frozenset()  # (block, layer) run with Q = K = x: no W_Q, W_K

    def head_mask(self, block: str, layer: int, n_heads: int, device=None) -> Tensor | None:
        """(h,) multiplier per head of one block and layer (0 = switched off); None if none is."""
        off = [h for b, i, h in self.ablate if b == block and i == layer]
        if not off:
            return None
        mask = torch.ones(n_heads, device=device)
        mask[off] = 0.0
        return mask

    def attention_kwargs(
        self, block: str, layer: int, n_heads: int, device=None, *, return_trace: bool = False,
        capture: Capture = "full",
    ) -> dict:  # fmt: skip
        """The per-call arguments of `MultiHeadAttention` for one block and layer."""
        return dict(
            temperature=self.temperature,
            scaled=self.scaled,
            project_qk=(block, layer) not in self.unprojected,
            head_mask=self.head_mask(block, layer, n_heads, device),
            return_trace=return_trace,
            capture=capture,
        )


NO_INTERVENTION = Interventions()
