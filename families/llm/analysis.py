"""The language-model page's analyses, on the model's own numbers, for any decoder `models.decoder` runs:
how query heads share K/V heads (multi-head, grouped, multi-query) and what that saves in the KV cache,
RoPE on one real query and key as the offset between them moves (or, for learned positions, how alike the
position vectors are), attention sinks (each head's share of attention on the first token, and what hiding
that token does), and raw vs projected self-attention on the rows a layer's W_Q, W_K, W_V read.

Every forward here is `models.decoder.Decoder`'s own (the attention core's trace, the core's `rotary` and
`rotate`); nothing is stored on the shared model. Each analysis is bounded in memory: no call keeps
every (T, T) map of a long prompt (SmolLM2's 270 at 2,048 tokens: 4.5 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from analysis import lm
from analysis.family import Served
from analysis.lm import LM, Change, Prompt
from analysis.projections import RawVsProjected, raw_vs_projected
from analysis.protocol import to_numpy
from families.llm import runner
from models.attention import NO_INTERVENTION, Interventions
from models.decoder import Decoder, soft_cap
from models.decoder_config import DecoderConfig
from models.positions import frequencies, rotary, rotate

BYTES = 4  # float32: a cached key or value channel
SWEEP = 512  # offsets Δ = 0 … SWEEP the RoPE sweep draws at least (more when the real offset is larger)
SHARE_BUDGET = 64 * 2**20  # bytes of attention weights one traced forward of the first-token share may hold
PROJECTION_TOKENS = 256  # raw vs projected reads the prompt's first tokens up to this many
POSITIONS_SHOWN = 64  # learned positions: the first this many position vectors compared


def x_is(cfg: DecoderConfig) -> str:
    """What raw vs projected's X is, for this architecture."""
    norm = "RMSNorm" if cfg.norm == "rms" else "LayerNorm"
    where = (
        "The learned heads also rotate q and k by their positions (RoPE); softmax(XXᵀ) has no positions"
        if cfg.positions == "rope"
        else "X already holds the learned position vectors added before layer 0, so both see positions"
    )
    return f"{norm}(residual stream into the layer), weights applied: the rows W_Q, W_K, W_V read. {where}"


# --- Grouped-query attention and the KV cache -----------------------------------------------------
def kv_cache_bytes(*, layers: int, kv_heads: int, d_head: int, tokens: int, bytes_per: int = BYTES) -> int:
    """2 (keys and values) × layers × K/V heads × d_head × tokens × bytes: what a KV cache holds."""
    return 2 * layers * kv_heads * d_head * tokens * bytes_per


@dataclass(frozen=True)
class GQA:
    """Which query heads read which K/V head (the core's mapping); the KV cache with and without sharing."""

    kv_heads: tuple[int, ...]  # query head → the K/V head it reads (`MultiHeadAttention.kv_heads`)
    layers: int
    d_head: int
    tokens: int  # this prompt's length
    context: int  # the model's trained context (SmolLM2: 8,192)
    windows: tuple[int | None, ...] = ()  # each layer's sliding window (None: every key)

    @property
    def kind(self) -> str:
        """"multi-head" (a K/V head per query head), "multi-query" (one for all) or "grouped-query"."""
        if self.n_kv_heads == self.n_heads:
            return "multi-head"
        return "multi-query" if self.n_kv_heads == 1 else "grouped-query"

    @property
    def n_heads(self) -> int:
        return len(self.kv_heads)

    @property
    def n_kv_heads(self) -> int:
        return max(self.kv_heads) + 1

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """K/V head g → the query heads that read it."""
        heads = tuple(enumerate(self.kv_heads))
        return tuple(tuple(h for h, g in heads if g == kv) for kv in range(self.n_kv_heads))

    def cache_bytes(self, tokens: int | None = None, *, shared: bool = True) -> int:
        """The KV cache for ``tokens`` (default this prompt's), with the model's K/V heads (``shared``) or
        with one K/V head per query head, as without grouped-query attention."""
        heads = self.n_kv_heads if shared else self.n_heads
        return kv_cache_bytes(layers=self.layers, kv_heads=heads, d_head=self.d_head,
                              tokens=self.tokens if tokens is None else tokens)  # fmt: skip


