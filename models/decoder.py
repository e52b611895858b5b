"""Decoder-only language models on the shared attention core: Llama, Mistral, Qwen 2/2.5, Qwen 3, Gemma 2
and GPT-2 as one network, each chosen by its frozen `DecoderConfig`'s options.

A layer is x + attn(norm(x)), then x + MLP(norm(x)) — with Gemma 2's norm after each sublayer too —
every attention one `MultiHeadAttention` call whose options (grouped-query heads, RoPE, biases, q/k norms,
soft-capped logits, a sliding window) are the core's. The computation is Hugging Face's eager one, op for
op where it can be (proven per architecture by tests/test_decoders.py). Traces are returned when asked,
never stored; interventions are one frozen `Interventions` per call; generation appends to the caller's
`KVCache`.

The KV cache keeps every position's keys and values, also on sliding-window layers, and the window is
applied as part of the mask: a cached step then reads exactly what the whole-text forward reads, its
trace shows the whole row (zeros outside the window, as transformers' eager maps do), and patching can
copy a prefix of it by position. The cost is memory for keys outside the window, bounded by the
context we run (a few thousand tokens), not the model's.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, Capture, Interventions, MultiHeadAttention, MultiHeadTrace
from models.decoder_config import DecoderConfig
from models.kv_cache import KVCache
from models.masks import decoder_mask
from models.patching import Patch
from models.positions import rotary
from models.sampling import GREEDY, Sampling, Step, steps

BLOCK = "self"  # the one attention block of a layer, as `Interventions.ablate` names it


def gelu_new(x: Tensor) -> Tensor:
    """GPT-2's tanh GELU, written as transformers' NewGELUActivation writes it (same rounding)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATION = {"silu": F.silu, "gelu": F.gelu, "gelu_new": gelu_new,
              "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}  # fmt: skip


def soft_cap(x: Tensor, cap: float | None) -> Tensor:
    """cap · tanh(x / cap): bounded to (−cap, cap), linear near 0 (Gemma 2's logits). None: x itself."""
    return x if cap is None else torch.tanh(x / cap) * cap


@dataclass(frozen=True)
class LayerTrace:
    """One block: the residual stream into it, after attention was added, after the MLP was added, and
    the attention call (its ``x_query`` is norm(stream in); head i's output is derivable from
    ``attention.concat`` and W_O: see `MultiHeadTrace`; with post-sublayer norms (Gemma 2) what was added
    is ``post_attn_norm(attention.output)``, not the heads' sum itself)."""

    attention: MultiHeadTrace | None  # None for a layer outside ``trace_layers``
    resid_pre: Tensor  # (B, T, d_model)
    resid_mid: Tensor  # (B, T, d_model) resid_pre + attention's term
    resid_post: Tensor  # (B, T, d_model) resid_mid + MLP's term


@dataclass(frozen=True)
class DecoderTrace:
    layers: tuple[LayerTrace, ...]
    logits: Tensor  # (B, T or 1, V)

    @property
    def weights(self) -> Tensor:
        """(B, L, h, Tq, Tk) every traced layer's attention."""
        return torch.stack([t.attention.heads.weights for t in self.layers if t.attention is not None], 1)

    @property
    def attentions(self) -> tuple[MultiHeadTrace | None, ...]:
        return tuple(t.attention for t in self.layers)

    @property
    def streams(self) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
        """Per layer (resid_pre, resid_mid, resid_post), as `models.gpt.GPTTrace` has them."""
        return tuple((t.resid_pre, t.resid_mid, t.resid_post) for t in self.layers)


def make_norm(cfg: DecoderConfig, width: int | None = None) -> nn.Module:
    """RMSNorm (weights w; Gemma's 1 + w is stored as such by the readers) or LayerNorm (GPT-2)."""
    width = cfg.d_model if width is None else width
    return nn.RMSNorm(width, eps=cfg.norm_eps) if cfg.norm == "rms" else nn.LayerNorm(width, eps=cfg.norm_eps)


class Block(nn.Module):
    """x + [post_attn_norm] attn(attn_norm(x)), then x + [post_mlp_norm] MLP(mlp_norm(x)); the MLP is
    W_down(act(W_gate x̂) ⊙ W_up x̂) (SwiGLU, GeGLU) or W_down(act(W_up x̂)) (GPT-2)."""

    def __init__(self, cfg: DecoderConfig, layer: int):
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = MultiHeadAttention(
            cfg.d_model, cfg.n_heads, n_kv_heads=cfg.n_kv_heads, bias=cfg.qkv_bias, d_head=cfg.d_head,
            out_bias=cfg.out_bias, qk_norm_eps=cfg.norm_eps if cfg.qk_norm else None, scale=cfg.attn_scale,
            softcap=cfg.attn_softcap, window=cfg.layer_window(layer),
        )  # fmt: skip
        self.post_attn_norm = make_norm(cfg) if cfg.post_norms else None
        self.mlp_norm = make_norm(cfg)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias) if cfg.mlp == "gated" else None
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)
        self.post_mlp_norm = make_norm(cfg) if cfg.post_norms else None
        self.act = ACTIVATION[cfg.activation]

    def mlp(self, h: Tensor) -> Tensor:
        """(B, T, d) → (B, T, d) through the (B, T, d_ff) hidden layer."""
        hidden = self.act(self.up(h)) if self.gate is None else self.act(self.gate(h)) * self.up(h)
        return self.down(hidden)

    def forward(self, x: Tensor, *, layer: int, patch: Patch | None = None,
                **attention) -> tuple[Tensor, Tensor, MultiHeadTrace | None]:  # fmt: skip
        h = self.attn_norm(x)  # (B, T, d)
        heads = None if patch is None else patch.heads(layer, x.shape[1])  # patched head contexts
        out, trace = self.attn(query=h, key=h, value=h, head_values=heads, **attention)  # (B, T, d)
        if self.post_attn_norm is not None:
            out = self.post_attn_norm(out)
        mid = x + (out if patch is None else patch.write("attn_out", layer, out))
        mlp = self.mlp(self.mlp_norm(mid))
        if self.post_mlp_norm is not None:
            mlp = self.post_mlp_norm(mlp)
        return mid, mid + (mlp if patch is None else patch.write("mlp_out", layer, mlp)), trace


