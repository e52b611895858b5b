"""A small GPT: a pre-norm decoder-only transformer on the shared attention core.

Token embeddings plus learned positions (started as sinusoids), then ``n_layers`` blocks of
x + attn(LN(x)), x + MLP(LN(x)), a final LayerNorm and the unembedding to next-token logits
(Radford et al. 2018/2019; the layout of nanoGPT's ``model.py``). Every attention call is
`models.attention.MultiHeadAttention` with a causal mask: position t sees 0…t. With
``return_trace=True`` each layer's `MultiHeadTrace` comes back in a `GPTTrace` that is *returned*,
never stored.

One departure from GPT-2, for the CPU budget: **smeared keys** (Olsson et al. 2022, "In-context
learning and induction heads", the smeared-key models). The keys of a layer are projected from a
learned per-channel mix of each position's input and the previous position's (queries and values
are not), so a key can say "the token before me was x" without a previous-token head in an earlier
layer. Induction heads then form within minutes on one CPU thread (by step ~750 in a 1,500-step
trial); without it, three runs of this size formed none in 1,500–3,600 steps (up to 15 minutes).
The mix is causal (a key reads only its own and the previous position) and the scores, mask and
softmax are still the shared core's.

Interventions (heads switched off, hidden key positions, a temperature on the attention logits, no
1/sqrt(d_k), no positions, the causal mask off) are one frozen `Interventions` passed per call: the
one cached model every session shares is never switched into a mode. Generation is causal by
construction (the future does not exist yet), so the causal toggle acts on teacher forcing, where
the whole text is there to peek at.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, MultiHeadAttention, keys_kept
from models.patching import Patch
from models.positions import sinusoids
from models.sampling import GREEDY, Sampling, Step, steps

if TYPE_CHECKING:  # names only the annotations use
    from models.attention import Capture, Interventions, MultiHeadTrace

BLOCK = "self"  # the one attention block of a layer, as `Interventions.ablate` names it


@dataclass(frozen=True)
class GPTConfig:
    """Widths, depth and context of one GPT."""

    vocab: int  # token vocabulary, specials included (the BPE's size)
    d_model: int = 128  # residual width; each head gets d_model / n_heads
    n_heads: int = 4  # heads per layer (d_head 32: room to tell 2,048 tokens apart)
    n_layers: int = 2  # blocks; induction needs at least 2 (a previous-token head feeds it)
    d_ff: int = 512  # MLP hidden width
    max_len: int = 128  # context: positions the model reads, <s> included

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")


@dataclass(frozen=True)
class GPTTrace:
    """Per layer, its self-attention `MultiHeadTrace` (weights (B, h, T, T) in ``.heads.weights``) and
    the residual stream into the layer, after attention was added, after the MLP was added."""

    layers: tuple[MultiHeadTrace | None, ...]  # None for a layer outside ``trace_layers``
    logits: Tensor  # (B, T, V)
    streams: tuple[tuple[Tensor, Tensor, Tensor], ...] = ()  # per layer (resid_pre, resid_mid, resid_post)

    @property
    def weights(self) -> Tensor:
        """(B, L, h, T, T) every traced layer's and head's attention."""
        return torch.stack([t.heads.weights for t in self.layers if t is not None], 1)

    @property
    def attentions(self) -> tuple[MultiHeadTrace | None, ...]:
        return self.layers


class Block(nn.Module):
    """x + attn(LN(x)) with smeared keys, then x + MLP(LN(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.smear = nn.Parameter(torch.zeros(cfg.d_model))  # per channel: sigmoid → share of t − 1
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model)
        )

    def smeared(self, h: Tensor) -> Tensor:
        """(B, T, d) → (B, T, d): each position's row mixed with the one before (zeros before 0)."""
        before = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)  # (B, T, d) shifted by one
        share = torch.sigmoid(self.smear)  # (d,)
        return (1 - share) * h + share * before

    def forward(self, x: Tensor, *, mask: Tensor, kw: dict, layer: int = 0,
                patch: Patch | None = None) -> tuple[Tensor, Tensor, MultiHeadTrace | None]:  # fmt: skip
        """(the stream after attention was added, after the MLP was added, the attention trace)."""
        h = self.ln_1(x)
        heads = None if patch is None else patch.heads(layer, x.shape[1])  # patched head contexts
        out, trace = self.attn(query=h, key=self.smeared(h), value=h, mask=mask, head_values=heads, **kw)
        mid = x + (out if patch is None else patch.write("attn_out", layer, out))  # (B, T, d)
        mlp = self.mlp(self.ln_2(mid))
        return mid, mid + (mlp if patch is None else patch.write("mlp_out", layer, mlp)), trace


