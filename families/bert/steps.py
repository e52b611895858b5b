"""BERT's step of the learner's path: self-attention without W_Q, W_K, W_V — softmax(XXᵀ) on the rows
the first layer reads, beside the layer's learned head, from the page's own served call."""

from __future__ import annotations

import numpy as np

from analysis.family import Family, Query, Quiz, Step
from analysis.projections import RawVsProjected
from analysis.protocol import AttentionMaps
from families.bert.runner import EXAMPLE_TEXT, folders
from models.attention import Interventions
from views.attention import model_view
from views.inputs import md_escape
from views.serving import cached

LAYER = 0  # the page's Raw vs projected tab opens on layer 0


def measure(family: Family, query: Query) -> RawVsProjected:
    """Layer 0's comparison, as the page computes it for its first checkpoint and its sentences."""
    text_a, text_b = query.get("a", EXAMPLE_TEXT[0]), query.get("b", "")
    folder = next(iter(folders()))
    pair = text_b if text_b.strip() else None  # the page's: an empty sentence B is no pair
    return cached(family, "projections")(folder, text_a, pair, Interventions())[LAYER]


def probe(result: RawVsProjected) -> int:
    """The token the question asks about: the longest word piece (the first of the longest)."""
    plain = [i for i, t in enumerate(result.tokens) if not (t.startswith("[") and t.endswith("]"))]
    return max(plain, key=lambda i: len(result.tokens[i].lstrip("#")))


def view(result: RawVsProjected, key: str) -> None:
    weights = np.stack([result.raw, result.raw_scaled, result.learned[0]])[:, None]  # (3, 1, T, T)
    tokens, d = result.tokens, result.x.shape[-1]
    maps = AttentionMaps(title=f"layer {LAYER}: without projections, and the learned head 0", weights=weights,
                         queries=tokens, keys=tokens, special_keys=np.zeros(len(tokens), bool))
    names = ["softmax(XXᵀ)", f"softmax(XXᵀ/√{d})", "learned head 0"]
    model_view(maps, key, layer=1, head=0, layer_names=names, head_names=["H0"])


def quiz(result: RawVsProjected) -> Quiz:
    i = probe(result)
    token = md_escape(result.tokens[i])
    diagonal = result.diagonal
    d = result.x.shape[-1]
    feedback = (
        f"softmax(XXᵀ/√{d}) puts {result.raw_scaled[i, i]:.3f} on ‘{token}’ itself "
        f"({diagonal['raw ÷ √d']:.3f} on average over the tokens); unscaled, softmax(XXᵀ) puts "
        f"{result.raw[i, i]:.3f} there ({diagonal['raw']:.3f} on average): a raw vector agrees with itself "
        f"more than with any other. The learned head 0 of layer {LAYER} puts {result.learned[0, i, i]:.3f} "
        f"on ‘{token}’ itself (the layer's heads {diagonal['heads (mean)']:.3f} on average): W_Q and W_K let "
        "a token ask about the others."
    )
    question = (f"Without projections but scaled as attention scales (softmax(XXᵀ/√{d})), how much weight "
                f"does the token ‘{token}’ put on itself? Hover its diagonal cell.")  # fmt: skip
    return Quiz(question, float(result.raw_scaled[i, i]), feedback, tolerance=0.005)


STEPS = (
    Step(
        id="self-attention", idea="Self-attention: why W_Q, W_K and W_V",
        explain=(
            "In self-attention a sentence attends to itself: every token is a query and every token a key. "
            "Why not score the token vectors directly, softmax(XXᵀ)? Because a vector agrees with itself "
            "most. The learned projections W_Q and W_K turn each token into a question and a description "
            "that can match other tokens, and W_V chooses what is passed on. The sentence runs through "
            "all-MiniLM-L6-v2, a real pretrained BERT."
        ),
        look_for="the diagonal of softmax(XXᵀ) against where the learned head looks (↑/↓ switches the two).",
        query={"a": EXAMPLE_TEXT[0], "b": "", "bert_view": "Raw vs projected"},
        contrast={"a": "The bank raised interest rates.", "b": ""},
        measure=measure, view=view, quiz=quiz,
        deeper="every layer, softmax(XXᵀ/√d) and the output softmax(XXᵀ)X",
        more={"Head view": {"a": EXAMPLE_TEXT[0], "b": "", "bert_view": "Head view"},
              "Model view": {"a": EXAMPLE_TEXT[0], "b": "", "bert_view": "Model view"},
              "Neuron view": {"a": EXAMPLE_TEXT[0], "b": "",
                                                         "bert_view": "Neuron view"}},
    ),
)  # fmt: skip
