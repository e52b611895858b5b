"""Attention vs importance for the seq2seq family: does α_t say which source tokens output token t
needed? (Jain & Wallace 2019; Abnar & Zuidema 2020.) Numpy out, no Streamlit.

On one source and the model's own output y_1 … y_T (teacher-forced, so the prefix stays fixed):
- **importance** of source token i for output token t: log p(y_t) − log p(y_t | token i replaced by
  <unk>), all S ablations in one batched forward;
- **raw attention** α_t,i: the model's one single-head, single-layer alignment — there are no layers
  to roll out, so rollout would be α itself;
- **gradient × input**: Σ_d (e_i − e_<unk>)_d ∂ log p(y_t)/∂e_i,d on the source embeddings e_i, the
  first-order estimate of the very same <unk> ablation (`analysis.importance.gradient_x_input`);
- for held-out examples whose output is the gold target, how each ranking meets the gold alignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.family import ImportanceTab, Served
from analysis.importance import CARD_KEY, GRADIENT_X_INPUT, PerToken, card_entry, gradient_x_input, spearman
from analysis.protocol import to_numpy
from families.seq2seq.runner import run
from models.checkpoints import ASSETS, trained, write_entry
from models.seq2seq import VARIANTS, Seq2Seq, Seq2SeqConfig
from tasks import Task
from tasks import held_out as held_out_examples
from tasks.common import BOS_ID, EOS, UNK, UNK_ID, Example, Vocab

ATTENTION = "raw attention α"
IMPORTANCE = "importance"  # the ablation's own ranking, in the gold comparison
REPLACEMENT = UNK  # what an ablated source token becomes

DEFINITION = {
    "importance": "log p(y_t) − log p(y_t | source token i replaced by <unk>), per output token t "
    "(</s> included) and source position i; teacher-forced on the model's own greedy output",
    "ablated": "one source token at a time",
    "replacement": "<unk> (its embedding); a source token already read as <unk> has importance 0",
    "quantity": "log-probability of the output token y_t",
    "measures": {
        ATTENTION: "α_t,i, the decoder's single-head, single-layer attention at step t (no rollout: "
        "one attention layer, so rollout would be α itself)",
        GRADIENT_X_INPUT: "Σ_d (e_i − e_<unk>)_d ∂ log p(y_t)/∂e_i,d on the source embeddings e_i",
    },
    "comparisons": "one per (example, output token) pair, over the example's source positions",
}
GOLD_DEFINITION = {
    "examples": "held-out examples whose greedy output is the gold target (the gold links describe it)",
    "tokens": "output tokens with at least one gold link (a date's '-' and </s> have none)",
    "top_is_gold_link": "share of those tokens whose top-ranked source position (argmax; importance, "
    "α or gradient × input) is a gold link, sure or possible",
    "spearman_with_gold": "mean Spearman of each ranking with the token's gold row (2 on sure links, 1 on "
    "possible-only links, 0 elsewhere); n = tokens with a non-constant ranking and row",
}


def _log_p(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (T,) → (B, T) log p of each target, in float64: a confident model's
    log p sits within 1e-6 of 0, where float32 would round small ablation effects away."""
    log_probs = torch.log_softmax(logits.double(), -1)  # (B, T, V)
    return log_probs.gather(-1, targets.expand(len(logits), -1).unsqueeze(-1)).squeeze(-1)


def importance(
    model: Seq2Seq, src: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, output: Sequence[str]
) -> PerToken:
    """Importance by <unk> ablation, α and gradient × input of every source token for every output
    token, teacher-forced on ``output`` (the model's own, "</s>" included when it was reached).
    Rows are output tokens (T), columns source tokens (S); the baseline without attention has
    gradient × input only."""
    if not src or not output:
        raise ValueError("importance needs a source and an output: pass a run's source and its output.")
    device = next(model.parameters()).device
    n_src, n_out = len(src), len(output)
    # 1) Ids: the source (S,), the forced decoder input <s> y_1 … y_{T-1} (1, T) and targets (T,).
    src_ids = torch.tensor(src_vocab.encode(src), device=device)  # (S,)
    out_ids = torch.tensor(tgt_vocab.encode(output), device=device)  # (T,)
    tgt_in = torch.cat([torch.tensor([BOS_ID], device=device), out_ids[:-1]])[None]  # (1, T)
    lens = torch.tensor([n_src])
    # 2) Row 0: the source as it is; row 1 + i: source token i replaced by <unk>. One forward.
    copies = src_ids.repeat(n_src + 1, 1)  # (S+1, S)
    copies[torch.arange(n_src) + 1, torch.arange(n_src)] = UNK_ID
    with torch.inference_mode():
        logits, trace = model(
            copies, lens.expand(n_src + 1), tgt_in.expand(n_src + 1, -1), return_trace=True
        )  # (S+1, T, V)
        log_p = _log_p(logits, out_ids)  # (S+1, T)
    measures = {} if trace.weights is None else {ATTENTION: to_numpy(trace.weights[0])}  # (T, S)
    # 3) Gradient × input: T copies of the embedded source; copy t is differentiated for log p(y_t),
    # so one backward gives every row. autograd.grad writes no .grad onto the shared model.
    embedded = model.src_emb(src_ids).detach()  # (S, E)
    leaves = embedded.expand(n_out, -1, -1).clone().requires_grad_()  # (T, S, E)
    # cuDNN runs a GRU backward only in training mode; off for this call on a GPU (CPU: no change).
    no_cudnn = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else nullcontext()
    with torch.inference_mode(False), torch.enable_grad(), no_cudnn:
        grad_logits, _ = model(
            src_ids.expand(n_out, -1), lens.expand(n_out), tgt_in.expand(n_out, -1), embedded=leaves
        )  # (T, T, V)
        own = _log_p(grad_logits, out_ids).diagonal()  # (T,) copy t's log p(y_t)
        (grad,) = torch.autograd.grad(own.sum(), leaves)  # (T, S, E)
    unk = to_numpy(model.src_emb.weight[UNK_ID])  # (E,)
    measures[GRADIENT_X_INPUT] = gradient_x_input(to_numpy(grad), to_numpy(embedded), unk)  # (T, S)
    # A <unk> replaced by <unk> is a no-op: importance and gradient × input exactly 0 (from_batch).
    return PerToken.from_batch(output, src, log_p.cpu().numpy(), copies.cpu().numpy(), measures)