class GPT(nn.Module):
    """Decoder-only transformer: every attention a `MultiHeadAttention` call with a causal mask,
    every intervention an argument, every trace a return value."""

    heads_sum_to_stream = True  # each layer adds its heads' W_O slices and W_O's bias, nothing else
    logit_softcap = None  # the logits are the readout itself

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        # GPT-2's initialisation: N(0, 0.02) everywhere, the projections back into the residual
        # stream scaled down by sqrt(2 · layers) so the stream's variance does not grow with depth.
        residual = 0.02 / math.sqrt(2 * cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=residual if name.endswith(("w_o.weight", "mlp.2.weight")) else 0.02)
            elif name.endswith(".bias") and "ln" not in name:
                nn.init.zeros_(p)
        # Positions start as sinusoids at the tokens' scale (std ≈ 0.014). Keeping the embeddings this
        # small matters: a block's output must be heard in the residual stream for the next layer
        # to read it (an induction head's keys read a previous-token head's output).
        with torch.no_grad():
            # Sinusoids make the offset to the previous token one linear map at every position, which a
            # previous-token head then learns once rather than per position.
            self.pos_emb.weight.copy_(0.02 * sinusoids(cfg.max_len, cfg.d_model))

    @property
    def final_norm(self) -> nn.Module:
        return self.ln_f

    @property
    def unembedding(self) -> Tensor:
        """(V, d) the rows the final stream is read out with."""
        return self.head.weight

    def readout(self, x: Tensor) -> Tensor:
        """Final norm and the unembedding: (…, d) → (…, V) logits, as the forward ends."""
        return self.head(self.ln_f(x))

    def embedding_terms(self, ids: Tensor, iv: Interventions = NO_INTERVENTION) -> dict[str, Tensor]:
        """The stream entering layer 0, as the terms it sums: token embeddings and (unless switched
        off) the learned positions."""
        terms = {"token embedding": self.tok_emb(ids)}
        if iv.positional:
            positions = self.pos_emb.weight[: ids.shape[1]]  # (T, d)
            terms["position embedding"] = positions.expand_as(terms["token embedding"])
        return terms

    def attention_mask(self, t_len: int, iv: Interventions, device=None) -> Tensor:
        """(1, 1, T, T) bool, True where query t may look at key j: j ≤ t (unless the causal mask is
        off) and j not hidden."""
        keep = torch.ones(t_len, t_len, dtype=torch.bool, device=device)
        if iv.causal:
            keep = torch.tril(keep)  # (T, T): position t sees 0..t
        return keep & keys_kept(1, t_len, hidden=iv.hidden_keys, device=device)[:, None, None, :]

    def forward(
        self,
        ids: Tensor,
        *,
        iv: Interventions = NO_INTERVENTION,
        return_trace: bool = False,
        capture: Capture = "full",
        patch: Patch | None = None,
        resume: tuple[int, Tensor] | None = None,
        logits: Literal["all", "last"] = "all",
        trace_layers: Collection[int] | None = None,
    ) -> tuple[Tensor, GPTTrace | None]:
        """ids (B, T) with T ≤ max_len, <s> first. Returns (logits (B, T, V), or (B, 1, V) for
        ``logits="last"``, and the trace or None): logits[:, t] is the distribution of the token
        after position t. ``patch`` overwrites
        activations per batch row (`models.patching`); ``resume`` = (layer, stream (B, T, d)) starts at
        that layer from the stream entering it; the trace then holds the layers from there on.
        ``trace_layers`` limits the attention traces to those layers (the streams are kept for every
        layer)."""
        b, t_len = ids.shape
        if t_len > self.cfg.max_len:
            raise ValueError(f"{t_len} tokens exceed the context of {self.cfg.max_len}; truncate the input.")
        # 1) Token embeddings plus the positions (unless switched off), or the stream entering layer
        #    ``first`` when resuming.
        first, x = 0, self.tok_emb(ids)  # (B, T, d)
        if resume is not None:
            first, x = resume
        elif iv.positional:
            x = x + self.pos_emb.weight[:t_len]  # + (T, d)
        # 2) The mask every layer shares: causal, minus hidden keys.
        mask = self.attention_mask(t_len, iv, ids.device)  # (1, 1, T, T)
        # 3) The blocks, each attention call through the shared core.
        traces, streams = [], []
        for i in range(first, self.cfg.n_layers):
            traced = return_trace and (trace_layers is None or i in trace_layers)
            kw = iv.attention_kwargs(BLOCK, i, self.cfg.n_heads, ids.device, return_trace=traced,
                                     capture=capture)  # fmt: skip
            x = x if patch is None else patch.write("resid_pre", i, x)
            mid, out, trace = self.blocks[i](x, mask=mask, kw=kw, layer=i, patch=patch)
            traces.append(trace)
            streams.append((x, mid, out))
            x = out
        # 4) Final norm and unembedding to next-token logits.
        out = self.readout(x if logits == "all" else x[:, -1:])  # (B, T or 1, d) → (B, T or 1, V)
        return out, GPTTrace(tuple(traces), out, tuple(streams)) if return_trace else None

    @torch.inference_mode()
    def stream(self, ids: list[int], *, new_tokens: int, sampling: Sampling = GREEDY,
               stop: Collection[int] = (), iv: Interventions = NO_INTERVENTION,
               trace_layers: Collection[int] | None = None) -> Iterator[Step]:  # fmt: skip
        """Generate after ``ids`` one token at a time, yielding each `Step` as soon as it is chosen (a stop
        token ends it, yielded). Always causal. Each step reads the whole text again, its last max_len
        tokens once it outgrows the context (<s> dropped once the window slides): positions are learned
        per index, so a window that slides changes every position, and nothing could be cached."""
        if not ids or new_tokens < 1:
            raise ValueError("need at least one prompt token and one new token.")
        iv, device = replace(iv, causal=True), self.tok_emb.weight.device
        text, traced = list(ids), trace_layers is None or len(trace_layers) > 0

        def read(token: int | None) -> tuple[Tensor, Tensor | None, int]:
            text.extend([] if token is None else [token])
            window = text[-self.cfg.max_len :]
            logits, trace = self(torch.tensor([window], device=device), iv=iv, return_trace=traced,
                                 capture="weights", trace_layers=trace_layers)  # fmt: skip
            return logits[0, -1], trace.weights[0] if traced else None, len(text) - len(window)

        yield from steps(read, new_tokens=new_tokens, sampling=sampling, stop=stop, device=device)


