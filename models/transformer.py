"""A small encoder–decoder transformer (Vaswani et al. 2017) on the shared attention core.

Every attention call — encoder self-attention, decoder masked self-attention, cross-attention —
is `models.attention.MultiHeadAttention`; with ``return_trace=True`` each returns its
`MultiHeadTrace`, collected into a `TransformerTrace` that is *returned*, never stored.

Interventions (causal/padding masks off, hidden keys, no 1/sqrt(d_k), temperature, ablated heads,
no positional encoding) are one frozen `Interventions` value passed per call: a shared cached
model is never switched into a mode.

Activation patching is an argument too: ``patches`` maps a block (`BLOCKS`) to a `Patch` — a
``resid_pre`` patch of "encoder" or "decoder_self" writes the stream entering that stack's layers, a
``head`` patch writes that block's head contexts (`models.patching`).

Free-running decoding is causal by construction (the future does not exist yet), so the causal
toggle acts on teacher forcing, where the reference is there to peek at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, Interventions, MultiHeadAttention, MultiHeadTrace, keys_kept
from models.patching import Patch
from models.positions import sinusoids
from tasks.common import BOS_ID, EOS_ID

BLOCKS = ("encoder", "decoder_self", "cross")


@dataclass(frozen=True)
class TransformerConfig:
    """Widths, head count and norm placement of one encoder–decoder transformer."""

    src_vocab: int  # source vocabulary size, specials included
    tgt_vocab: int  # target vocabulary size, specials included
    d_model: int = 64  # residual width; each head gets d_model / n_heads
    n_heads: int = 4  # heads per attention block
    n_layers: int = 2  # encoder layers = decoder layers
    d_ff: int = 128  # feed-forward hidden width
    norm: str = "pre"  # "pre": x + f(LN(x)); "post": LN(x + f(x)) as in the original paper
    max_len: int = 128  # positional-encoding table length

    def __post_init__(self) -> None:
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}.")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")


# The trained variants: head counts at one d_model (so d_k = d_model / h), and the norm placement.
PRESETS: dict[str, dict] = {
    "h1": dict(n_heads=1),
    "h2": dict(n_heads=2),
    "h4": dict(n_heads=4),
    "h8": dict(n_heads=8),
    "h4-post": dict(n_heads=4, norm="post"),
}


@dataclass(frozen=True)
class SublayerTrace:
    """One residual sublayer as the model ran it. Pre-norm: f reads LN(x_in), x_out = x_in + f_out.
    Post-norm: f reads x_in, x_out = LN(x_in + f_out)."""

    x_in: Tensor  # (B, T, d) the residual stream entering the sublayer
    f_in: Tensor  # (B, T, d) what f read: LN(x_in) (pre-norm) or x_in (post-norm)
    f_out: Tensor  # (B, T, d) f's output: attention after W_O, or the feed-forward network's
    x_out: Tensor  # (B, T, d) the residual stream leaving it
    hidden: Tensor | None  # (B, T, d_ff) the feed-forward network's activations after ReLU (else None)


@dataclass(frozen=True)
class LayerTrace:
    """One layer's residual sublayers, in order: self-attention, cross-attention (decoder), FFN."""

    self_attention: SublayerTrace
    cross_attention: SublayerTrace | None
    feed_forward: SublayerTrace


@dataclass(frozen=True)
class TransformerTrace:
    """Per layer, each block's `MultiHeadTrace` (weights (B, h, Tq, Tk) in ``.heads.weights``) and
    each layer's residual sublayers (`LayerTrace`: the stream, the norms' inputs, the FFN)."""

    encoder: tuple[MultiHeadTrace, ...]
    decoder_self: tuple[MultiHeadTrace, ...]
    cross: tuple[MultiHeadTrace, ...]
    memory: Tensor  # (B, S, d_model) encoder output
    logits: Tensor  # (B, T, V)
    encoder_layers: tuple[LayerTrace, ...] = ()
    decoder_layers: tuple[LayerTrace, ...] = ()

    def block(self, name: str) -> tuple[MultiHeadTrace, ...]:
        return getattr(self, name)

    @property
    def alignment(self) -> Tensor:
        """(B, T, S) last cross-attention layer, averaged over heads: the word alignment."""
        return self.cross[-1].heads.weights.mean(1)


Patches = Mapping[str, Patch] | None  # block (`BLOCKS`) → what a forward overwrites there


def _write(patches: Patches, block: str, layer: int, x: Tensor) -> Tensor:
    """x (B, T, d) entering ``layer`` of ``block``'s stack, with a ``resid_pre`` patch's positions written."""
    return x if not patches or block not in patches else patches[block].write("resid_pre", layer, x)


