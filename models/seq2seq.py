"""RNN encoder–decoder with attention (Bahdanau et al. 2015), and its no-attention baseline.

Encoder: a bidirectional GRU reads the source into annotations h_1..h_S (each 2H wide).
Decoder step t (the numbered steps below are the step inspector's names on the page):
  1) query      s_{t-1}, the previous decoder state
  2) scores     e_t,i = score(s_{t-1}, h_i)               (shared attention core)
  3) weights    α_t = softmax(e_t)
  4) context    c_t = Σ_i α_t,i h_i
  5) state      s_t = GRU([emb(y_{t-1}); c_t], s_{t-1})
  6) output     p(y_t) = softmax(W [s_t; c_t; emb(y_{t-1})])
The baseline (scoring="none") is the fixed-vector model of Cho et al. 2014: c_t is the encoder's
final state at every step — the whole sentence squeezed into one vector, the bottleneck attention
removes. Both share every other line, so the comparison is fair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.attention import SCORINGS, Attention, AttentionTrace
from models.decoding import beam_search, greedy_search
from models.patching import Patch
from tasks.common import EOS_ID


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Widths and the scoring function of one seq2seq model (or "none": the fixed-vector baseline)."""

    src_vocab: int  # source vocabulary size, specials included
    tgt_vocab: int  # target vocabulary size, specials included
    scoring: str = "additive"  # one of SCORINGS, or "none" for the fixed-vector baseline
    emb_dim: int = 32  # token embedding width
    enc_hidden: int = 64  # per direction; decoder state is 2× this, so dot scoring needs no projection
    attn_dim: int = 64  # hidden size of additive scoring

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS + ("none",):
            raise ValueError(f"scoring must be one of {SCORINGS + ('none',)}, got {self.scoring!r}.")


@dataclass(frozen=True)
class Encoded:
    """What the encoder hands every decoder step: annotations, final state, source mask."""

    memory: Tensor  # (B, S, 2H) annotations h_i
    final: Tensor  # (B, 2H) [forward last; backward first]
    mask: Tensor  # (B, 1, S) bool, True on real source tokens


@dataclass(frozen=True)
class DecodeTrace:
    """Every decoder step's numbers, stacked on axis 1: (B, T, …). Attention fields are None for
    the baseline. ``log_probs`` is log p of the token emitted (free running) or forced (teacher)."""

    queries: Tensor  # (B, T, 2H) s_{t-1}
    raw_scores: Tensor | None  # (B, T, S) e_t before scaling
    masked_scores: Tensor | None  # (B, T, S) scaled, then -inf on padding: what went into the softmax
    weights: Tensor | None  # (B, T, S) α_t
    contexts: Tensor  # (B, T, 2H) c_t
    states: Tensor  # (B, T, 2H) s_t
    logits: Tensor  # (B, T, V) the output layer's scores for y_t
    log_probs: Tensor  # (B, T)
    scale: float  # 1/sqrt(d_k) for scaled dot, else 1

    @property
    def alignment(self) -> Tensor | None:
        """(B, T, S) the word alignment: α itself (None without attention)."""
        return self.weights


@dataclass(frozen=True)
class _Step:
    """One decoder step's outputs, before they are stacked into a `DecodeTrace`."""

    logits: Tensor  # (B, V)
    query: Tensor  # (B, 2H)
    context: Tensor  # (B, 2H)
    state: Tensor  # (B, 2H)
    attention: AttentionTrace | None


@dataclass(frozen=True)
class Hypothesis:
    """One beam-search result with its own per-step trace."""

    tokens: list[int]  # emitted ids, </s> included when it was reached
    log_prob: float
    trace: DecodeTrace  # B = 1


