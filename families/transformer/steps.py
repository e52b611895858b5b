"""The transformer family's steps of the learner's path: scaled dot-product attention, masks, multi-head
attention, positional encoding, the whole block (pre- vs post-norm) and cross-attention. Each reads
its preset as the page reads its URL, runs the page's served runs and asks a question whose key is
computed from them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import streamlit as st

from analysis.family import Family, Query, Quiz, Step
from analysis.protocol import AttentionMaps
from analysis.stats import mean_entropy
from families.transformer.runner import TransformerRun
from families.transformer.steps_block import block_step
from models.attention import Interventions
from models.checkpoints import checkpoint_name
from tasks import TASKS, Task, prepare
from tasks.common import Vocab
from views.attention import explorer, model_view
from views.inputs import md_escape
from views.outputs import text_block
from views.serving import cached, card, held_out_examples

PLAIN = Interventions()
OUTCOMES = ("stays the same", "changes")


@dataclass(frozen=True)
class Source:
    """What the page's URL asks it to run: the task, the checkpoint, the source and a reference."""

    task: Task
    name: str
    tokens: tuple[str, ...]
    reference: tuple[str, ...] | None


def read(query: Query) -> Source:
    """The page's inputs from its URL parameters, with the page's defaults (first task, the h4 model,
    a held-out example; an example named as the page's select box names it: its source text)."""
    task = TASKS[query.get("task", next(iter(TASKS)))]
    name = checkpoint_name("transformer", task.name, query.get("model", "h4"))
    if query.get("input", "example") == "example":
        examples = held_out_examples(task.name)
        text = query.get("example", task.joiner.join(examples[0].src))
        (example,) = [e for e in examples if task.joiner.join(e.src) == text]
        return Source(task, name, example.src, example.tgt)
    src_vocab = Vocab(tuple(card(name)["src_vocab"]))
    reference = task.tokenize(query.get("ref", "")) or None
    return Source(task, name, prepare(task, query["text"], src_vocab).tokens, reference)


def runs(family: Family, query: Query, *ivs: Interventions, forced: bool = False) -> list[TransformerRun]:
    """The page's runs of its input under each of ``ivs`` (``forced``: teacher-forced on the reference)."""
    source = read(query)
    reference = tuple(source.reference) if forced else None
    return [cached(family, "run")(source.name, source.tokens, iv, reference, 0) for iv in ivs]


def pick(tokens: tuple[str, ...], i: int) -> str:
    """An option naming a position (plain text: the quiz escapes what it shows)."""
    return f"{i}: ‘{tokens[i]}’"


def side_by_side(a: AttentionMaps, b: AttentionMaps, names: tuple[str, str]) -> tuple[AttentionMaps, list]:
    """Two runs' maps of one block as one component's rows: layer i of ``a``, then of ``b``."""
    weights = np.stack([w for pair in zip(a.weights, b.weights, strict=True) for w in pair])
    layers = [f"L{i} {name}" for i in range(a.n_layers) for name in names]
    return replace(a, weights=weights), layers


# --- 3. Scaled dot-product attention --------------------------------------------------------------
@dataclass(frozen=True)
class Scaling:
    scaled: TransformerRun
    unscaled: TransformerRun


def measure_scaling(family: Family, query: Query) -> Scaling:
    return Scaling(*runs(family, query, PLAIN, Interventions(scaled=False)))


def view_scaling(result: Scaling, key: str) -> None:
    maps, layers = side_by_side(result.scaled.maps["encoder"], result.unscaled.maps["encoder"],
                                ("with 1/√d_k", "without"))  # fmt: skip
    model_view(maps, key, layer=0, head=0, layer_names=layers)
    text_block(f"with 1/√d_k: {result.scaled.text}\nwithout    : {result.unscaled.text}")


