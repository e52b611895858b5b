"""Attention vs importance for the encoder–decoder transformer, on one source (Abnar & Zuidema 2020).

The output is the model's own greedy output, then teacher-forced, so every ablated copy is scored
on the same prefix <s> y_1 … y_{t-1}. Per output token y_t and source position j:

- **importance**: log p(y_t) − log p(y_t | source token j replaced by ``<unk>``); all S ablated
  copies and the input itself run as one batch of S + 1;
- **raw L{l}**: the cross-attention weight of decoder layer l from y_t's query to j (mean over heads,
  or one head: ``raw L{l} H{h}``);
- **rollout L{l}**: how much of the decoder state at y_t comes from source token j through layer l.
  The encoder's rollout R (`analysis.stats.rollout`, last layer: memory row i mixes source tokens by
  R[i]) composes with the decoder's layers: per layer, self-attention mixes decoder positions
  (0.5·mean-head A + 0.5·I, rows renormalised, as rollout), then cross-attention's residual keeps
  half the state and adds half of the memory it reads: D ← 0.5·D + 0.5·C̄_l R, from D = 0 (the decoder's
  inputs carry no source). Through layer 0 this is last-layer cross-attention × encoder rollout;
- **grad × input**: Σ_d (e_j − e_unk)·∂log p(y_t)/∂e_j, e the scaled token embedding (the position
  encoding is the same in both), the first-order estimate of the very ablation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.family import ImportanceTab, Served
from analysis.importance import (
    CARD_KEY,
    GRADIENT_X_INPUT,
    Comparison,
    card_entry,
    compare,
    gradient_x_input,
    layered_measures,
    no_op_ablations,
    without_no_ops,
)
from analysis.protocol import to_numpy
from analysis.stats import rollout
from models.attention import NO_INTERVENTION
from models.checkpoints import ASSETS, trained, write_entry
from models.transformer import VARIANTS, Transformer, TransformerConfig
from tasks import TASKS, Task
from tasks import held_out as held_out_examples
from tasks.common import BOS_ID, UNK, UNK_ID, Example, Vocab, length_to_eos

DEFINITION = {
    "importance": (
        "log p(y_t) − log p(y_t with source token j replaced by <unk>), teacher-forced on the model's own "
        "greedy output; one comparison per output token (</s> included) over every source token"
    ),
    "replacement": f"{UNK} (id {UNK_ID}); a source token already read as <unk> has importance 0",
    "measures": {
        "raw L{l}": "cross-attention weight of decoder layer l from y_t's query to source token j, head mean",
        "rollout L{l}": (
            "decoder rollout through layer l: D ← Â_self D, then D ← 0.5 D + 0.5 C̄_l R_enc, from D = 0, with "
            "Â = rows of 0.5·mean-head self-attention + 0.5·I renormalised, C̄ mean-head cross-attention and "
            "R_enc the encoder's rollout (analysis.stats.rollout) through its last layer"
        ),
        GRADIENT_X_INPUT: (
            "Σ_d (e_j − e_<unk>) ∂log p(y_t)/∂e_j, e = token embedding × √d_model (positions unchanged)"
        ),
    },
}


@dataclass(frozen=True)
class TransformerImportance:
    """One source: T output tokens × S source positions of importance and of every measure."""

    source: tuple[str, ...]  # (S,)
    output: tuple[str, ...]  # (T,) the model's greedy output, </s> included when reached
    importance: np.ndarray  # (T, S) drop in log p(y_t) when source j alone is <unk>
    cross: np.ndarray  # (L, h, T, S) cross-attention weights of the unablated run
    rollout: np.ndarray  # (L, T, S) source attribution of the decoder state through layer l
    grad_x_input: np.ndarray  # (T, S)

    def comparison(self, t: int, head: int | None = None) -> Comparison:
        """Output token ``t`` against every measure: raw cross-attention per layer (mean over heads,
        or ``head``), rollout per layer, grad × input."""
        if not 0 <= t < len(self.output):
            raise ValueError(f"output token {t} is out of range: the output has {len(self.output)} tokens.")
        measures = layered_measures(self.cross[:, :, t], self.rollout[:, t], self.grad_x_input[t], head)
        return compare(self.source, self.importance[t], measures, quantity=f"log p({self.output[t]!r})")

    def comparisons(self, head: int | None = None) -> list[Comparison]:
        return [self.comparison(t, head) for t in range(len(self.output))]


def decoder_rollout(encoder: np.ndarray, decoder_self: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """Rollout through an encoder–decoder (module docstring): encoder (L_e, h, S, S), decoder_self
    (L, h, T, T), cross (L, h, T, S) → (L, T, S), entry l through decoder layer l."""
    memory = rollout(encoder)[-1]  # (S, S): memory row i as a mix of source tokens
    t_len = decoder_self.shape[-1]
    out = np.empty((cross.shape[0], t_len, cross.shape[-1]), dtype=np.float32)
    d = np.zeros((t_len, cross.shape[-1]), dtype=np.float64)  # (T, S)
    for layer in range(cross.shape[0]):
        a = 0.5 * decoder_self[layer].mean(0) + 0.5 * np.eye(t_len)  # (T, T)
        a = a / a.sum(-1, keepdims=True)
        d = a @ d  # self-attention mixes decoder positions
        d = 0.5 * d + 0.5 * cross[layer].mean(0) @ memory  # (T, S) @ (S, S): the residual keeps half
        out[layer] = d
    return out


def output_ids(model: Transformer, task: Task, src_ids: list[int]) -> list[int]:
    """The model's own greedy output up to and including </s>."""
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)
    with torch.inference_mode():
        ids, _ = model.greedy(src, torch.tensor([len(src_ids)]), max_len=task.max_target)
    ids = ids[0].tolist()
    return ids[: length_to_eos(ids)]