def _stack(steps: list[_Step], picked: Tensor) -> DecodeTrace:
    """Per-step records → one DecodeTrace; ``picked`` (B, T) are the tokens whose log p to keep."""
    logits = torch.stack([s.logits for s in steps], 1)  # (B, T, V)
    logp = torch.log_softmax(logits, -1)
    att = [s.attention for s in steps]
    has_att = att[0] is not None
    return DecodeTrace(
        queries=torch.stack([s.query for s in steps], 1),
        raw_scores=torch.cat([a.raw_scores for a in att], 1) if has_att else None,  # (B, T, S)
        masked_scores=torch.cat([a.masked_scores for a in att], 1) if has_att else None,
        weights=torch.cat([a.weights for a in att], 1) if has_att else None,
        contexts=torch.stack([s.context for s in steps], 1),
        states=torch.stack([s.state for s in steps], 1),
        logits=logits,
        log_probs=logp.gather(-1, picked.unsqueeze(-1)).squeeze(-1),
        scale=att[0].scale if has_att else 1.0,
    )


class Seq2Seq(nn.Module):
    """Bidirectional-GRU encoder, GRU decoder with attention from the shared core (or the fixed
    vector): the steps in the module docstring, shared by teacher forcing, greedy and beam search."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        hidden = 2 * cfg.enc_hidden
        self.src_emb = nn.Embedding(cfg.src_vocab, cfg.emb_dim, padding_idx=0)
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab, cfg.emb_dim, padding_idx=0)
        self.encoder = nn.GRU(cfg.emb_dim, cfg.enc_hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(hidden, hidden)
        self.attention = (
            None
            if cfg.scoring == "none"
            else Attention(cfg.scoring, query_dim=hidden, key_dim=hidden, attn_dim=cfg.attn_dim)
        )
        self.cell = nn.GRUCell(cfg.emb_dim + hidden, hidden)
        self.out = nn.Linear(2 * hidden + cfg.emb_dim, cfg.tgt_vocab)

    def encode(self, src: Tensor, src_lens: Tensor, *, embedded: Tensor | None = None) -> Encoded:
        """src (B, S) ids, src_lens (B,) → annotations, final state, source mask. ``embedded``
        (B, S, E), when given, is read instead of src_emb(src): a gradient per input vector needs
        the embeddings as a leaf of its own."""
        emb = self.src_emb(src) if embedded is None else embedded  # (B, S, E)
        packed = pack_padded_sequence(emb, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.encoder(packed)  # h_n: (2, B, H)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        final = torch.cat([h_n[0], h_n[1]], -1)  # (B, 2H)
        mask = torch.arange(src.shape[1], device=src.device) < src_lens.to(src.device)[:, None]
        return Encoded(memory=memory, final=final, mask=mask.unsqueeze(1))  # mask (B, 1, S)

    def init_state(self, enc: Encoded) -> Tensor:
        return torch.tanh(self.bridge(enc.final))  # (B, 2H)

    def step(self, y_prev: Tensor, state: Tensor, enc: Encoded, *, trace: bool) -> _Step:
        """One decoder step from y_{t-1} (B,) and s_{t-1} (B, 2H); see the module docstring."""
        # 1) The query is the previous decoder state.
        query = state
        # 2–4) Scores, weights and context from the shared core (the baseline: the fixed vector).
        if self.attention is None:
            context, att = enc.final, None
        else:
            ctx, att = self.attention(
                query=query.unsqueeze(1),  # (B, 1, 2H)
                key=enc.memory,
                value=enc.memory,
                mask=enc.mask,
                return_trace=trace,
            )
            context = ctx.squeeze(1)  # (B, 1, 2H) → (B, 2H)
        # 5) New decoder state.
        emb = self.tgt_emb(y_prev)  # (B, E)
        new_state = self.cell(torch.cat([emb, context], -1), state)
        # 6) Output distribution.
        logits = self.out(torch.cat([new_state, context, emb], -1))  # (B, V)
        return _Step(logits=logits, query=query, context=context, state=new_state, attention=att)

    def forward(
        self,
        src: Tensor,
        src_lens: Tensor,
        tgt_in: Tensor,
        *,
        return_trace: bool = False,
        embedded: Tensor | None = None,
        patch: Patch | None = None,
    ) -> tuple[Tensor, DecodeTrace | None]:
        """Teacher forcing: tgt_in (B, T) = <s> y_1 … y_{T-1}. Returns logits (B, T, V).
        ``embedded``: the source embeddings to read (see `encode`); ``patch``: a ``memory`` `Patch`
        overwriting annotations per batch row (`models.patching`)."""
        enc = self.encode(src, src_lens, embedded=embedded)
        if patch is not None:
            enc = replace(enc, memory=patch.write("memory", 0, enc.memory))
        state, steps = self.init_state(enc), []
        for t in range(tgt_in.shape[1]):
            s = self.step(tgt_in[:, t], state, enc, trace=return_trace)
            steps.append(s)
            state = s.state
        logits = torch.stack([s.logits for s in steps], 1)  # (B, T, V)
        if not return_trace:
            return logits, None
        forced = torch.cat([tgt_in[:, 1:], torch.full_like(tgt_in[:, :1], EOS_ID)], 1)
        return logits, _stack(steps, forced)

    def greedy(
        self, src: Tensor, src_lens: Tensor, *, max_len: int, return_trace: bool = False
    ) -> tuple[Tensor, DecodeTrace | None]:
        """Batched greedy decoding. Returns ids (B, T) (after </s>: </s> repeated) and a trace."""
        enc = self.encode(src, src_lens)
        step, state = self._search_step(enc, trace=return_trace), self.init_state(enc)
        ids, steps = greedy_search(step, state, batch=len(src), max_len=max_len, device=src.device)
        return ids, (_stack(steps, ids) if return_trace else None)

    def _search_step(self, enc: Encoded, *, trace: bool):
        """A `models.decoding` step over ``enc`` (1 or n rows; expanded to the n hypotheses)."""

        def step(y: Tensor, state: Tensor):
            n = len(y)
            rows = Encoded(
                memory=enc.memory.expand(n, -1, -1),
                final=enc.final.expand(n, -1),
                mask=enc.mask.expand(n, -1, -1),
            )
            s = self.step(y, state, rows, trace=trace)
            return s.logits, s.state, s

        return step

    def beam(self, src: Tensor, *, k: int, max_len: int) -> list[Hypothesis]:
        """Beam search for one source (1, S). Every hypothesis keeps its own attention per step.

        Finished hypotheses are ranked by length-normalised log probability (log p / length).
        """
        if src.shape[0] != 1:
            raise ValueError("beam() takes one source sentence, shape (1, S).")
        enc1 = self.encode(src, torch.tensor([src.shape[1]]))
        step, state = self._search_step(enc1, trace=True), self.init_state(enc1)
        found = beam_search(step, state, k=k, max_len=max_len, device=src.device)
        return [
            Hypothesis(toks, lp, _stack(hist, torch.tensor([toks], device=src.device)))
            for toks, lp, hist in found
        ]


# Training: what `python -m training --family seq2seq` reads (the loop itself is training/loop.py).
# A variant is a scoring function of the shared core, or "none": the fixed-vector baseline.
VARIANTS: dict[str, dict] = {s: {"scoring": s} for s in SCORINGS + ("none",)}
# Per task: data size, steps, batch, learning rate, the config widths. Minutes on 2 CPU cores.
TRAINING: dict[str, dict] = {
    "dates": dict(n_train=20000, steps=2000, batch=64, lr=3e-3, config=dict(emb_dim=32, enc_hidden=64)),
    "translation": dict(n_train=40000, steps=4000, batch=64, lr=3e-3, config=dict(emb_dim=48, enc_hidden=80)),
}


def card_fields(task: str, variant: str) -> dict:
    """Model-card fields beyond the shared ones: the scoring function, by the name cards have used."""
    return {"scoring": VARIANTS[variant]["scoring"]}
