"""The one attention core every model in this project uses.

Attention is three steps: score every key against the query, turn the scores into weights with a
softmax (after masking), and take the weighted sum of the values. Everything a page shows about
attention — raw scores, the 1/sqrt(d_k) scaling, the mask as applied, the softmax weights, the
output — comes out of `attend` below as a frozen `AttentionTrace`, *returned* to the caller.

Nothing per call is ever stored on a module, in a hook or in a global: Streamlit shares one cached
model between all browser sessions and threads, so a trace kept on `self` would be overwritten by
whichever session ran last.

RoPE (`models.positions.rotary`), grouped-query attention (`MultiHeadAttention(n_kv_heads=…)`) and a
KV cache (`models.kv_cache`, the caller's value) are the core's too, each chosen per call.

Mask convention (same as `torch.nn.functional.scaled_dot_product_attention` with a boolean mask):
``True`` means "this query may attend to this key"; ``False`` positions get ``-inf`` before the
softmax and therefore exactly 0 weight. A query row with no allowed key gets all-zero weights and a
zero output (a plain softmax would give NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.kv_cache import LayerCache
from models.positions import RotaryTrace, Rotation, rotate

Scoring = Literal["additive", "dot", "general", "scaled_dot"]
# What a returned trace keeps: everything, or only the softmax weights (one (Tq, Tk) tensor per head
# instead of four: what the views draw, at the memory and speed of a reference eager forward).
Capture = Literal["full", "weights"]
SCORINGS: tuple[str, ...] = ("additive", "dot", "general", "scaled_dot")


@dataclass(frozen=True)
class AttentionTrace:
    """Every intermediate of one attention call. Shapes: (B, [h,] Tq, Tk) for score-like fields.

    ``query``/``key``/``value`` are the tensors as scored (after any per-head split);
    ``masked_scores`` is ``scaled_scores`` with ``-inf`` where ``mask`` is False: exactly what
    went into the softmax. A ``capture="weights"`` trace keeps no scores (those fields are None);
    its weights are computed in the same order, so they equal a full trace's bit for bit.
    """

    query: Tensor  # (B, [h,] Tq, d_q)
    key: Tensor  # (B, [h,] Tk, d_k)
    value: Tensor  # (B, [h,] Tk, d_v)
    raw_scores: Tensor | None  # (B, [h,] Tq, Tk)  e = score(q, k)
    scale: float  # 1/sqrt(d_k) for scaled dot, else 1.0
    temperature: float  # logits are divided by this before the softmax
    scaled_scores: Tensor | None  # (B, [h,] Tq, Tk)  e * scale / temperature
    mask: Tensor | None  # bool, broadcastable to scores; True = may attend
    masked_scores: Tensor | None  # (B, [h,] Tq, Tk)  -inf where masked
    weights: Tensor  # (B, [h,] Tq, Tk)  softmax over the last axis
    output: Tensor  # (B, [h,] Tq, d_v)  weights @ value


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


def attend(
    *,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    raw_scores: Tensor,
    scale: float = 1.0,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    return_trace: bool = False,
    capture: Capture = "full",
    kv_groups: int = 1,
) -> tuple[Tensor, AttentionTrace | None]:
    """Scores → (scale, temperature) → mask → softmax → weighted sum of values.

    ``raw_scores`` (…, Tq, Tk) come from a scoring function; ``value`` is (…, Tk, d_v). With
    ``return_trace`` and ``capture="weights"`` they are overwritten (pass a temporary).
    ``kv_groups`` > 1 is grouped-query attention: scores (B, h, Tq, Tk) against values
    (B, h / kv_groups, Tk, d_v), query head i reading value head i // kv_groups.
    Returns ``(output (…, Tq, d_v), trace or None)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use e.g. 1.0.")
    check_mask(mask, raw_scores)
    # A weights-only trace keeps no scores, so steps 1–2 may overwrite the scores' memory (the
    # caller's temporary) instead of allocating two more (Tq, Tk) tensors per head: same arithmetic,
    # same weights, a third of the peak memory.
    in_place = return_trace and capture == "weights"
    # 1) Scale the logits: 1/sqrt(d_k) keeps dot products at unit variance; temperature on top.
    factor = scale / temperature
    scaled = raw_scores.mul_(factor) if in_place else raw_scores * factor
    # 2) Apply the mask: -inf where a query may not look, so the softmax gives exactly 0 there.
    masked = scaled
    if mask is not None:
        masked = (
            scaled.masked_fill_(~mask, float("-inf"))
            if in_place
            else scaled.masked_fill(~mask, float("-inf"))
        )
    # 3) Softmax over the keys. A row with every key masked is all -inf → NaN; make it 0.
    weights = torch.softmax(masked, dim=-1)
    if mask is not None:
        weights = torch.nan_to_num(weights, nan=0.0)
    # 4) Weighted sum of the values (each group of query heads over its one value head: no copies).
    if kv_groups == 1:
        output = weights @ value  # (…, Tq, Tk) @ (…, Tk, d_v) → (…, Tq, d_v)
    else:
        b, h, tq, tk = weights.shape
        grouped = weights.reshape(b, h // kv_groups, kv_groups * tq, tk)  # (B, h_kv, g·Tq, Tk)
        output = (grouped @ value).view(b, h, tq, value.shape[-1])  # (B, h_kv, g·Tq, d_v) → (B, h, Tq, d_v)
    if not return_trace:
        return output, None
    full = capture == "full"
    trace = AttentionTrace(
        query=query, key=key, value=value, raw_scores=raw_scores if full else None, scale=scale,
        temperature=temperature, scaled_scores=scaled if full else None, mask=mask,
        masked_scores=masked if full else None, weights=weights, output=output,
    )  # fmt: skip
    return output, trace


class Attention(nn.Module):
    """Single-head attention with a choice of scoring function (the seq2seq and captioning kind).

    additive   (Bahdanau): e = vᵀ tanh(W_q q + W_k k)
    dot        (Luong):    e = q · k                (needs d_q == d_k)
    general    (Luong):    e = qᵀ W k
    scaled_dot (Vaswani):  e = q · k, then ÷ sqrt(d_k)  (needs d_q == d_k)
    """

    def __init__(self, scoring: Scoring, *, query_dim: int, key_dim: int, attn_dim: int = 64):
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORINGS}.")
        if scoring in ("dot", "scaled_dot") and query_dim != key_dim:
            raise ValueError(
                f"{scoring} scoring needs query_dim == key_dim (got {query_dim} and {key_dim}); "
                "use 'general' or 'additive', or project one side first."
            )
        self.scoring = scoring
        self.key_dim = key_dim
        if scoring == "additive":
            self.w_q = nn.Linear(query_dim, attn_dim, bias=False)
            self.w_k = nn.Linear(key_dim, attn_dim, bias=True)
            self.v = nn.Linear(attn_dim, 1, bias=False)
        elif scoring == "general":
            self.w = nn.Linear(key_dim, query_dim, bias=False)

    def score(self, *, query: Tensor, key: Tensor) -> Tensor:
        """Raw alignment scores e: query (B, Tq, d_q), key (B, Tk, d_k) → (B, Tq, Tk)."""
        if self.scoring == "additive":
            q = self.w_q(query).unsqueeze(2)  # (B, Tq, 1, A)
            k = self.w_k(key).unsqueeze(1)  # (B, 1, Tk, A)
            return self.v(torch.tanh(q + k)).squeeze(-1)  # (B, Tq, Tk, 1) → (B, Tq, Tk)
        if self.scoring == "general":
            return query @ self.w(key).transpose(-1, -2)  # (B, Tq, d_q) @ (B, d_q, Tk)
        return query @ key.transpose(-1, -2)  # (B, Tq, d) @ (B, d, Tk) → (B, Tq, Tk)

    def forward(
        self,
        *,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        temperature: float = 1.0,
        return_trace: bool = False,
    ) -> tuple[Tensor, AttentionTrace | None]:
        """query (B, Tq, d_q), key (B, Tk, d_k), value (B, Tk, d_v), mask (B, Tq|1, Tk) bool."""
        scale = 1.0 / math.sqrt(self.key_dim) if self.scoring == "scaled_dot" else 1.0
        raw = self.score(query=query, key=key)
        return attend(
            query=query,
            key=key,
            value=value,
            raw_scores=raw,
            scale=scale,
            mask=mask,
            temperature=temperature,
            return_trace=return_trace,
        )