class _Layer(nn.Module):
    """One encoder layer (self-attention, FFN) or decoder layer (+ cross-attention)."""

    def __init__(self, cfg: TransformerConfig, *, cross: bool):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads) if cross else None
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(3 if cross else 2))

    def _sublayer(self, x: Tensor, i: int, fn, trace: bool):
        """Pre-norm: x + f(LN(x)). Post-norm: LN(x + f(x)). ``fn(h)`` returns (f(h), attention trace
        or None, FFN hidden or None). Returns (x_out, attention trace, `SublayerTrace` or None)."""
        f_in = self.norms[i](x) if self.pre else x
        out, attention_trace, hidden = fn(f_in)
        x_out = x + out if self.pre else self.norms[i](x + out)
        sub = SublayerTrace(x, f_in, out, x_out, hidden) if trace else None
        return x_out, attention_trace, sub

    def feed_forward(self, h: Tensor) -> tuple[Tensor, None, Tensor]:
        """W₂ ReLU(W₁ h + b₁) + b₂, position by position: (B, T, d) → (B, T, d), and the hidden
        activations (B, T, d_ff) after the ReLU."""
        hidden = self.ff[1](self.ff[0](h))
        return self.ff[2](hidden), None, hidden

    def forward(
        self,
        x: Tensor,
        *,
        self_mask: Tensor | None,
        memory: Tensor | None = None,
        cross_mask: Tensor | None = None,
        kw_self: dict,
        kw_cross: dict | None = None,
    ):
        """Returns (x, self-attention trace, cross-attention trace, `LayerTrace` or None); traces
        only when ``kw_self`` asks for them."""
        trace = kw_self.get("return_trace", False)
        # 1) Self-attention (masked in the decoder).
        x, t_self, s_self = self._sublayer(
            x, 0, lambda h: (*self.self_attn(query=h, key=h, value=h, mask=self_mask, **kw_self), None), trace
        )
        # 2) Cross-attention: queries from the decoder, keys and values from the encoder output.
        t_cross = s_cross = None
        if self.cross_attn is not None:
            x, t_cross, s_cross = self._sublayer(
                x,
                1,
                lambda h: (
                    *self.cross_attn(query=h, key=memory, value=memory, mask=cross_mask, **kw_cross),
                    None,
                ),
                trace,
            )
        # 3) Position-wise feed-forward.
        x, _, s_ff = self._sublayer(x, len(self.norms) - 1, self.feed_forward, trace)
        return x, t_self, t_cross, LayerTrace(s_self, s_cross, s_ff) if trace else None


