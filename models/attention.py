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
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Interventions and masks live in their own modules; importable from here too, as the core's.
from models.interventions import NO_INTERVENTION, Capture, Interventions  # noqa: F401
from models.kv_cache import LayerCache
from models.masks import check_mask, keys_kept, window_band  # noqa: F401
from models.positions import RotaryTrace, Rotation, rotate

Scoring = Literal["additive", "dot", "general", "scaled_dot"]
SCORINGS: tuple[str, ...] = ("additive", "dot", "general", "scaled_dot")


@dataclass(frozen=True)
class AttentionTrace:
    """Every intermediate of one attention call. Shapes: (B, [h,] Tq, Tk) for score-like fields.

    ``query``/``key``/``value`` are the tensors as scored (after any per-head split);
    ``scaled_scores`` are the logits e · scale, soft-capped to ``softcap`` · tanh(· / ``softcap``) where
    the model caps them (Gemma 2), divided by the temperature; ``masked_scores`` is ``scaled_scores``
    with ``-inf`` where ``mask`` is False: exactly what went into the softmax. A ``capture="weights"``
    trace keeps no scores (those fields are None); its weights are computed in the same order, so they
    equal a full trace's bit for bit.
    """

    query: Tensor  # (B, [h,] Tq, d_q)
    key: Tensor  # (B, [h,] Tk, d_k)
    value: Tensor  # (B, [h,] Tk, d_v)
    raw_scores: Tensor | None  # (B, [h,] Tq, Tk)  e = score(q, k)
    scale: float  # 1/sqrt(d_k) for scaled dot, else 1.0
    temperature: float  # logits are divided by this before the softmax
    scaled_scores: Tensor | None  # (B, [h,] Tq, Tk)  cap(e * scale) / temperature
    mask: Tensor | None  # bool, broadcastable to scores; True = may attend
    masked_scores: Tensor | None  # (B, [h,] Tq, Tk)  -inf where masked
    weights: Tensor  # (B, [h,] Tq, Tk)  softmax over the last axis
    output: Tensor  # (B, [h,] Tq, d_v)  weights @ value
    softcap: float | None = None  # the logits' soft cap (tanh), or None


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
    softcap: float | None = None,
) -> tuple[Tensor, AttentionTrace | None]:
    """Scores → (scale, soft cap, temperature) → mask → softmax → weighted sum of values.

    ``raw_scores`` (…, Tq, Tk) come from a scoring function; ``value`` is (…, Tk, d_v). With
    ``return_trace`` and ``capture="weights"`` they are overwritten (pass a temporary).
    ``kv_groups`` > 1 is grouped-query attention: scores (B, h, Tq, Tk) against values
    (B, h / kv_groups, Tk, d_v), query head i reading value head i // kv_groups. ``softcap`` c bounds
    the scaled logits to (−c, c) as c · tanh(s / c) before the mask (Gemma 2's order, op for op).
    Returns ``(output (…, Tq, d_v), trace or None)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use e.g. 1.0.")
    check_mask(mask, raw_scores)
    # A weights-only trace keeps no scores, so steps 1–2 may overwrite the scores' memory (the
    # caller's temporary) instead of allocating two more (Tq, Tk) tensors per head: same arithmetic,
    # same weights, a third of the peak memory.
    in_place = return_trace and capture == "weights"
    # 1) Scale the logits: 1/sqrt(d_k) keeps dot products at unit variance; the model's soft cap (if any),
    #    then the temperature on top.
    if softcap is None:
        factor = scale / temperature
        scaled = raw_scores.mul_(factor) if in_place else raw_scores * factor
    else:
        scaled = raw_scores.mul_(scale) if in_place else raw_scores * scale
        scaled = torch.tanh(scaled / softcap) * softcap  # out of place: tanh's gradient reads its output
        if temperature != 1.0:
            scaled = scaled.div_(temperature)
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
    if mask is not None:  # in place unless autograd needs the softmax's output as it was
        weights = torch.nan_to_num(weights, nan=0.0) if weights.requires_grad else weights.nan_to_num_(0.0)
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
        masked_scores=masked if full else None, weights=weights, output=output, softcap=softcap,
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
    reading ``kv_heads[i]``. Head i adds ``concat[..., head_slice(i)] @ W_O[:, head_slice(i)]ᵀ``.
    ``heads.mask`` is the mask as applied, a sliding window included."""

    x_query: Tensor  # (B, Tq, d_model) what the queries were projected from
    x_key: Tensor  # (B, Tk, d_model) what the keys and values were projected from (new rows only)
    heads: AttentionTrace  # (B, h, …) per head; heads.output is each head's context
    head_mask: Tensor | None  # (h,) multiplier per head (0 = ablated), or None
    concat: Tensor  # (B, Tq, h·d_head) heads side by side, after the head mask
    output: Tensor  # (B, Tq, d_model) concat @ W_Oᵀ + b_O
    kv_heads: tuple[int, ...] = ()  # query head → the K/V head it reads
    rotary: RotaryTrace | None = None  # q and k before RoPE (after their norms), when the call rotated them


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention: project, split into h heads, attend, concat, W_O.

    Same parameter layout as the math: W_Q ``(h · d_head) × d_model``, W_K, W_V ``(h_kv · d_head) × d_model``,
    W_O ``d_model × (h · d_head)``; ``d_head`` is d_model / h unless given (Gemma 2, Qwen 3 set their own).
    With ``n_kv_heads`` < ``n_heads`` (grouped-query attention) a K/V head serves consecutive query heads.

    The options models differ by, each the model's (fixed at construction), never per request:
    ``bias`` on W_Q, W_K, W_V (and on W_O unless ``out_bias`` says otherwise: Qwen 2 has none there);
    ``qk_norm_eps``: an RMSNorm over each head's q and k before RoPE (Qwen 3); ``scale``: the logits'
    factor instead of 1/sqrt(d_head) (Gemma 2's query_pre_attn_scalar^−½); ``softcap``: logits bounded by
    c · tanh(s / c) (Gemma 2); ``window``: a query sees only the ``window`` latest keys, itself included
    (a sliding window: Mistral, Gemma 2's local layers), added to the mask the trace holds.

    With no trace and no intervention the fused kernel (``F.scaled_dot_product_attention``) runs where
    the options allow (a soft cap does not); otherwise the explicit path through `attend` runs, so every
    intermediate in the trace is the one that produced the output. Interventions are per call.
    """

    def __init__(self, d_model: int, n_heads: int, *, n_kv_heads: int | None = None, bias: bool = True,
                 d_head: int | None = None, out_bias: bool | None = None, qk_norm_eps: float | None = None,
                 scale: float | None = None, softcap: float | None = None,
                 window: int | None = None):  # fmt: skip
        super().__init__()
        if n_heads < 1 or (d_head is None and d_model % n_heads != 0):
            raise ValueError(
                f"d_model ({d_model}) must be divisible by the number of heads ({n_heads}); "
                f"try n_heads in {[h for h in range(1, d_model + 1) if d_model % h == 0][:8]}."
            )
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads}).")
        if (softcap is not None and softcap <= 0) or (window is not None and window < 1):
            raise ValueError(f"softcap must be > 0 and window ≥ 1 (or None); got {softcap} and {window}.")
        self.d_model, self.n_heads = d_model, n_heads
        self.d_head = d_model // n_heads if d_head is None else d_head
        self.n_kv_heads, self.groups = n_kv_heads, n_heads // n_kv_heads
        self.scale = 1.0 / math.sqrt(self.d_head) if scale is None else scale
        self.softcap, self.window = softcap, window
        width, kv_width = n_heads * self.d_head, n_kv_heads * self.d_head
        self.w_q = nn.Linear(d_model, width, bias=bias)
        self.w_k = nn.Linear(d_model, kv_width, bias=bias)
        self.w_v = nn.Linear(d_model, kv_width, bias=bias)
        self.w_o = nn.Linear(width, d_model, bias=bias if out_bias is None else out_bias)
        norms = qk_norm_eps is not None
        self.q_norm = nn.RMSNorm(self.d_head, eps=qk_norm_eps) if norms else None
        self.k_norm = nn.RMSNorm(self.d_head, eps=qk_norm_eps) if norms else None

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
        ``scaled=False`` drops the logits' scale; ``project_qk=False`` skips W_Q and W_K (and their norms:
        head i scores the i-th slice of the raw rows: Q = K = x, the "no projections" intervention);
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
        if not project_qk and self.n_heads * self.d_head != self.d_model:
            raise ValueError(
                f"projections off (Q = K = x) need h · d_head = d_model; this layer has "
                f"{self.n_heads} × {self.d_head} ≠ {self.d_model}: keep the projections on."
            )
        if cache is not None and key_groups != groups:
            raise ValueError("projections off (Q = K = x) cannot use a KV cache; run the whole text at once.")
        # 1) Project to queries, keys, values and split into heads; each head's q and k normed (Qwen 3).
        q = self._split(self.w_q(query) if project_qk else query)  # (B, h, Tq, d_head)
        k = self._split(self.w_k(key) if project_qk else key)  # (B, h_kv, Tk, d_head)
        v = self._split(self.w_v(value))  # (B, h_kv, Tk, d_head)
        if self.q_norm is not None and project_qk:
            q, k = self.q_norm(q), self.k_norm(k)  # RMSNorm over each head's d_head channels
        # 2) Rotate q and k by their positions (RoPE), then add the new keys and values to the cache.
        q_before, k_before = q, k
        if rotary is not None:
            q, k = rotate(q, rotary), rotate(k, rotary)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, h_kv, cached + Tk, d_head)
        # 3) The sliding window, if any, joins the mask: the new rows are the last Tq of the Tk positions.
        band = None if self.window is None else window_band(tq, k.shape[-2], self.window, q.device)
        if band is not None:
            mask = band if mask is None else mask & band  # (…, Tq, Tk)
        # 4) Scaled dot-product attention per head; each group of query heads scores its K/V head.
        scale = self.scale if scaled else 1.0
        fused = not return_trace and temperature == 1.0 and scaled and self.softcap is None
        if fused and key_groups == groups:
            if mask is not None:
                check_mask(mask, torch.empty(b, self.n_heads, tq, k.shape[-2], device="meta"))
            heads = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, enable_gqa=groups > 1, scale=self.scale
            )  # (B, h, Tq, d_head)
            if mask is not None:  # fully masked rows: fused kernel gives NaN, we give 0
                heads = torch.nan_to_num(heads, nan=0.0)
            trace = None
        else:
            heads, trace = attend(
                query=q, key=k, value=v, raw_scores=grouped_scores(q, k, key_groups), scale=scale, mask=mask,
                temperature=temperature, return_trace=return_trace, capture=capture, kv_groups=groups,
                softcap=self.softcap,
            )  # fmt: skip
        # 5) Switch heads off (ablation) or write patched contexts, concatenate them and mix with W_O.
        if head_mask is not None:
            heads = heads * head_mask.view(1, -1, 1, 1).to(heads.dtype)  # (B, h, Tq, d_head)
        if head_values is not None:
            select, values = head_values  # (B, h, Tq), (h, Tq or 1, d_head)
            heads = torch.where(select[..., None], values.to(heads.dtype), heads)  # (B, h, Tq, d_head)
        concat = heads.transpose(1, 2).reshape(b, tq, self.n_heads * self.d_head)  # (B, Tq, h·d_head)
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