def gqa(loaded: LM, tokens: int) -> GQA:
    model, cfg = loaded.model, loaded.model.cfg
    windows = tuple(b.attn.window for b in model.blocks)  # the core's own, per layer
    return GQA(model.blocks[0].attn.kv_heads, cfg.n_layers, cfg.d_head, tokens, cfg.max_len, windows)


# --- RoPE on one real query and key --------------------------------------------------------------
@dataclass(frozen=True)
class RopeSweep:
    """One query row of a head and one key row of its K/V head, before rotation, and the score
    q·R(Δ)k / √d as the offset Δ between them moves: the key stays at its position, the query is turned
    as if it stood Δ after it (RoPE makes the score depend on Δ alone, up to float rounding)."""

    layer: int
    head: int
    kv_head: int
    query: int  # the query's position
    key: int  # the key's position (≤ query)
    q: np.ndarray  # (d_head,) the query before rotation, from the model's trace
    k: np.ndarray  # (d_head,) the key before rotation
    offsets: np.ndarray  # (S,) Δ = 0 … ≥ SWEEP
    score: np.ndarray  # (S,) q·R(Δ)k × scale (soft-capped where the model caps): one matmul as the model
    pairs: np.ndarray  # (d_rot/2, S) pair i's part of it before any cap: channels (i, i + d_rot/2), × scale
    wavelengths: np.ndarray  # (d_rot/2,) tokens per full turn of pair i: 2π / its (scaled) frequency
    unrotated: float  # q·k × scale (capped): the same two vectors with RoPE off (the same at every offset)
    model_score: float  # the model's own pre-softmax score for (query, key) in its trace
    scale: float  # the layer's factor on q·k (1/√d_head, or the model's own)
    softcap: float | None  # the layer's cap on the scores (Gemma 2), applied after the scale

    @property
    def offset(self) -> int:
        return self.query - self.key

    @property
    def at_offset(self) -> float:
        """The sweep at the real offset: what the check compares with ``model_score``."""
        return float(self.score[self.offset])


def _feed(model: Decoder, ids: Tensor, cache, start: int, end: int, layer: int | None):
    """Rows start…end − 1 through the cache; the attention trace of ``layer`` (full capture) when given."""
    if start >= end:
        return None
    _, trace = model(ids[:, start:end], cache=cache, return_trace=layer is not None, capture="full",
                     trace_layers=() if layer is None else (layer,), logits="last")  # fmt: skip
    return None if trace is None else trace.layers[layer].attention


