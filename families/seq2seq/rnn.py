"""The RNN through time: the seq2seq encoder unrolled step by step, its GRU gates recomposed from the
model's own weights, and how strongly each output token's log-probability depends on each input
vector (the gradient by distance). No Streamlit; pure torch in, frozen numpy out.

Nothing here touches the module: the gates are recomputed from its parameters as plain tensors, and
the gradients come from `torch.autograd.grad` on an embedding leaf of the call's own (no `.grad` is
written, no hook is added), so one cached model can serve every thread.

PyTorch's GRU, one step from h_{i-1} (what `unroll_encoder` recomposes; Cho et al. 2014):
  r_i = σ(W_ir x_i + b_ir + W_hr h_{i-1} + b_hr)          reset gate
  z_i = σ(W_iz x_i + b_iz + W_hz h_{i-1} + b_hz)          update gate
  n_i = tanh(W_in x_i + b_in + r_i ⊙ (W_hn h_{i-1} + b_hn))  candidate state
  h_i = (1 − z_i) ⊙ n_i + z_i ⊙ h_{i-1}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from analysis.protocol import to_numpy
from models.checkpoints import ASSETS, trained, write_entry
from models.seq2seq import VARIANTS, Seq2Seq, Seq2SeqConfig
from tasks import Task, held_out
from tasks.common import BOS_ID, Example, Vocab, length_to_eos

GATES = ("r", "z", "n")  # nn.GRU stacks each weight as [W_r; W_z; W_n] along dim 0
DISTANCE = (
    "|t − i|, in tokens: t is the output step (0-based; y_0 is the first output token, </s> "
    "included) and i the source position (0-based). No alignment is applied: source and output "
    "lengths differ and the mapping need not be monotone (a date's day, month and year are "
    "reordered), so the distance counts positions, not aligned words."
)
GRADIENT = (
    "‖∂ log p(y_t) / ∂ e_i‖₂: the L2 norm, over the embedding width, of the gradient of the log "
    "probability of output token y_t with respect to the source embedding vector e_i"
)
TEACHER_FORCING = "teacher-forced on the model's own greedy output (</s> included), not on the reference"


# --- The encoder unrolled ------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedWeight:
    """One parameter tensor the encoder applies at every step."""

    name: str  # the model's own parameter name, e.g. "encoder.weight_hh_l0"
    shape: tuple[int, ...]
    role: str  # what it computes at each step


@dataclass(frozen=True)
class DirectionUnrolled:
    """One direction of the encoder, every step, indexed by source position i (S steps, H units)."""

    direction: str  # "forward" (reads i = 0 … S−1) or "backward" (reads i = S−1 … 0)
    hidden: np.ndarray  # (S, H) h_i as nn.GRU itself returned it
    update: np.ndarray  # (S, H) z_i, recomposed from the weights
    reset: np.ndarray  # (S, H) r_i, recomposed
    candidate: np.ndarray  # (S, H) n_i, recomposed
    recomposed: np.ndarray  # (S, H) (1 − z_i) ⊙ n_i + z_i ⊙ h_{i-1}, chained from h = 0
    max_abs_diff: float  # max |recomposed − hidden|


@dataclass(frozen=True)
class EncoderUnrolled:
    """The bidirectional encoder on one source: the weights it shares across steps and each direction."""

    source: tuple[str, ...]  # the S source tokens
    shared: tuple[SharedWeight, ...]
    directions: tuple[DirectionUnrolled, ...]  # forward, backward
    final: np.ndarray  # (2H,) the summary the no-attention decoder reads: [h→ at S−1; h← at 0]

    @property
    def max_abs_diff(self) -> float:
        return max(d.max_abs_diff for d in self.directions)


def shared_weights(model: Seq2Seq) -> tuple[SharedWeight, ...]:
    """The source embedding and every encoder parameter, named and shaped as the model holds them."""
    gru, hidden = model.encoder, model.encoder.hidden_size
    rows = f"rows [0:{hidden}] r, [{hidden}:{2 * hidden}] z, [{2 * hidden}:{3 * hidden}] n"
    roles = {
        "weight_ih": f"input → gates W_i· x_i ({rows})",
        "weight_hh": f"state → gates W_h· h_(i−1) ({rows})",
        "bias_ih": "input-side gate biases b_i·",
        "bias_hh": "state-side gate biases b_h·",
    }
    found = [
        SharedWeight("src_emb.weight", tuple(model.src_emb.weight.shape), "token id → x_i (a row lookup)")
    ]
    for name, param in gru.named_parameters():
        kind, _, _ = name.rpartition("_l")  # "weight_ih_l0_reverse" → "weight_ih"
        side = "backward" if name.endswith("_reverse") else "forward"
        found.append(SharedWeight(f"encoder.{name}", tuple(param.shape), f"{side}: {roles[kind]}"))
    return tuple(found)


def _unroll(gru: nn.GRU, x: Tensor, suffix: str, order: Sequence[int]) -> tuple[Tensor, ...]:
    """One direction's gates and states from its own weights, chained from h = 0 in ``order``.
    x (S, E) → r, z, n, h each (S, H), indexed by source position."""
    hidden = gru.hidden_size
    w_ih = getattr(gru, f"weight_ih_l0{suffix}")  # (3H, E)
    w_hh = getattr(gru, f"weight_hh_l0{suffix}")  # (3H, H)
    b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")  # (3H,)
    # 1) The input's share of every gate, for all steps at once: it does not depend on h.
    from_input = x @ w_ih.T + b_ih  # (S, E) @ (E, 3H) → (S, 3H)
    gates = {g: torch.zeros(len(x), hidden, dtype=x.dtype) for g in (*GATES, "h")}
    h = torch.zeros(hidden, dtype=x.dtype)
    for i in order:
        # 2) The state's share, with the same W_hh and b_hh at every step.
        from_state = w_hh @ h + b_hh  # (3H, H) @ (H,) → (3H,)
        gi, gh = from_input[i].split(hidden), from_state.split(hidden)  # 3 × (H,), order r, z, n
        # 3) Reset and update gates, the candidate state, the new state.
        r = torch.sigmoid(gi[0] + gh[0])
        z = torch.sigmoid(gi[1] + gh[1])
        n = torch.tanh(gi[2] + r * gh[2])
        h = (1 - z) * n + z * h
        for g, value in zip((*GATES, "h"), (r, z, n, h), strict=True):
            gates[g][i] = value
    return gates["r"], gates["z"], gates["n"], gates["h"]


def unroll_encoder(model: Seq2Seq, src: tuple[str, ...], src_vocab: Vocab) -> EncoderUnrolled:
    """The encoder on ``src``: nn.GRU's own states per step, and the gates recomposed from its weights
    (checked: the recomposed states against nn.GRU's, per direction)."""
    gru = model.encoder
    if gru.num_layers != 1 or not gru.bias:
        raise ValueError(
            f"unroll_encoder recomposes a one-layer GRU with biases; this encoder has "
            f"num_layers={gru.num_layers}, bias={gru.bias}. Build the model with Seq2SeqConfig as shipped."
        )
    if not src:
        raise ValueError("unroll_encoder needs at least one source token; type a source text.")
    device = next(model.parameters()).device
    ids = torch.tensor([src_vocab.encode(src)], device=device)  # (1, S)
    hidden, steps = gru.hidden_size, len(src)
    with torch.inference_mode():
        enc = model.encode(ids, torch.tensor([steps]))
        x = model.src_emb(ids)[0]  # (S, E)
        directions = []
        for label, suffix, order, half in (
            ("forward", "", range(steps), slice(0, hidden)),
            ("backward", "_reverse", range(steps - 1, -1, -1), slice(hidden, 2 * hidden)),
        ):
            r, z, n, h = _unroll(gru, x, suffix, order)
            own = enc.memory[0, :, half]  # (S, H): this direction's half of the annotations
            directions.append(
                DirectionUnrolled(
                    direction=label,
                    hidden=to_numpy(own),
                    update=to_numpy(z),
                    reset=to_numpy(r),
                    candidate=to_numpy(n),
                    recomposed=to_numpy(h),
                    max_abs_diff=float((h - own).abs().max()),
                )
            )
        return EncoderUnrolled(
            source=src,
            shared=shared_weights(model),
            directions=tuple(directions),
            final=to_numpy(enc.final[0]),
        )


# --- Gradient by distance ------------------------------------------------------------------------
@dataclass(frozen=True)
class DistanceCurve:
    """Mean gradient norm by distance |t − i| (see `DISTANCE`), over every (example, t, i) pair."""

    distance: np.ndarray  # (D,) 0, 1, …, D−1
    mean_norm: np.ndarray  # (D,) mean ‖∂ log p(y_t) / ∂ e_i‖₂ over the pairs at that distance
    n_pairs: np.ndarray  # (D,) how many (example, t, i) pairs each mean is over


@dataclass(frozen=True)
class GradientRun:
    """One source through one model: the gradient of each output token's log p wrt each input vector."""

    source: tuple[str, ...]  # S tokens
    output: tuple[str, ...]  # T tokens: the model's greedy output, the tokens forced
    norms: np.ndarray  # (T, S) ‖∂ log p(y_t) / ∂ e_i‖₂
    curve: DistanceCurve


def gradient_norms(model: Seq2Seq, src: Tensor, src_lens: Tensor, out: Tensor) -> Tensor:
    """‖∂ log p(y_t) / ∂ e_i‖₂ for a batch, teacher-forced on ``out``. src (B, S) ids, src_lens (B,),
    out (B, T) the tokens to score (</s> repeated after the end is fine). Returns (B, T, S); pairs
    past a row's first </s> or its source length are NaN. The model's dtype sets the precision."""
    batch, t_len = out.shape
    s_len = src.shape[1]
    out_lens = torch.tensor([length_to_eos(row) for row in out.tolist()])  # (B,)
    with torch.inference_mode(False), torch.enable_grad():
        # 1) T copies of each source's embeddings, each a leaf of this call's own graph (the model's
        #    weights stay untouched): copy (b, t) is differentiated for log p(y_t) of row b only.
        embedded = model.src_emb(src).detach()  # (B, S, E)
        leaves = embedded.repeat_interleave(t_len, 0).requires_grad_(True)  # (B·T, S, E)
        # 2) Teacher forcing: <s> y_0 … y_{T-2} in, log p(y_t) out, for every copy.
        tgt_in = torch.cat([torch.full_like(out[:, :1], BOS_ID), out[:, :-1]], 1)  # (B, T)
        copies = torch.arange(batch * t_len, device=out.device)
        logits, _ = model(
            src.repeat_interleave(t_len, 0),
            src_lens.repeat_interleave(t_len, 0),
            tgt_in.repeat_interleave(t_len, 0),
            embedded=leaves,
        )  # (B·T, T, V)
        log_p = torch.log_softmax(logits, -1)[copies, copies % t_len, out.reshape(-1)]  # (B·T,)
        # 3) One backward pass: the copies share no input, so the sum's gradient separates them.
        (grad,) = torch.autograd.grad(log_p.sum(), leaves)  # (B·T, S, E)
    norms = grad.detach().norm(dim=-1).reshape(batch, t_len, s_len)  # (B, T, S)
    outside = (torch.arange(t_len)[None, :, None] >= out_lens[:, None, None]) | (
        torch.arange(s_len)[None, None, :] >= src_lens.cpu()[:, None, None]
    )
    return norms.cpu().masked_fill(outside, float("nan"))


def _distance_sums(norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, S) norms with NaN outside → per distance |t − i|: the sum of norms and the pair count."""
    _, t_len, s_len = norms.shape
    distance = np.abs(np.arange(t_len)[:, None] - np.arange(s_len)[None, :])  # (T, S)
    distance = np.broadcast_to(distance, norms.shape)
    valid = ~np.isnan(norms)
    sums = np.bincount(distance[valid], weights=norms[valid].astype(np.float64))
    return sums, np.bincount(distance[valid], minlength=len(sums))


def _curve(sums: np.ndarray, counts: np.ndarray) -> DistanceCurve:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return DistanceCurve(distance=np.arange(len(sums)), mean_norm=mean, n_pairs=counts.astype(np.int64))


def distance_curve(norms: np.ndarray) -> DistanceCurve:
    """(B, T, S) or (T, S) norms (NaN outside) → the mean norm at each distance |t − i|."""
    norms = np.asarray(norms)
    return _curve(*_distance_sums(norms[None] if norms.ndim == 2 else norms))


def _greedy(model: Seq2Seq, src: Tensor, src_lens: Tensor, task: Task) -> Tensor:
    with torch.inference_mode():
        out, _ = model.greedy(src, src_lens, max_len=task.max_target)
    return out.clone()  # (B, T), a normal tensor: autograd may read it


def gradient_run(
    model: Seq2Seq, task: Task, src: tuple[str, ...], src_vocab: Vocab, tgt_vocab: Vocab
) -> GradientRun:
    """The gradient map of ``src`` through ``model``, teacher-forced on the model's own greedy output."""
    if not src:
        raise ValueError("gradient_run needs at least one source token; type a source text.")
    device = next(model.parameters()).device
    ids, lens = torch.tensor([src_vocab.encode(src)], device=device), torch.tensor([len(src)])  # (1, S), (1,)
    out = _greedy(model, ids, lens, task)  # (1, T)
    t_len = length_to_eos(out[0].tolist())
    norms = gradient_norms(model, ids, lens, out[:, :t_len])[0].numpy()  # (T, S)
    output = tuple(tgt_vocab.tokens[i] for i in out[0, :t_len].tolist())
    return GradientRun(source=src, output=output, norms=norms, curve=distance_curve(norms))


def held_out_curve(
    model: Seq2Seq,
    task: Task,
    examples: Sequence[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    batch: int = 50,
) -> DistanceCurve:
    """The gradient-by-distance curve averaged over every (example, t, i) pair of ``examples``."""
    device = next(model.parameters()).device
    total_sums, total_counts = np.zeros(0), np.zeros(0, dtype=np.int64)
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        rows = [src_vocab.encode(ex.src) for ex in chunk]
        width = max(map(len, rows))
        src = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)  # (B, S)
        lens = torch.tensor([len(r) for r in rows])
        norms = gradient_norms(model, src, lens, _greedy(model, src, lens, task)).numpy()
        sums, counts = _distance_sums(norms)
        size = max(len(sums), len(total_sums))
        total_sums = np.pad(total_sums, (0, size - len(total_sums))) + np.pad(sums, (0, size - len(sums)))
        total_counts = np.pad(total_counts, (0, size - len(total_counts))) + np.pad(
            counts, (0, size - len(counts))
        )
    return _curve(total_sums, total_counts)


def curve_card(curve: DistanceCurve, n_examples: int) -> dict:
    """The model-card entry ``gradient_by_distance`` for a held-out curve."""
    return {
        "definition": DISTANCE,
        "gradient": GRADIENT,
        "teacher_forcing": TEACHER_FORCING,
        "split": "test (the held-out examples the card is scored on, from the first)",
        "n": n_examples,
        "distance": curve.distance.tolist(),
        "mean_norm": [None if np.isnan(v) else float(v) for v in curve.mean_norm],
        "n_pairs": curve.n_pairs.tolist(),
    }


def curve_from_card(entry: dict) -> DistanceCurve:
    """A card's ``gradient_by_distance`` entry back as a curve."""
    return DistanceCurve(
        distance=np.asarray(entry["distance"], dtype=np.int64),
        mean_norm=np.asarray([np.nan if v is None else v for v in entry["mean_norm"]], dtype=np.float64),
        n_pairs=np.asarray(entry["n_pairs"], dtype=np.int64),
    )


def ratio_at_longest(
    attention: DistanceCurve, baseline: DistanceCurve, *, min_pairs: int = 1
) -> tuple[int, float] | None:
    """The longest distance both curves have at least ``min_pairs`` pairs at, and the attention
    model's mean norm there divided by the baseline's; None when they share no such distance."""
    size = min(len(attention.distance), len(baseline.distance))
    both = (attention.n_pairs[:size] >= min_pairs) & (baseline.n_pairs[:size] >= min_pairs)
    if not both.any():
        return None
    d = int(np.flatnonzero(both)[-1])
    return d, float(attention.mean_norm[d] / baseline.mean_norm[d])


CARD_KEY = "gradient_by_distance"  # the card key `python -m training.measure gradient-distance` writes


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every seq2seq checkpoint in ``folder`` (both tasks, every variant, the baseline included): the
    mean ‖∂ log p(y_t) / ∂ e_i‖ by distance |t − i| over its first ``n`` held-out examples (see
    `DISTANCE`), written into its card. Returns name → entry."""
    written = {}
    checkpoints = trained("seq2seq", VARIANTS, Seq2Seq, Seq2SeqConfig, folder)
    for name, task, model, src_vocab, tgt_vocab in checkpoints:
        curve = held_out_curve(model, task, held_out(task.name, n), src_vocab, tgt_vocab)
        written |= write_entry(name, CARD_KEY, curve_card(curve, n), folder)
    return written