def _log_probs(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """(B, T, V) logits → (B, T) log p of ``rows[t]`` at each step."""
    logp = torch.log_softmax(logits.float(), -1)
    index = torch.tensor(rows, device=logits.device)[None, :, None].expand(logp.shape[0], -1, 1)
    return logp.gather(-1, index).squeeze(-1)


def gradient_times_input(model: Transformer, src_ids: list[int], out_ids: list[int]) -> np.ndarray:
    """(T, S) grad × input of each log p(y_t) for each source token against ``<unk>``.

    The encoder is run here from the token embeddings (its layers, mask and norm are the model's own)
    so that they can be a leaf of the graph; `tests` check its logits equal the model's. Row t of a
    batch of T copies carries output token t's objective: one backward gives every row's gradient."""
    device = next(model.parameters()).device
    t_len, s_len, cfg = len(out_ids), len(src_ids), model.cfg
    src = torch.tensor([src_ids] * t_len, device=device)  # (T, S)
    lens = torch.full((t_len,), s_len)
    tgt_in = torch.tensor([[BOS_ID, *out_ids[:-1]]] * t_len, device=device)  # (T, T)
    scale = math.sqrt(cfg.d_model)
    with torch.enable_grad():
        # 1) Scaled token embeddings as a leaf, positions added as in `Transformer.embed`.
        tokens = (model.src_emb(src) * scale).detach().requires_grad_()  # (T, S, d)
        x = tokens + model.pe[:s_len]
        # 2) The encoder's layers and final norm, then the model's own decoder.
        mask = model.source_mask(lens, s_len, NO_INTERVENTION, device)
        for i, layer in enumerate(model.encoder):
            kw = NO_INTERVENTION.attention_kwargs("encoder", i, cfg.n_heads, device, return_trace=False)
            x, *_ = layer(x, self_mask=mask, kw_self=kw)  # (x, traces …): only x is read
        logits, *_ = model.decode(tgt_in, model.enc_norm(x), mask, NO_INTERVENTION, False)  # (T, T, V)
        # 3) Copy t's objective is log p(y_t): the diagonal of the (copy, step) table.
        objective = _log_probs(logits, out_ids).diagonal().sum()
        (gradient,) = torch.autograd.grad(objective, tokens)  # (T, S, d)
    unk = to_numpy(model.src_emb.weight[UNK_ID] * scale)  # (d,)
    return gradient_x_input(to_numpy(gradient), to_numpy(tokens[0]), unk).astype(np.float32)  # (T, S)


def measure(
    model: Transformer, task: Task, src: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab
) -> TransformerImportance:
    """Importance by ablation and every attention measure of the same positions, on ``src``."""
    if not src:
        raise ValueError("the source is empty: type an input to measure its tokens' importance.")
    device = next(model.parameters()).device
    src_ids = src_vocab.encode(src)
    s_len = len(src_ids)
    # 1) The model's own output, then teacher forcing on it: one fixed prefix for every copy.
    out_ids = output_ids(model, task, src_ids)
    tgt_in = [BOS_ID, *out_ids[:-1]]
    # 2) The input and its S ablated copies (source token j → <unk>) in one batch of S + 1.
    batch = torch.tensor([src_ids] * (s_len + 1), device=device)  # (S + 1, S)
    batch[torch.arange(1, s_len + 1), torch.arange(s_len)] = UNK_ID
    with torch.inference_mode():
        logits, trace = model(
            batch,
            torch.full((s_len + 1,), s_len),
            torch.tensor([tgt_in] * (s_len + 1), device=device),
            return_trace=True,
        )
        picked = _log_probs(logits, out_ids)  # (S + 1, T)
    importance = to_numpy(picked[0][:, None] - picked[1:].T)  # (T, S)
    no_op = no_op_ablations(to_numpy(batch[0]), to_numpy(batch[1:]))  # (S,) a <unk> replaced by <unk>
    # 3) Attention of the unablated run (batch row 0), and rollout through encoder and decoder.
    weights = {
        b: np.stack([to_numpy(t.heads.weights[0]) for t in trace.block(b)])
        for b in ("encoder", "decoder_self", "cross")
    }
    return TransformerImportance(
        source=tuple(src),
        output=tuple(tgt_vocab.tokens[i] for i in out_ids),
        importance=without_no_ops(importance, no_op),
        cross=weights["cross"],
        rollout=decoder_rollout(weights["encoder"], weights["decoder_self"], weights["cross"]),
        grad_x_input=without_no_ops(gradient_times_input(model, src_ids, out_ids), no_op),
    )


def held_out(
    model: Transformer, task: Task, examples: Sequence[Example], src_vocab: Vocab, tgt_vocab: Vocab
) -> dict:
    """The card's entry: per measure the mean Spearman over every (held-out source, output token)."""
    per_input = [measure(model, task, ex.src, src_vocab, tgt_vocab).comparisons() for ex in examples]
    entry = card_entry(
        per_input,
        split=f"the first {len(examples)} examples of the {task.name} test split (tasks.held_out)",
        definition=DEFINITION,
    )
    return entry | {"output_tokens": entry["comparisons"]}


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _served_measure(loaded, src: tuple[str, ...]) -> TransformerImportance:
    model, card, src_vocab, tgt_vocab = loaded
    return measure(model, TASKS[card["task"]], src, src_vocab, tgt_vocab)


SERVED = {"importance": Served(_served_measure, max_entries=64, spinner="Ablating each source token…")}
TAB = ImportanceTab(
    key="tf",
    query="output token",
    layers_heads=lambda result: result.cross.shape[:2],
    explain=lambda loaded, inputs, result: (
        "Importance of a source token = the drop in log p of one output token (the model's own greedy "
        "output, teacher-forced so the prefix stays fixed) when that source token alone becomes `<unk>`. "
        "Raw = cross-attention from that output token's query; rollout composes the encoder's rollout with "
        "the decoder's layers (cross-attention × encoder rollout, self-attention and residuals mixed in)."
    ),
)


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every transformer checkpoint in ``folder`` (both tasks, every variant): its held-out entry over
    every output token of the first ``n`` test sources, written into its card."""
    written = {}
    for name, task, model, src_vocab, tgt_vocab in trained("transformer", VARIANTS, Transformer,
                                                           TransformerConfig, folder):  # fmt: skip
        entry = held_out(model, task, held_out_examples(task.name, n), src_vocab, tgt_vocab)
        written |= write_entry(name, CARD_KEY, entry, folder)
    return written