def rope_sweep(loaded: LM, ids: Sequence[int], layer: int, head: int, query: int, key: int,
               span: int = SWEEP) -> RopeSweep:  # fmt: skip
    """The sweep for query row ``query`` of ``head`` and key row ``key`` of its K/V head in ``layer``, on
    the model as it is (no interventions). The model reads the prompt through its KV cache, as generation
    does: the key's row and the query's row each in a call of their own, traced (q and k before the
    rotation, and the scores of that one query row: no (T, T) map is kept). A model without RoPE is a
    ValueError (its positions are learned vectors: `position_similarity`)."""
    model, cfg = loaded.model, loaded.model.cfg
    if cfg.positions != "rope":
        raise ValueError("this model has no RoPE: its positions are learned vectors added to the input.")
    if not 0 <= key <= query < len(ids):
        raise ValueError(f"need 0 ≤ key ≤ query < {len(ids)}, got key {key} and query {query}.")
    device = next(model.parameters()).device
    x = torch.tensor([list(ids[: query + 1])], device=device)  # (1, query + 1): later rows cannot matter
    cache = model.new_cache(query + 1)
    with torch.inference_mode():
        _feed(model, x, cache, 0, key, None)
        at_key = _feed(model, x, cache, key, key + 1, layer)
        _feed(model, x, cache, key + 1, query, None)
        at_query = at_key if query == key else _feed(model, x, cache, query, query + 1, layer)
    kv = at_query.kv_heads[head]
    q = at_query.rotary.query[0, head, 0]  # (d_head,) before rotation
    k = at_key.rotary.key[0, kv, 0]  # (d_head,) before rotation
    model_score = float(at_query.heads.scaled_scores[0, head, 0, key])  # cap(q_rot·k_rot × scale): the logit
    offsets = torch.arange(0, min(max(span, query - key), cfg.max_len - 1 - key) + 1, device=device)
    turn = dict(dim=cfg.rope_dim, base=cfg.rope_base, scaling=cfg.rope_scaling)  # the model's own angles
    q_rot = rotate(q.expand(len(offsets), -1), rotary(key + offsets, **turn))
    k_rot = rotate(k[None], rotary(torch.tensor([key], device=device), **turn))
    attn = model.blocks[layer].attn
    scale, cap = attn.scale, attn.softcap
    half = cfg.rope_dim // 2
    product = q_rot[:, : cfg.rope_dim] * k_rot[:, : cfg.rope_dim]  # (S, d_rot)
    per_token = frequencies(**turn)  # (d_rot/2,) each pair's angle per position, as `rotary` turns it
    return RopeSweep(
        layer=layer, head=head, kv_head=kv, query=query, key=key, q=to_numpy(q), k=to_numpy(k),
        offsets=to_numpy(offsets).astype(np.int64),
        score=to_numpy(soft_cap((q_rot @ k_rot[0]) * scale, cap)),  # (S, d) @ (d,): the model's dot, × scale
        pairs=to_numpy((product[:, :half] + product[:, half:]).T * scale),  # (d_rot/2, S)
        wavelengths=2 * np.pi / to_numpy(per_token).astype(np.float64),
        unrotated=float(soft_cap((q @ k) * scale, cap)),
        model_score=model_score, scale=scale, softcap=cap,
    )  # fmt: skip


def position_similarity(loaded: LM, n: int = POSITIONS_SHOWN) -> np.ndarray:
    """(n, n) cosine similarity of the model's learned position vectors 0 … n − 1 (GPT-2's ``wpe`` rows: what
    is added to each token's embedding before layer 0); n is cut to the model's context."""
    rows = loaded.model.pos_emb.weight[: min(n, loaded.model.cfg.max_len)].detach().float()  # (n, d)
    unit = torch.nn.functional.normalize(rows, dim=-1)
    return to_numpy(unit @ unit.T)