class Decoder(nn.Module):
    """A decoder-only language model: every attention a `MultiHeadAttention` call, every intervention an
    argument, every trace a return value, the KV cache the caller's."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg)
        self.head = None if cfg.tied else nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    @property
    def final_norm(self) -> nn.Module:
        return self.norm

    @property
    def unembedding(self) -> Tensor:
        """(V, d) the rows the final stream is read out with: the token embeddings when tied."""
        return self.tok_emb.weight if self.head is None else self.head.weight

    @property
    def heads_sum_to_stream(self) -> bool:
        """Whether each layer's heads (their W_O slices) and W_O's bias sum to exactly what the layer adds to
        the residual stream. False with post-sublayer norms (Gemma 2): the layer adds post_attn_norm(Σ heads),
        a norm of the sum, so a head's direct term is its slice through that norm taken as a linear map at
        the scale the run computed (as the final norm already is), not the slice alone."""
        return not self.cfg.post_norms

    @property
    def logit_softcap(self) -> float | None:
        """The cap on the output logits (Gemma 2): logits = cap · tanh(readout / cap), so a logit difference
        is additive over stream terms only before the cap."""
        return self.cfg.final_softcap

    def readout(self, x: Tensor) -> Tensor:
        """Final norm, unembedding and the model's cap if any: (…, d) → (…, V) logits, as the forward ends."""
        return soft_cap(F.linear(self.norm(x), self.unembedding), self.cfg.final_softcap)  # (…, d) @ (d, V)

    def embedding_terms(self, ids: Tensor, iv: Interventions = NO_INTERVENTION) -> dict[str, Tensor]:
        """The stream entering layer 0 (positions from 0), as the terms it sums: the token embeddings (× √d
        for Gemma 2) and, for learned positions, the position rows (unless switched off); RoPE adds none."""
        tokens = self.tok_emb(ids)  # (B, T, d)
        if self.cfg.embed_scale:
            tokens = tokens * torch.tensor(self.cfg.d_model**0.5, dtype=tokens.dtype)
        if self.pos_emb is None:
            return {"embedding": tokens}
        terms = {"token embedding": tokens}
        if iv.positional:
            terms["position embedding"] = self.pos_emb.weight[: ids.shape[1]].expand_as(tokens)  # (B, T, d)
        return terms

    def new_cache(self, capacity: int, batch: int = 1) -> KVCache:
        """An empty cache for ``capacity`` positions (prompt + new tokens)."""
        c, p = self.cfg, self.tok_emb.weight
        return KVCache(layers=c.n_layers, batch=batch, kv_heads=c.n_kv_heads, d_head=c.d_head,
                       capacity=capacity, device=p.device, dtype=p.dtype)  # fmt: skip

    def attention_mask(self, t_new: int, start: int, iv: Interventions, device=None,
                       layer: int | None = None) -> Tensor | None:  # fmt: skip
        """(1, 1, T_new, start + T_new) bool, True where a new row may look at a key: not ahead of it (unless
        the causal mask is off), not hidden, and (given a ``layer``) within its sliding window. None when
        every key is visible. The forward passes the window-free mask; each layer's core adds its window."""
        window = None if layer is None else self.cfg.layer_window(layer)
        return decoder_mask(
            t_new, start, causal=iv.causal, hidden=iv.hidden_keys, window=window, device=device
        )

    def forward(
        self, ids: Tensor, *, iv: Interventions = NO_INTERVENTION, cache: KVCache | None = None,
        return_trace: bool = False, capture: Capture = "full", trace_layers: Collection[int] | None = None,
        logits: Literal["all", "last"] = "all", patch: Patch | None = None,
        resume: tuple[int, Tensor] | None = None,
    ) -> tuple[Tensor, DecoderTrace | None]:  # fmt: skip
        """ids (B, T): the new tokens (after the ``cache``'s, if one is given: it grows by T).
        Returns (logits (B, T, V), or (B, 1, V) for ``logits="last"``, and the trace or None):
        logits[:, t] is the distribution of the token after position t. ``trace_layers`` limits the
        attention traces to those layers (the residual streams are kept for every layer). ``patch``
        overwrites activations per batch row (`models.patching`; with a cache, at the new positions);
        ``resume`` = (layer, stream (B, T, d)) starts at that layer from the stream entering it (what came
        before is the caller's, e.g. a run every patched copy shares); the trace then holds the layers
        from there on."""
        b, t_new = ids.shape
        start = 0 if cache is None else cache.length
        if start + t_new > self.cfg.max_len:
            raise ValueError(f"{start + t_new} tokens exceed the {self.cfg.max_len} of the context; cut it.")
        # 1) Token embeddings (× √d for Gemma 2) plus learned positions (GPT-2) — RoPE adds none, it turns
        #    q and k inside attention — or the stream entering layer ``first`` when resuming.
        if resume is None:
            first, x = 0, sum(self.embedding_terms(ids, replace(iv, positional=False)).values())  # (B, T, d)
            if self.pos_emb is not None and iv.positional:
                x = x + self.pos_emb.weight[start : start + t_new]  # + (T, d)
        else:
            first, x = resume
        # 2) What every layer shares: the mask (each layer's window is added by its core) and the RoPE angles.
        mask = self.attention_mask(t_new, start, iv, ids.device)  # (1, 1, T, start + T) or None
        positions = torch.arange(start, start + t_new, device=ids.device)
        c = self.cfg
        rope = c.positions == "rope" and iv.positional
        rot = rotary(positions, dim=c.rope_dim, base=c.rope_base, scaling=c.rope_scaling) if rope else None
        # 3) The blocks, each attention call through the shared core.
        traces = []
        for i in range(first, c.n_layers):
            traced = return_trace and (trace_layers is None or i in trace_layers)
            kw = iv.attention_kwargs(BLOCK, i, c.n_heads, ids.device, return_trace=traced, capture=capture)
            layer_cache = None if cache is None else cache.layer(i)
            x = x if patch is None else patch.write("resid_pre", i, x)
            mid, out, trace = self.blocks[i](x, layer=i, patch=patch, mask=mask, rotary=rot,
                                             cache=layer_cache, **kw)  # fmt: skip
            if return_trace:
                traces.append(LayerTrace(trace, x, mid, out))
            x = out
        # 4) Final norm and the unembedding to next-token logits (soft-capped where the model caps them).
        out = self.readout(x if logits == "all" else x[:, -1:])  # (B, T or 1, d) → (B, T or 1, V)
        return out, DecoderTrace(tuple(traces), out) if return_trace else None

    @torch.inference_mode()
    def stream(self, ids: list[int], *, new_tokens: int, sampling: Sampling = GREEDY,
               stop: Collection[int] = (), iv: Interventions = NO_INTERVENTION,
               trace_layers: Collection[int] | None = None) -> Iterator[Step]:  # fmt: skip
        """Generate after ``ids`` one token at a time through a `KVCache`, yielding each `Step` as soon
        as it is chosen (a stop token ends it, yielded). Always causal. The prompt is read once; each
        later step feeds only the token just chosen."""
        if not ids or new_tokens < 1:
            raise ValueError("need at least one prompt token and one new token.")
        iv, device = replace(iv, causal=True), self.tok_emb.weight.device
        cache = self.new_cache(len(ids) + new_tokens)

        def read(token: int | None) -> tuple[Tensor, Tensor, int]:
            fed, start = list(ids) if token is None else [token], cache.length  # start: positions cached
            logits, trace = self(torch.tensor([fed], device=device), iv=iv, cache=cache, return_trace=True,
                                 capture="weights", trace_layers=trace_layers, logits="last")  # fmt: skip
            return logits[0, -1], trace.weights[0], start  # (V,), (L, h, len(fed), keys so far)

        yield from steps(read, new_tokens=new_tokens, sampling=sampling, stop=stop, device=device)