class Transformer(nn.Module):
    """Encoder–decoder transformer on the shared core: every self- and cross-attention block is a
    `MultiHeadAttention`, every intervention an argument, every trace a return value."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.src_emb = nn.Embedding(cfg.src_vocab, cfg.d_model, padding_idx=0)
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab, cfg.d_model, padding_idx=0)
        self.register_buffer("pe", sinusoids(cfg.max_len, cfg.d_model), persistent=False)
        self.encoder = nn.ModuleList(_Layer(cfg, cross=False) for _ in range(cfg.n_layers))
        self.decoder = nn.ModuleList(_Layer(cfg, cross=True) for _ in range(cfg.n_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.dec_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.out = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        # Embeddings start at std d^-1/2 so that × sqrt(d) in `embed` gives unit scale, comparable
        # to the positional encoding. (PyTorch's default N(0, 1) would make tokens 8× louder than
        # positions at d = 64, and the model would barely see where a character is.)
        for emb in (self.src_emb, self.tgt_emb):
            nn.init.normal_(emb.weight, std=cfg.d_model**-0.5)
            nn.init.zeros_(emb.weight[0])  # padding row

    def embed(self, emb: nn.Embedding, ids: Tensor, iv: Interventions) -> Tensor:
        """Token embedding × sqrt(d_model), plus the positional encoding unless switched off."""
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds max_len {self.cfg.max_len}.")
        x = emb(ids) * math.sqrt(self.cfg.d_model)  # (B, T, d)
        return x + self.pe[: ids.shape[1]] if iv.positional else x

    def source_mask(self, src_lens: Tensor, s_len: int, iv: Interventions, device) -> Tensor | None:
        """(B, 1, 1, S) True where a query may look; None when nothing is hidden."""
        lengths = src_lens if iv.padding else None
        keep = keys_kept(len(src_lens), s_len, hidden=iv.hidden_keys, lengths=lengths, device=device)
        return None if keep.all() else keep[:, None, None, :]

    def encode(self, src: Tensor, src_lens: Tensor, iv: Interventions, trace: bool, patches: Patches = None):
        mask = self.source_mask(src_lens, src.shape[1], iv, src.device)
        x, traces, layers = self.embed(self.src_emb, src, iv), [], []
        for i, layer in enumerate(self.encoder):
            kw = self._kwargs(iv, "encoder", i, x.shape[1], trace, patches)
            x = _write(patches, "encoder", i, x)
            x, t, _, lt = layer(x, self_mask=mask, kw_self=kw)
            traces.append(t)
            layers.append(lt)
        return self.enc_norm(x), mask, traces, layers

    def _kwargs(
        self, iv: Interventions, block: str, layer: int, t: int, trace: bool, patches: Patches
    ) -> dict:
        """`MultiHeadAttention`'s per-call arguments for one block and layer, patched heads included."""
        kw = iv.attention_kwargs(block, layer, self.cfg.n_heads, self.pe.device, return_trace=trace)
        heads = None if not patches or block not in patches else patches[block].heads(layer, t)
        return kw if heads is None else {**kw, "head_values": heads}

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor | None, iv: Interventions, trace: bool,
               patches: Patches = None):  # fmt: skip
        t_len, dev = tgt_in.shape[1], tgt_in.device
        keep = torch.ones(t_len, t_len, dtype=torch.bool, device=dev)
        if iv.causal:
            keep = torch.tril(keep)  # (T, T): position t sees 0..t
        if iv.padding:
            keep = keep & (tgt_in != 0)[:, None, None, :]  # (B, 1, T, T)
        x, selfs, crosses, layers = self.embed(self.tgt_emb, tgt_in, iv), [], [], []
        for i, layer in enumerate(self.decoder):
            x = _write(patches, "decoder_self", i, x)
            x, ts, tc, lt = layer(
                x,
                self_mask=keep,
                memory=memory,
                cross_mask=src_mask,
                kw_self=self._kwargs(iv, "decoder_self", i, t_len, trace, patches),
                kw_cross=self._kwargs(iv, "cross", i, t_len, trace, patches),
            )
            selfs.append(ts)
            crosses.append(tc)
            layers.append(lt)
        return self.out(self.dec_norm(x)), selfs, crosses, layers  # logits (B, T, V)

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, *, iv: Interventions = NO_INTERVENTION,
                return_trace: bool = False, patches: Patches = None):  # fmt: skip
        """Teacher forcing: tgt_in (B, T) = <s> y_1 … y_{T-1}. Returns (logits (B, T, V), trace).
        ``patches``: block → `Patch`, overwriting activations per batch row (see the module's docstring)."""
        memory, src_mask, enc, enc_layers = self.encode(src, src_lens, iv, return_trace, patches)
        logits, selfs, crosses, dec_layers = self.decode(tgt_in, memory, src_mask, iv, return_trace, patches)
        if not return_trace:
            return logits, None
        return logits, TransformerTrace(
            tuple(enc), tuple(selfs), tuple(crosses), memory, logits, tuple(enc_layers), tuple(dec_layers)
        )

    def greedy(self, src: Tensor, src_lens: Tensor, *, max_len: int, iv: Interventions = NO_INTERVENTION,
               return_trace: bool = False):  # fmt: skip
        """Batched greedy decoding (always causal). Returns ids (B, T) and, if asked, the trace of
        the final pass over <s> y_1 … y_{T-1} — the very pass that chose y_T, and whose rows
        t < T repeat the earlier steps' numbers (causal attention sees only the prefix)."""
        iv = replace(iv, causal=True)
        memory, src_mask, _, _ = self.encode(src, src_lens, iv, False)
        ys = torch.full((src.shape[0], 1), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits, _, _, _ = self.decode(ys, memory, src_mask, iv, False)
            nxt = torch.where(done, EOS_ID, logits[:, -1].argmax(-1))
            ys = torch.cat([ys, nxt[:, None]], 1)
            done |= nxt == EOS_ID
            if done.all():
                break
        ids = ys[:, 1:]
        if not return_trace:
            return ids, None
        _, trace = self(src, src_lens, ys[:, :-1], iv=iv, return_trace=True)
        return ids, trace


# Training: what `python -m training --family transformer` reads (the loop is training/loop.py).
VARIANTS = PRESETS  # a variant is a head count (and norm placement) at one d_model
# Per task: data size, steps, batch, learning rate, the config widths. Minutes on 2 CPU cores.
TRAINING: dict[str, dict] = {
    "dates": dict(n_train=20000, steps=3000, batch=64, lr=2e-3, config=dict(d_model=64, d_ff=128)),
    "translation": dict(n_train=40000, steps=3000, batch=64, lr=2e-3, config=dict(d_model=64, d_ff=128)),
}