@dataclass(frozen=True)
class MultiHeadTrace:
    """One multi-head call: its inputs, every head's `AttentionTrace`, the concat and W_O output. With
    grouped-query attention ``heads.key``/``.value`` are per K/V head (B, h_kv, Tk, d_head), query head i
    reading ``kv_heads[i]``. Head i adds ``concat[..., head_slice(i)] @ W_O[:, head_slice(i)]ᵀ``."""

    x_query: Tensor  # (B, Tq, d_model) what the queries were projected from
    x_key: Tensor  # (B, Tk, d_model) what the keys and values were projected from (new rows only)
    heads: AttentionTrace  # (B, h, …) per head; heads.output is each head's context
    head_mask: Tensor | None  # (h,) multiplier per head (0 = ablated), or None
    concat: Tensor  # (B, Tq, d_model) heads side by side, after the head mask
    output: Tensor  # (B, Tq, d_model) concat @ W_Oᵀ + b_O
    kv_heads: tuple[int, ...] = ()  # query head → the K/V head it reads
    rotary: RotaryTrace | None = None  # q and k before RoPE, when the call rotated them


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention: project, split into h heads, attend, concat, W_O.

    Same parameter layout as the math: W_Q, W_O ``d_model × d_model``, W_K, W_V ``(h_kv · d_head) × d_model``:
    with ``n_kv_heads`` < ``n_heads`` (grouped-query attention) a K/V head serves consecutive query heads.
    With no trace and no intervention the fused kernel (``F.scaled_dot_product_attention``)
    runs; otherwise the explicit path through `attend` runs, so every intermediate in the trace
    is the one that produced the output. Interventions are per call (arguments), never state.
    """

    def __init__(self, d_model: int, n_heads: int, *, n_kv_heads: int | None = None, bias: bool = True):
        super().__init__()
        if n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by the number of heads ({n_heads}); "
                f"try n_heads in {[h for h in range(1, d_model + 1) if d_model % h == 0][:8]}."
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads}).")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.n_kv_heads, self.groups = n_kv_heads, n_heads // n_kv_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.w_v = nn.Linear(d_model, n_kv_heads * self.d_head, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    @property
    def kv_heads(self) -> tuple[int, ...]:  # query head i → the K/V head it reads
        return tuple(i // self.groups for i in range(self.n_heads))

    def head_slice(self, head: int) -> slice:
        """The output rows of W_Q (W_K, W_V for a K/V head) and input columns of W_O that belong to
        ``head``: the layout `_split` and the concat assume."""
        return slice(head * self.d_head, (head + 1) * self.d_head)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, d // self.d_head, self.d_head).transpose(1, 2)  # (B, h or h_kv, T, d_head)

    def forward(
        self, *, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
        rotary: Rotation | None = None, cache: LayerCache | None = None,
        temperature: float = 1.0, scaled: bool = True, project_qk: bool = True,
        head_mask: Tensor | None = None, head_values: tuple[Tensor, Tensor] | None = None,
        return_trace: bool = False, capture: Capture = "full",
    ) -> tuple[Tensor, MultiHeadTrace | None]:  # fmt: skip
        """query (B, Tq, d_model), key/value (B, Tk, d_model), mask broadcastable to
        (B, h, Tq, Tk), e.g. (B, 1, 1, Tk) for padding or (Tq, Tk) for causal.
        ``rotary`` (the new rows' angles, `models.positions.rotary`) rotates q and k (RoPE); ``cache``
        appends this call's keys and values to a `KVCache` and attends over all it holds.
        ``scaled=False`` drops the 1/sqrt(d_k); ``project_qk=False`` skips W_Q and W_K (head i
        scores the i-th slice of the raw rows: Q = K = x, the "no projections" intervention);
        ``head_mask`` (h,) multiplies each head's context before the concat (0 ablates a head);
        ``head_values`` (select (B, h, Tq) bool, values broadcastable to (h, Tq, d_head)) writes
        those values over the selected heads' contexts (activation patching, `models.patching`);
        ``capture`` is what a trace keeps.

        Returns ``(output (B, Tq, d_model), trace or None)``.
        """
        b, tq, _ = query.shape
        if head_mask is not None and head_mask.shape != (self.n_heads,):
            raise ValueError(f"head_mask must have shape ({self.n_heads},), got {tuple(head_mask.shape)}.")
        # Query heads per K/V head: values always; keys unless W_K is skipped (one raw slice per query head).
        groups, key_groups = self.groups, self.groups if project_qk else 1
        if cache is not None and key_groups != groups:
            raise ValueError("projections off (Q = K = x) cannot use a KV cache; run the whole text at once.")
        # 1) Project to queries, keys, values and split into heads.
        q = self._split(self.w_q(query) if project_qk else query)  # (B, h, Tq, d_head)
        k = self._split(self.w_k(key) if project_qk else key)  # (B, h_kv, Tk, d_head)
        v = self._split(self.w_v(value))  # (B, h_kv, Tk, d_head)
        # 2) Rotate q and k by their positions (RoPE), then add the new keys and values to the cache.
        q_before, k_before = q, k
        if rotary is not None:
            q, k = rotate(q, rotary), rotate(k, rotary)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, h_kv, cached + Tk, d_head)
        # 3) Scaled dot-product attention per head; each group of query heads scores its K/V head.
        if not return_trace and temperature == 1.0 and scaled and key_groups == groups:
            if mask is not None:
                check_mask(mask, torch.empty(b, self.n_heads, tq, k.shape[-2], device="meta"))
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=groups > 1)
            if mask is not None:  # fully masked rows: fused kernel gives NaN, we give 0
                heads = torch.nan_to_num(heads, nan=0.0)
            trace = None
        else:
            heads, trace = attend(
                query=q, key=k, value=v, raw_scores=grouped_scores(q, k, key_groups),
                scale=1.0 / math.sqrt(self.d_head) if scaled else 1.0, mask=mask, temperature=temperature,
                return_trace=return_trace, capture=capture, kv_groups=groups,
            )  # fmt: skip
        # 4) Switch heads off (ablation) or write patched contexts, concatenate them and mix with W_O.
        if head_mask is not None:
            heads = heads * head_mask.view(1, -1, 1, 1).to(heads.dtype)  # (B, h, Tq, d_head)
        if head_values is not None:
            select, values = head_values  # (B, h, Tq), (h, Tq or 1, d_head)
            heads = torch.where(select[..., None], values.to(heads.dtype), heads)  # (B, h, Tq, d_head)
        concat = heads.transpose(1, 2).reshape(b, tq, self.d_model)  # (B, Tq, h·d_head)
        output = self.w_o(concat)
        if not return_trace:
            return output, None
        rotated = rotary and RotaryTrace(rotary.positions, q_before, k_before, rotary.cos, rotary.sin)
        return output, MultiHeadTrace(
            x_query=query, x_key=key, heads=trace, head_mask=head_mask, concat=concat, output=output,
            kv_heads=self.kv_heads, rotary=rotated,
        )  # fmt: skip


def grouped_scores(query: Tensor, key: Tensor, groups: int) -> Tensor:
    """q·k, (B, h, Tq, d) against (B, h / groups, Tk, d) → (B, h, Tq, Tk): query head i against key head
    i // groups, the keys read in place (no copy per query head)."""
    if groups == 1:
        return query @ key.transpose(-1, -2)  # (B, h, Tq, d_head) @ (B, h, d_head, Tk)
    b, h, tq, d = query.shape
    stacked = query.reshape(b, h // groups, groups * tq, d)  # (B, h_kv, g·Tq, d): a group's queries
    scores = stacked @ key.transpose(-1, -2)  # (B, h_kv, g·Tq, Tk)
    return scores.view(b, h, tq, key.shape[-2])  # (B, h, Tq, Tk)
