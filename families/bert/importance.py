"""Attention vs importance for BERT / MiniLM, on one input (Abnar & Zuidema 2020).

The quantity is the sentence embedding (sentence-transformers' mean over every token, [CLS] and
[SEP] included, L2-normalised) of the encoding the page draws — for a pair, the joint
[CLS] A [SEP] B [SEP], whose attention is what the page shows (the page's pair similarity encodes
each sentence alone). Positions are the word pieces; [CLS] and [SEP] are left out (never ablated,
never ranked: structural, and attention sinks whose weight says little about content). Per position j:

- **importance**: 1 − cos(embedding with piece j replaced by ``[MASK]``, the unablated embedding);
  copies run in batches of at most `CHUNK_TOKENS` tokens. A long input is capped at `COPY_TOKENS`
  ablated tokens in all: past ``COPY_TOKENS // T`` pieces (at least `MIN_COPIES` copies), runs of
  consecutive pieces are ablated together and ranked as one position (`BertImportance.spans`);
- **raw L{l}**: the attention piece j *receives* in layer l — the mean pooling averages every token's
  row equally, so the mean over query rows (all T) of column j, mean over heads (or one head);
  a span sums its columns;
- **rollout L{l}**: the same column mean of `analysis.stats.rollout` through layer l;
- **grad × input**: Σ_d (x_j − x'_j)·∂cos/∂x at x', x the layer-0 input (embeddings after their
  LayerNorm) and x' the ablated copy's. Taken at the *ablated* input: at the input itself the
  cosine is at its maximum 1, its gradient is 0 and the textbook estimate would be 0 everywhere;
  from x' it is the first-order estimate of the same drop, from the other end of the segment.
"""

from __future__ import annotations

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
    layered_measures,
    no_op_ablations,
    without_no_ops,
)
from analysis.protocol import to_numpy
from analysis.stats import rollout
from families.bert.runner import CARD, Encoding, card_sentences, encode, start_card
from models.bert import LoadedBert, default_folder, load_bert, sentence_embedding
from models.checkpoints import ASSETS, write_entry

COPY_TOKENS = 2048  # ablated copies × tokens, at most (≤ 45 tokens: every piece alone; 512: 8 spans of ~64)
MIN_COPIES = 8  # a long input still gets this many ablated spans
CHUNK_TOKENS = 2048  # tokens per batched forward (and backward) of ablated copies
MASK = "[MASK]"
DEFINITION = {
    "importance": (
        "1 − cos(sentence embedding with word piece j replaced by [MASK], the unablated one); [CLS]/[SEP] "
        "left out (never ablated, never ranked)"
    ),
    "replacement": "[MASK] (id 103 in all-MiniLM-L6-v2's vocabulary)",
    "measures": {
        "raw L{l}": "attention piece j receives in layer l: mean over every query row of column j, head mean",
        "rollout L{l}": "the same column mean of the rollout (analysis.stats.rollout) through layer l",
        GRADIENT_X_INPUT: (
            "Σ_d (x_j − x'_j) ∂cos/∂x_j at the ablated input x' (x: embeddings after their LayerNorm); at x "
            "itself the cosine is at its maximum and its gradient 0"
        ),
    },
}


def mask_id(loaded: LoadedBert) -> int:
    """[MASK]'s id, else [UNK]'s (every loadable tokenizer has [UNK])."""
    found = loaded.tokenizer.token_to_id(MASK)
    return found if found is not None else loaded.tokenizer.token_to_id("[UNK]")