def quiz_scaling(result: Scaling) -> Quiz:
    before, after = (mean_entropy(r.maps["encoder"]) for r in (result.scaled, result.unscaled))
    scale = result.scaled.blocks["encoder"][0].scale
    direction = "lower" if after < before else "higher"
    changed = "changes" if result.unscaled.text != result.scaled.text else "stays the same"
    options = tuple(f"entropy {d}, output {c}" for d in ("lower", "higher") for c in OUTCOMES)
    feedback = (
        f"The mean entropy of the encoder's attention rows goes from {before:.3f} to {after:.3f} nats "
        f"({direction}); the output {changed} (‘{md_escape(result.scaled.text)}’ → "
        f"‘{md_escape(result.unscaled.text)}’). Without the factor {scale:.4f} = 1/√d_k the scores are "
        f"{1 / scale:.0f}× larger, the softmax saturates towards one key, and the model meets scores it was "
        "never trained on."
    )
    question = "Switch 1/√d_k off. What happens to the encoder's attention entropy, and to the output?"
    return Quiz(question, f"entropy {direction}, output {changed}", feedback, options)


# --- 5. Masks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Masks:
    causal: TransformerRun  # teacher-forced on the reference, the decoder's causal mask on
    open: TransformerRun  # … and off: each position also sees the reference tokens after it


def measure_masks(family: Family, query: Query) -> Masks:
    return Masks(*runs(family, query, PLAIN, Interventions(causal=False), forced=True))


def view_masks(result: Masks, key: str) -> None:
    model_view(result.open.maps["decoder_self"], key, layer=0, head=0)
    rows = [{"position": t, "reference": ref, "predicted, mask on": a, "predicted, mask off": b,
             "p(reference), mask on": float(np.exp(p)), "p(reference), mask off": float(np.exp(q))}
            for t, (ref, a, b, p, q) in enumerate(zip(result.causal.output, result.causal.predictions,
                                                      result.open.predictions, result.causal.token_log_probs,
                                                      result.open.token_log_probs, strict=True))]  # fmt: skip
    st.dataframe(rows, hide_index=True, key=f"{key}_table")


def quiz_masks(result: Masks) -> Quiz:
    change = np.abs(result.open.token_log_probs - result.causal.token_log_probs)
    t = int(np.argmax(change))
    before, after = (float(r.token_log_probs[t]) for r in (result.causal, result.open))
    options = tuple(pick(result.causal.output, i) for i in range(len(result.causal.output)))
    feedback = (
        f"At position {t} (reference ‘{md_escape(result.causal.output[t])}’) log p of the reference token "
        f"goes from {before:.3f} to {after:.3f} (p {np.exp(before):.2f} → {np.exp(after):.2f}); the "
        f"prediction there goes from ‘{md_escape(result.causal.predictions[t])}’ to "
        f"‘{md_escape(result.open.predictions[t])}’. Trained with the mask, the decoder never saw the "
        "future: switched off, the tokens after a position are read as if they were context."
    )
    question = ("Teacher forcing on the reference, switch the decoder's causal mask off. At which position "
                "does the model's prediction of the reference token change most (log p)?")  # fmt: skip
    return Quiz(question, options[t], feedback, options)


# --- 6. Multi-head attention ----------------------------------------------------------------------
def measure_heads(family: Family, query: Query) -> TransformerRun:
    (run,) = runs(family, query, PLAIN)
    return run


def view_heads(run: TransformerRun, key: str) -> None:
    block = run.blocks["encoder"][0]
    st.caption(f"Every row x here is d_model = {block.x_query.shape[-1]} numbers long.")
    model_view(run.maps["encoder"], key, layer=0, head=0)


def quiz_heads(run: TransformerRun) -> Quiz:
    block = run.blocks["encoder"][0]
    n_heads, n_tokens, d_k = block.q.shape
    d_model = block.x_query.shape[-1]
    feedback = (
        f"d_k = {d_model} / {n_heads} = {d_k}. In this run each head's q, k and v are {n_tokens} × {d_k} "
        f"(one row of {d_k} numbers per token); the {n_heads} heads' outputs, concatenated, are "
        f"{n_tokens} × {block.concat.shape[-1]} again, and W_O ({d_model} × {d_model}) mixes them. More "
        "heads means more, narrower questions per token at the same cost."
    )
    question = (f"This model has h = {n_heads} heads per block (count them in the view). What is d_k, the "
                "length of each head's query and key vectors?")  # fmt: skip
    return Quiz(question, float(d_k), feedback)