# --- Against the gold alignment -------------------------------------------------------------------
@dataclass(frozen=True)
class GoldAgreement:
    """How importance and each measure meet the gold links, per output token. Only for an output
    that is the gold target (plus </s>): the gold links describe that output, no other."""

    scored: np.ndarray  # (T,) bool: the output token has a gold link
    gold: np.ndarray  # (T, S) 2 on sure links, 1 on possible-only links, 0 elsewhere
    top: Mapping[str, np.ndarray]  # ranking → (T,) its top source position per output token
    top_is_gold: Mapping[str, np.ndarray]  # ranking → (T,) bool, False where not scored
    spearman: Mapping[str, np.ndarray]  # ranking → (T,) with the gold row; NaN where not scored/constant


def gold_agreement(per_token: PerToken, example: Example) -> GoldAgreement | None:
    """None when ``per_token``'s output is not the example's gold target (+ </s>)."""
    if per_token.output != (*example.tgt, EOS) or per_token.positions != example.src:
        return None
    gold = np.zeros(per_token.importance.shape, dtype=np.float32)  # (T, S)
    for t, i in example.possible:
        gold[t, i] = 1.0
    for t, i in example.sure:
        gold[t, i] = 2.0
    scored = gold.max(1) > 0
    rankings = {IMPORTANCE: per_token.importance, **per_token.measures}
    top = {name: v.argmax(1) for name, v in rankings.items()}
    rows = np.arange(len(gold))
    return GoldAgreement(
        scored=scored,
        gold=gold,
        top=top,
        top_is_gold={name: scored & (gold[rows, top[name]] > 0) for name in rankings},
        spearman={
            name: np.array([spearman(v[t], gold[t]) if scored[t] else np.nan for t in rows])
            for name, v in rankings.items()
        },
    )


# --- Held-out average for the model card -----------------------------------------------------------
def held_out(
    model: Seq2Seq, task: Task, examples: Sequence[Example], src_vocab: Vocab, tgt_vocab: Vocab
) -> dict:
    """The card's `CARD_KEY` entry (`analysis.importance.card_entry`): per measure the mean Spearman
    with importance over every output token of ``examples`` (each decoded greedily first), and the
    gold comparison."""
    per_input, agreements = [], []
    for ex in examples:
        output = run(model, task, ex.src, src_vocab, tgt_vocab)[0].output
        per_token = importance(model, ex.src, src_vocab, tgt_vocab, output)
        per_input.append(per_token.comparisons())
        agreement = gold_agreement(per_token, ex)
        if agreement is not None:
            agreements.append(agreement)
    names = [IMPORTANCE, *per_input[0][0].measures] if per_input else [IMPORTANCE]
    scored = sum(int(a.scored.sum()) for a in agreements)

    def gold_spearman(name: str) -> dict:
        values = np.concatenate([a.spearman[name] for a in agreements]) if agreements else np.array([])
        kept = values[~np.isnan(values)]
        return {"mean": float(kept.mean()) if len(kept) else float("nan"), "n": int(len(kept))}

    split = "test (tasks.held_out: the split the card's metrics are scored on)"
    return {
        **card_entry(per_input, split=split, definition=DEFINITION),
        "gold": {
            "definition": GOLD_DEFINITION,
            "examples": len(agreements),
            "tokens": scored,
            "top_is_gold_link": {
                name: float(sum(int(a.top_is_gold[name].sum()) for a in agreements) / scored)
                if scored
                else float("nan")
                for name in names
            },
            "spearman_with_gold": {name: gold_spearman(name) for name in names},
        },
    }


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _served_importance(loaded, src: tuple[str, ...], output: tuple[str, ...]) -> PerToken:
    """Importance by <unk> ablation, α and gradient × input for every token of ``output`` (the
    shown run's own, teacher-forced): picking an output token on the page is then free."""
    model, _, src_vocab, tgt_vocab = loaded
    return importance(model, src, src_vocab, tgt_vocab, output)


SERVED = {
    "importance": Served(_served_importance, max_entries=64, spinner="Ablating each source token in turn…")
}
TAB = ImportanceTab(
    key="s2s",
    query="rows",
    as_is=False,  # the seq2seq page has no interventions
    explain=lambda loaded, inputs, result: (
        "Each source token in turn is replaced by `<unk>`, teacher-forcing the output shown above. α here "
        "is one single-head, single-layer map per output token: there is no stack of layers to roll out."
    ),
)


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every seq2seq checkpoint in ``folder`` (both tasks; every scoring, the no-attention baseline
    with gradient × input only): its held-out entry over the first ``n`` test examples, written into its
    card (`python -m training.measure importance --family seq2seq`). Returns name → entry."""
    written = {}
    checkpoints = trained("seq2seq", VARIANTS, Seq2Seq, Seq2SeqConfig, folder)
    for name, task, model, src_vocab, tgt_vocab in checkpoints:
        entry = held_out(model, task, held_out_examples(task.name, n), src_vocab, tgt_vocab)
        written |= write_entry(name, CARD_KEY, entry, folder)
    return written