def spans(enc: Encoding) -> tuple[tuple[int, ...], ...]:
    """The positions ablated together, in order: each word piece alone, or — past the cap
    (``COPY_TOKENS // T`` copies, at least `MIN_COPIES`) — runs of consecutive pieces."""
    pieces = np.flatnonzero(~enc.special)
    copies = max(MIN_COPIES, COPY_TOKENS // max(1, len(enc.tokens)))
    if len(pieces) <= copies:
        return tuple((int(j),) for j in pieces)
    return tuple(tuple(int(j) for j in run) for run in np.array_split(pieces, copies))


def _label(enc: Encoding, span: tuple[int, ...]) -> str:
    if len(span) == 1:
        return enc.tokens[span[0]]
    return f"{enc.tokens[span[0]]} … {enc.tokens[span[-1]]} ({span[0]}–{span[-1]})"


@dataclass(frozen=True)
class BertImportance:
    """One input: n positions (word pieces, or spans of them past the cap) of importance and of
    every measure."""

    spans: tuple[tuple[int, ...], ...]  # (n,) token positions ablated together
    positions: tuple[str, ...]  # (n,) labels
    capped: bool  # True when spans of several pieces stand for single pieces
    importance: np.ndarray  # (n,) 1 − cos(ablated embedding, embedding)
    received: np.ndarray  # (L, h, n) attention each span receives: column mean over query rows
    rollout: np.ndarray  # (L, n) the same of the rollout
    grad_x_input: np.ndarray  # (n,)

    def comparison(self, head: int | None = None) -> Comparison:
        measures = layered_measures(self.received, self.rollout, self.grad_x_input, head)
        return compare(
            self.positions, self.importance, measures, quantity="the embedding's cosine to the unablated one"
        )


def _received(weights: np.ndarray, groups: Sequence[tuple[int, ...]]) -> np.ndarray:
    """(…, T, T) attention → (…, n): per span, its columns' mean over query rows, summed over the span."""
    column_means = weights.mean(-2)  # (…, T)
    return np.stack([column_means[..., list(span)].sum(-1) for span in groups], -1)


def measure(loaded: LoadedBert, enc: Encoding) -> BertImportance:
    """Importance by ablation and every attention measure of the word pieces of ``enc`` (no
    interventions: the model as it is)."""
    groups = spans(enc)
    if not groups:
        raise ValueError("the input has no word pieces between [CLS] and [SEP]: type a sentence.")
    model, device = loaded.model, next(loaded.model.parameters()).device
    ids = torch.tensor([enc.ids], device=device)  # (1, T)
    types = torch.tensor([enc.type_ids], device=device)
    t_len, keep = ids.shape[1], torch.ones(1, ids.shape[1], dtype=torch.bool, device=device)
    # 1) The unablated run: every layer's attention, the embedding, the layer-0 input x (no_grad,
    #    not inference_mode: the embedding enters the copies' graph as a constant).
    with torch.no_grad():
        out = model(ids, token_type_ids=types, return_trace=True, capture="weights")
        base = sentence_embedding(out.last_hidden_state, keep)[0]  # (d,)
        x = out.hidden_states[0][0]  # (T, d)
    weights = to_numpy(torch.stack([t.heads.weights[0] for t in out.attentions]))  # (L, h, T, T)
    # 2) Ablated copies in chunks: each span → [MASK]; the cosine, and its gradient at the copy.
    blank, per_chunk = mask_id(loaded), max(1, CHUNK_TOKENS // t_len)
    drops, grads, no_ops = [], [], []
    for start in range(0, len(groups), per_chunk):
        chunk = groups[start : start + per_chunk]
        batch = ids.repeat(len(chunk), 1)  # (n_chunk, T)
        for row, span in enumerate(chunk):
            batch[row, list(span)] = blank
        no_ops.append(no_op_ablations(to_numpy(ids[0]), to_numpy(batch)))  # a [MASK] replaced by [MASK]
        with torch.enable_grad():
            ablated = model(batch, token_type_ids=types.expand_as(batch))
            x_ablated = ablated.hidden_states[0]  # (n_chunk, T, d): a node of the graph
            cos = sentence_embedding(ablated.last_hidden_state, keep.expand_as(batch)) @ base  # (n_chunk,)
            (gradient,) = torch.autograd.grad(cos.sum(), x_ablated)  # copies are independent rows
        with torch.no_grad():
            terms = ((x[None] - x_ablated) * gradient).sum(-1)  # (n_chunk, T): zero off the span
            grads += [float(terms[row, list(span)].sum()) for row, span in enumerate(chunk)]
            drops.append(1 - cos)
    return BertImportance(
        spans=groups,
        positions=tuple(_label(enc, span) for span in groups),
        capped=any(len(span) > 1 for span in groups),
        importance=without_no_ops(to_numpy(torch.cat(drops)), no_op := np.concatenate(no_ops)),
        received=_received(weights, groups).astype(np.float32),
        rollout=_received(rollout(weights), groups).astype(np.float32),
        grad_x_input=without_no_ops(np.array(grads, dtype=np.float32), no_op),
    )


def held_out(loaded: LoadedBert, sentences: Sequence[str], split: str) -> dict:
    """The measurements card's entry: per measure the mean Spearman over ``sentences``, each alone."""
    per_input = [[measure(loaded, encode(loaded, s)).comparison()] for s in sentences]
    return card_entry(per_input, split=split, definition=DEFINITION)


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _served_measure(loaded: LoadedBert, text_a: str, text_b: str | None) -> BertImportance:
    return measure(loaded, encode(loaded, text_a, text_b))


def _explain(loaded: LoadedBert, inputs: tuple[str, str | None], result: BertImportance) -> str:
    pair = " of the joint [CLS] A [SEP] B [SEP] encoding the other tabs draw" if inputs[1] else ""
    return (
        f"Importance of a word piece = 1 − cos(sentence embedding{pair} with that piece alone replaced by "
        "`[MASK]`, the embedding as it is). [CLS] and [SEP] are left out. The embedding averages every "
        "token's row, so the attention a piece *receives* is the mean over all query rows of its column."
    )


def _capped(result: BertImportance) -> str | None:
    if not result.capped:
        return None
    return (
        f"Long input: ablating every piece would take one forward of the whole input per piece, so runs "
        f"of consecutive pieces are ablated together — {len(result.spans)} spans (at most "
        f"{COPY_TOKENS} ablated tokens in all, at least {MIN_COPIES} spans); each measure is summed over "
        "its span."
    )


SERVED = {"importance": Served(_served_measure, max_entries=8, spinner="Ablating each word piece…")}
TAB = ImportanceTab(
    key="bert",
    query="whole input",
    layers_heads=lambda result: result.received.shape[:2],
    explain=_explain,
    warning=_capped,
    without_card=(  # the page passes the packaged MiniLM's card only for that checkpoint
        "The held-out means in assets/bert-minilm.json are of the packaged MiniLM, not this checkpoint."
    ),
)


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The packaged all-MiniLM-L6-v2 on ``n`` sentences (`card_sentences`), into ``bert-minilm.json``."""
    start_card(folder)
    split = (
        f"the English sides of the first {n} examples of the translation test split (tasks.held_out), "
        "each encoded alone"
    )
    entry = held_out(load_bert(default_folder()), card_sentences(n), split)
    return write_entry(CARD, CARD_KEY, entry, folder)
