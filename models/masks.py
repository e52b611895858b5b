"""Attention masks, the core's: which keys each query may attend to.

Convention (as `torch.nn.functional.scaled_dot_product_attention` with a boolean mask): ``True`` means
"this query may attend to this key". Queries are the last ``Tq`` of the ``Tk`` positions (a KV cache's
new rows, or the whole text), so query row t sits at position ``Tk − Tq + t``.

A sliding window (Mistral, Gemma 2's local layers, Qwen's upper layers) is one more band of the mask:
a query at position p sees keys j with p − j < window (itself and the window − 1 before it), exactly
Hugging Face's ``sliding_window_overlay`` (``kv_idx > q_idx − sliding_window``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def keys_kept(
    batch: int,
    n_keys: int,
    *,
    hidden: Sequence[int] = (),
    lengths: Tensor | None = None,
    device=None,
) -> Tensor:
    """(B, Tk) bool, True on keys a query may attend to: inside each row's length (when
    ``lengths`` is given) and not among the ``hidden`` positions (out-of-range ones ignored)."""
    keep = torch.ones(batch, n_keys, dtype=torch.bool, device=device)
    if lengths is not None:
        keep &= torch.arange(n_keys, device=device)[None] < lengths.to(device)[:, None]
    keep[:, [j for j in hidden if 0 <= j < n_keys]] = False
    return keep


def check_mask(mask: Tensor | None, scores: Tensor) -> None:
    """Raise a ValueError that says how to fix a mask that cannot apply to ``scores``."""
    if mask is None:
        return
    if mask.dtype != torch.bool:
        raise ValueError(
            f"attention mask must be bool (True = may attend), got {mask.dtype}; "
            "convert it with `mask.bool()` or build it with a comparison."
        )
    try:
        torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError as err:
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not broadcast to scores "
            f"{tuple(scores.shape)}; expected (B, [h,] Tq, Tk) or a broadcastable shape."
        ) from err


def window_band(t_query: int, t_key: int, window: int, device=None) -> Tensor | None:
    """(Tq, Tk) bool: True where the key is fewer than ``window`` positions behind the query (keys ahead
    are left to the causal mask). None when no key can fall outside the window."""
    if t_key <= window:
        return None
    rows = torch.arange(t_key - t_query, t_key, device=device)[:, None]  # (Tq, 1) query positions
    return rows - torch.arange(t_key, device=device)[None] < window  # (Tq, Tk)


def decoder_mask(t_new: int, start: int, *, causal: bool = True, hidden: Sequence[int] = (),
                 window: int | None = None, device=None) -> Tensor | None:  # fmt: skip
    """(1, 1, T_new, start + T_new) bool for a decoder's new rows (positions start … start + T_new − 1)
    over every key so far: not ahead of the row (unless ``causal`` is off), not ``hidden``, within the
    ``window``. None when every key is visible (the fused kernel then needs no mask)."""
    t_all = start + t_new
    band = None if window is None else window_band(t_new, t_all, window, device)
    if not hidden and (not causal or t_new == 1) and band is None:
        return None
    keep = torch.ones(t_new, t_all, dtype=torch.bool, device=device)
    if causal:
        keep = torch.tril(keep, diagonal=start)  # row t is position start + t: sees keys 0 … start + t
    if band is not None:
        keep &= band
    return keep & keys_kept(1, t_all, hidden=hidden, device=device)[:, None, None, :]