# --- 7. Positional encoding -----------------------------------------------------------------------
@dataclass(frozen=True)
class Positions:
    with_pe: TransformerRun
    without: TransformerRun


def measure_positions(family: Family, query: Query) -> Positions:
    return Positions(*runs(family, query, PLAIN, Interventions(positional=False)))


def twins(tokens: tuple[str, ...]) -> tuple[int, int]:
    """The first token that occurs twice: its first two positions."""
    for j, token in enumerate(tokens):
        if token in tokens[:j]:
            return tokens.index(token), j
    raise ValueError("no token occurs twice: pick a preset with a repeated token.")


def probe(result: Positions) -> tuple[int, int, int, int]:
    """(the query: the first position not a twin, the twins, the layer-0 head that looks most at them
    from that query without positions)."""
    a, b = twins(result.without.source)
    query = next(i for i in range(len(result.without.source)) if i not in (a, b))
    weights = result.without.maps["encoder"].weights[0, :, query]  # (h, S)
    return query, a, b, int(np.argmax(weights[:, a] + weights[:, b]))


def view_positions(result: Positions, key: str) -> None:
    explorer(result.without.maps["encoder"], f"{key}_map", ("map",), layer=0, head=probe(result)[3],
             title="Encoder self-attention, positional encoding off")  # fmt: skip
    text = f"with positions   : {result.with_pe.text}\nwithout positions: {result.without.text}"
    text_block(text)


def quiz_positions(result: Positions) -> Quiz:
    query, a, b, head = probe(result)
    src = result.without.source
    off = result.without.maps["encoder"].weights[0, head, query]
    on = result.with_pe.maps["encoder"].weights[0, head, query]
    feedback = (
        f"Query {query} ‘{md_escape(src[query])}’ puts {off[a]:.4f} on ‘{md_escape(src[a])}’ at position "
        f"{a} and {off[b]:.4f} at position {b}: the same, to {abs(float(off[a] - off[b])):.1e}. Without "
        f"positions the two are one key. With positional encoding the same head puts {on[a]:.4f} and "
        f"{on[b]:.4f} there."
    )
    question = (f"Positional encoding off, layer 0, head {head}: how much weight does query {query} "
                f"‘{md_escape(src[query])}’ put on the ‘{md_escape(src[a])}’ at position {a}? (Hover the "
                f"cell; then look at position {b}.)")  # fmt: skip
    return Quiz(question, float(off[a]), feedback, tolerance=0.0015)


# --- 9. Cross-attention ---------------------------------------------------------------------------
def measure_cross(family: Family, query: Query) -> TransformerRun:
    (run,) = runs(family, query, PLAIN)
    return run


def cross_head(run: TransformerRun) -> tuple[int, int, int]:
    """(the last layer, the head that looks hardest, the step writing the last token before </s>)."""
    weights = run.maps["cross"].weights[-1]  # (h, T, S)
    t = len([tok for tok in run.output if tok != "</s>"]) - 1
    return len(run.maps["cross"].weights) - 1, int(np.argmax(weights[:, t].max(-1))), t


def view_cross(run: TransformerRun, key: str) -> None:
    layer, head, _ = cross_head(run)
    explorer(run.maps["cross"], f"{key}_map", ("map",), layer=layer, head=head)
    text_block(run.text)


def quiz_cross(run: TransformerRun) -> Quiz:
    layer, head, t = cross_head(run)
    weights = run.maps["cross"].weights[layer, :, t]  # (h, S)
    top = int(np.argmax(weights[head]))
    others = "; ".join(f"H{h} {weights[h].max():.2f} on ‘{md_escape(run.source[int(np.argmax(weights[h]))])}’"
                       for h in range(len(weights)) if h != head)  # fmt: skip
    options = tuple(pick(run.source, i) for i in range(len(run.source)))
    feedback = (
        f"Writing ‘{md_escape(run.output[t])}’ (step {t}), L{layer} H{head} puts {weights[head, top]:.2f} on "
        f"‘{md_escape(run.source[top])}’ at position {top}. The other heads of the layer: {others}. Queries "
        "come from the decoder, keys and values from the encoder's output: each head aligns in its own way."
    )
    question = (f"Cross-attention, layer {layer}, head {head}: when the decoder writes its last token "
                f"‘{md_escape(run.output[t])}’, which source character does it look at most?")  # fmt: skip
    return Quiz(question, options[top], feedback, options)