# --- Attention sinks -------------------------------------------------------------------------------
def first_token_weights(model: Decoder, ids: Sequence[int], iv: Interventions = NO_INTERVENTION,
                        budget: int = SHARE_BUDGET) -> np.ndarray:  # fmt: skip
    """(L, h, T) the weight every query row of every head puts on key 0, the model's own softmax.

    Every layer is traced, but the rows go through the model in chunks (through its KV cache) so that
    one chunk's maps, L · h · rows · T · 4 bytes, stay within ``budget``: at 2,048 tokens 28 rows a chunk
    (64 MiB of weights, and the cache's 46 KiB a token: 94 MiB), against 4.5 GB for all 270 maps at once.
    A prompt whose maps fit the budget (≤ 249 tokens at 64 MiB) runs in one forward: `runner.run`'s own.
    The causal mask off lets a row see later keys, so then it is one forward whatever the length."""
    cfg = model.cfg
    t = len(ids)
    rows = max(1, budget // (cfg.n_layers * cfg.n_heads * t * BYTES)) if iv.causal else t
    x = torch.tensor([list(ids)], device=next(model.parameters()).device)  # (1, T)
    cache = model.new_cache(t) if rows < t else None
    columns = []
    with torch.inference_mode():
        for start in range(0, t, rows):
            _, trace = model(x[:, start : start + rows], iv=iv, cache=cache, return_trace=True,
                             capture="weights", logits="last")  # fmt: skip
            # (L, h, rows): each row's weight on key 0, copied (a view would keep every chunk's maps alive)
            columns.append(np.stack([to_numpy(t.attention.heads.weights[0, :, :, 0]) for t in trace.layers]))
    return np.concatenate(columns, -1)  # (L, h, T)


@dataclass(frozen=True)
class Sinks:
    """Each head's attention on the first token, and what hiding that token does (same prompt)."""

    first: str  # token 0's label
    on_first: np.ndarray  # (L, h, T) each query row's weight on token 0
    loss: float  # mean cross-entropy of the prompt's tokens, nothing hidden
    hidden: Change  # the run with token 0 hidden from every query, against it
    budget: int  # bytes of weights a traced forward held (see `first_token_weights`)

    @property
    def share(self) -> np.ndarray:
        """(L, h) mean over query rows 1 … T − 1 (row 0 sees only token 0) of the weight on token 0; NaN
        for a one-token prompt."""
        if self.on_first.shape[-1] < 2:
            return np.full(self.on_first.shape[:2], np.nan, dtype=np.float32)
        return self.on_first[..., 1:].mean(-1)


HIDE_FIRST = Interventions(hidden_keys=(0,))


def sinks(loaded: LM, ids: Sequence[int], budget: int = SHARE_BUDGET) -> Sinks:
    """On the model as it is: the first-token weights, and `runner.run` with and without token 0 hidden
    (no maps: the losses and next tokens the page's intervention table reads), compared by
    `analysis.lm.compare`."""
    prompt = Prompt(tuple(ids))
    base = runner.run(loaded, prompt, NO_INTERVENTION, layers=())
    return Sinks(
        first=loaded.label(ids[0]),
        on_first=first_token_weights(loaded.model, ids, budget=budget),
        loss=base.loss,
        hidden=lm.compare(runner.run(loaded, prompt, HIDE_FIRST, layers=()), base),
        budget=budget,
    )


def card_first_token(card: dict) -> np.ndarray | None:
    """(L, h) the card's first-token scores (its repeated random sequences: mean weight on token 0 over
    query rows 1 …), or None when the card has none."""
    table = (card or {}).get("in_context", {}).get("first_token_scores")
    return None if table is None else np.asarray(table, dtype=np.float32)


# --- Raw vs projected ------------------------------------------------------------------------------
def projection(loaded: LM, ids: Sequence[int], iv: Interventions, layer: int) -> RawVsProjected:
    """softmax(XXᵀ) beside the learned heads of ``layer`` under ``iv``, on the prompt's first
    `PROJECTION_TOKENS` tokens (causal: those rows are what the model computes on the whole prompt);
    X = the layer's RMSNorm(resid_pre), the rows its W_Q, W_K, W_V read; the mask the model's block used."""
    model = loaded.model
    ids = list(ids[:PROJECTION_TOKENS])
    x = torch.tensor([ids], device=next(model.parameters()).device)  # (1, T)
    with torch.inference_mode():
        _, trace = model(x, iv=iv, return_trace=True, capture="weights", trace_layers=(layer,), logits="last")
        mask = model.attention_mask(len(ids), 0, iv, x.device, layer=layer)  # (1, 1, T, T), its window in
    attention = trace.layers[layer].attention
    visible = np.ones((len(ids),) * 2, dtype=bool) if mask is None else to_numpy(mask[0, 0]).astype(bool)
    tokens = tuple(loaded.label(i) for i in ids)
    return raw_vs_projected(tokens, to_numpy(attention.x_query[0]), to_numpy(attention.heads.weights[0]),
                            visible, x_is=x_is(model.cfg))  # fmt: skip


# --- What the app serves cached (`views.serving.cached`): the `Loaded` first ------------------------
SERVED = {
    # A few kilobytes each: the two vectors and a 32 × 513 table.
    "rope_sweep": Served(rope_sweep, max_entries=64, spinner="Reading q and k out of the model…"),
    "position_similarity": Served(position_similarity, max_entries=4),  # (64, 64) floats
    # (L, h, T) floats: 2.2 MB at 2,048 tokens; three forwards (one traced in chunks, two without maps).
    "sinks": Served(sinks, max_entries=8, spinner="Measuring every head's attention on the first token…"),
    # One layer at ≤ 256 tokens: 2.4 MB of learned maps, two 256 × 256 softmaxes, X and X'.
    "raw_vs_projected": Served(projection, max_entries=32, spinner="Comparing softmax(XXᵀ) with the heads…"),
}