# Training: what `python -m training --family gpt` reads (the loop is training/loop.py).
VARIANTS: dict[str, dict] = {"l2h4": {}}  # one variant: 2 layers × 4 heads at d_model 128 (the defaults)
# Windows to draw, steps, batch, learning rate, the config widths. About 10 minutes on 1 CPU thread.
TRAINING: dict[str, dict] = {
    "stdlib": dict(n_train=60_000, steps=3500, batch=16, lr=3e-3, config={}),
}


def training_config(task: str, variant: str, src_vocab: int, tgt_vocab: int) -> GPTConfig:
    """The config a preset trains: the BPE's vocabulary (a GPT has no source vocabulary)."""
    return GPTConfig(vocab=tgt_vocab, **TRAINING[task]["config"], **VARIANTS[variant])


def card_fields(task: str, variant: str) -> dict:
    """The data the card must name: the corpus, its split and tokenizer, the repeated-span share,
    and the CPU threads the training ran on."""
    from tasks import stdlib  # the stdlib task is this family's only one

    return {
        "architecture": (
            "pre-norm decoder-only transformer; learned positions started as sinusoids; smeared keys "
            "(Olsson et al. 2022): each layer's keys read a learned mix of a position and the one before"
        ),
        "corpus": stdlib.corpus_card(),
        "tokenizer": {
            "file": stdlib.TOKENIZER_FILE.name,
            "kind": "byte-level BPE (Hugging Face tokenizers), trained on the training files only",
            "vocab_size": stdlib.VOCAB_SIZE,
            "sha256": stdlib.tokenizer_digest(),
        },
        "window": stdlib.WINDOW,
        "repeat_share": stdlib.REPEAT_SHARE,
        "repeat_span": list(stdlib.REPEAT_SPAN),
        "repeat_note": (
            f"{stdlib.REPEAT_SHARE:.0%} of the training windows carry a span of {stdlib.REPEAT_SPAN[0]}–"
            f"{stdlib.REPEAT_SPAN[1] - 1} tokens repeated later in the window: in half of them uniformly "
            "random tokens, in the other half the window's own text. Validation and test windows are "
            "text only."
        ),
        "threads": torch.get_num_threads(),
    }