TEXT = "saturday, 21 november 2026"
TYPED = {"input": "text", "text": TEXT}
CONTRAST = {"input": "text", "text": "11/17/2026"}
STEPS = (
    Step(
        id="scaling", idea="Scaled dot-product attention",
        explain=(
            "A transformer scores a query q against every key k with a dot product q·k, divides by √d_k, "
            "and takes a softmax. Why divide? A dot product of d_k numbers grows with d_k; large scores "
            "push the softmax to put everything on one key, where its gradient vanishes. The view shows "
            "this trained model's encoder heads with the factor and without it."
        ),
        look_for="the rows with 1/√d_k beside the same rows without: spread out or pinned to one key?",
        query={**TYPED, "tf_view": "Walkthrough"}, contrast=CONTRAST,
        measure=measure_scaling, view=view_scaling, quiz=quiz_scaling,
        deeper="q·k, ÷√d_k and the softmax for one query; the scale switch is in the sidebar",
    ),
    Step(
        id="masks", idea="Masks",
        explain=(
            "A mask sets chosen scores to −∞ before the softmax, so their weights are exactly 0. A decoder "
            "trained to write one token at a time gets a causal mask: position t sees tokens up to t, never "
            "the ones after it. (A padding mask is another thing: it hides the filler that pads a batch.) "
            "Here the decoder reads the reference under teacher forcing, with its causal mask switched off."
        ),
        look_for="weight above the diagonal (the future), and which predictions break when it is read.",
        query={**TYPED, "ref": "2026-11-21", "tf_view": "Heads"},
        contrast={**CONTRAST, "ref": "2026-11-17"},
        measure=measure_masks, view=view_masks, quiz=quiz_masks,
        deeper="the reference teacher-forced; untick “Causal mask in decoder self-attention” in the sidebar",
    ),
    Step(
        id="multi-head", idea="Multi-head attention: split, concat, W_O",
        explain=(
            "One attention can ask one question per token. Multi-head attention splits the d_model numbers "
            "of each q, k and v into h slices of d_k = d_model / h, runs h attentions side by side, "
            "concatenates their outputs and mixes them with W_O. The view: every head of this 8-head "
            "model's encoder."
        ),
        look_for="how differently the heads of one layer look at the same sentence.",
        query={**TYPED, "model": "h8", "tf_view": "Heads"}, contrast={**TYPED, "model": "h4"},
        measure=measure_heads, view=view_heads, quiz=quiz_heads,
        deeper="every block's heads of the 8-head model (the Walkthrough shows the concat and W_O)",
        more={"Head ablation": {**TYPED, "model": "h8", "tf_view": "Ablation"},
              "Shape playground": {"tf_view": "Playground"}},
    ),
    Step(
        id="positions", idea="Positional encoding",
        explain=(
            "Attention itself is blind to order: shuffle the keys and each weight moves with its key. The "
            "model only knows where a token is because a positional encoding (here sinusoids) is added to "
            "each token's embedding. Switch it off and two copies of a character become the same key."
        ),
        look_for="the two copies of a repeated character in one row, and the output without positions.",
        query={**TYPED, "tf_view": "Positional encoding"}, contrast=CONTRAST,
        measure=measure_positions, view=view_positions, quiz=quiz_positions,
        deeper="the sinusoid table, and exact match without it",
    ),
    block_step(read),
    Step(
        id="cross-attention", idea="Encoder–decoder cross-attention",
        explain=(
            "The decoder has two attentions. Its self-attention reads what it has written; its "
            "cross-attention takes queries from the decoder and keys and values from the encoder's output: "
            "the transformer's version of the seq2seq alignment, now with several heads in several layers."
        ),
        look_for="each head's row for the token being written, and which source character it picks.",
        query={**TYPED, "tf_view": "Heads"}, contrast=CONTRAST,
        measure=measure_cross, view=view_cross, quiz=quiz_cross,
        deeper="pick the cross-attention block: every layer and head",
        more={"Circuits": {**TYPED, "tf_view": "Circuits"}},
    ),
)  # fmt: skip
