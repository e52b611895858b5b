"""The seq2seq family's steps of the learner's path: the fixed-vector bottleneck, and attention as
alignment. Each reads its preset as the page reads its URL, runs the page's served runs and asks a
question whose key is computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.family import Family, Query, Quiz, Step
from families.seq2seq.runner import Seq2SeqRun
from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from tasks import TASKS, Task, prepare
from tasks.common import EOS, Vocab
from views.attention import heatmap
from views.inputs import md_escape
from views.outputs import text_block
from views.serving import cached, card, held_out_examples


@dataclass(frozen=True)
class Source:
    """What the page's URL asks it to run: the task, the scoring function, the source and, for a
    held-out example, its reference target."""

    task: Task
    scoring: str
    tokens: tuple[str, ...]
    reference: tuple[str, ...] | None


def read(query: Query) -> Source:
    """The page's inputs from its URL parameters, with the page's defaults (first task, first scoring,
    a held-out example). An example is named as the page's select box names it: its source text."""
    task = TASKS[query.get("task", next(iter(TASKS)))]
    scoring = query.get("scoring", SCORINGS[0])
    if query.get("input", "example") == "example":
        examples = held_out_examples(task.name)
        text = query.get("example", task.joiner.join(examples[0].src))
        (example,) = [e for e in examples if task.joiner.join(e.src) == text]
        return Source(task, scoring, example.src, example.tgt)
    src_vocab = Vocab(tuple(card(checkpoint_name("seq2seq", task.name, scoring))["src_vocab"]))
    return Source(task, scoring, prepare(task, query["text"], src_vocab).tokens, None)


def greedy(family: Family, source: Source, scoring: str | None = None) -> Seq2SeqRun:
    """The page's greedy run of ``source`` (with another scoring function's checkpoint if given)."""
    name = checkpoint_name("seq2seq", source.task.name, scoring or source.scoring)
    return cached(family, "runs")(name, source.tokens, 1, None)[0]


def position(tokens: tuple[str, ...], i: int) -> str:
    """An option naming a position (plain text: the quiz escapes what it shows)."""
    return f"{i}: ‘{tokens[i]}’"


# --- 1. The fixed-vector bottleneck ---------------------------------------------------------------
@dataclass(frozen=True)
class Bottleneck:
    attention: Seq2SeqRun  # the page's model, with attention
    fixed: Seq2SeqRun  # the same task without attention: one vector for the whole source
    reference: tuple[str, ...]  # the held-out example's target


def measure_bottleneck(family: Family, query: Query) -> Bottleneck:
    source = read(query)
    attention = greedy(family, source)
    reference = source.reference or tuple(t for t in attention.output if t != EOS)
    return Bottleneck(attention, greedy(family, source, "none"), reference)


def view_bottleneck(result: Bottleneck, key: str) -> None:
    run = result.attention
    heatmap(run.maps["alignment"], 0, 0, f"{key}_map", title="With attention: where each output word looked",
            axes=("output", "source"), value_name="α")  # fmt: skip
    text_block(f"reference   : {' '.join(result.reference)}\nattention   : {run.text}\n"
               f"no attention: {result.fixed.text}", wrap=True)  # fmt: skip


def quiz_bottleneck(result: Bottleneck) -> Quiz:
    fixed, wanted = result.fixed, (*result.reference, EOS)
    options = ("it writes the reference", *(position(fixed.output, t) for t in range(len(fixed.output))))
    wrong = next((t for t, (a, b) in enumerate(zip(fixed.output, wanted, strict=False)) if a != b), None)
    if wrong is None and len(fixed.output) != len(wanted):
        wrong = min(len(fixed.output), len(wanted)) - 1
    question = (f"The model without attention squeezes all {len(result.attention.source)} source words into "
                "one vector. Where does its translation first leave the reference?")  # fmt: skip
    if wrong is None:
        p = float(np.exp(fixed.token_log_probs).min())
        feedback = (f"Both models write the reference; the least sure word of the no-attention model still "
                    f"had p = {p:.2f}. One vector holds a sentence this short.")  # fmt: skip
        return Quiz(question, options[0], feedback, options)
    p = float(np.exp(fixed.token_log_probs[wrong]))
    weights = result.attention.weights[min(wrong, len(result.attention.weights) - 1)]
    looked = int(np.argmax(weights))
    feedback = (
        f"At word {wrong} it wrote ‘{md_escape(fixed.output[wrong])}’ (p = {p:.2f}) where the reference has "
        f"‘{md_escape(wanted[wrong])}’. The attention model, writing word {wrong}, put {weights[looked]:.2f} "
        f"of its attention on ‘{md_escape(result.attention.source[looked])}’: it reads the source again at "
        "every step, while the fixed vector has to remember it all."
    )
    return Quiz(question, options[wrong + 1], feedback, options)


# --- 2. Attention as alignment --------------------------------------------------------------------
def measure_alignment(family: Family, query: Query) -> Seq2SeqRun:
    return greedy(family, read(query))


def month_rows(run: Seq2SeqRun) -> list[int]:
    """The output steps that write the month of a "yyyy-mm-dd" date: between its two dashes."""
    dashes = [t for t, tok in enumerate(run.output) if tok == "-"]
    if len(dashes) < 2 or dashes[1] - dashes[0] < 2:
        raise ValueError(f"the output {run.text!r} is no yyyy-mm-dd date: pick a preset it gets right.")
    return list(range(dashes[0] + 1, dashes[1]))


def view_alignment(run: Seq2SeqRun, key: str) -> None:
    heatmap(run.maps["alignment"], 0, 0, f"{key}_map", axes=("output", "source"), value_name="α",
            title="Alignment α (row t: where output token t looked)")  # fmt: skip
    text_block(run.text)


def quiz_alignment(run: Seq2SeqRun) -> Quiz:
    rows = month_rows(run)
    tops = [int(np.argmax(run.weights[t])) for t in rows]  # where each month digit looked most
    month = "".join(run.output[t] for t in rows)
    options = tuple(position(run.source, i) for i in range(len(run.source)))
    looked = "; ".join(f"‘{md_escape(run.output[t])}’ (step {t}) put {run.weights[t, i]:.2f} on "
                       f"‘{md_escape(run.source[i])}’ at position {i}"
                       for t, i in zip(rows, tops, strict=True))
    feedback = (
        f"Writing the month ‘{md_escape(month)}’, digit by digit: {looked}. Each output row is a softmax "
        "over the source: the model learned where a month is written, and which letter tells it, without "
        "ever being told."
    )
    question = ("When the decoder writes the month's first digit, which source character does it look at "
                "most?")  # fmt: skip
    top = tops[0]
    return Quiz(question, options[top], feedback, options)


TEXT = "saturday, 21 november 2026"
TYPED = {"input": "text", "text": TEXT}  # the page's parameters that open it on that date
STEPS = (
    Step(
        id="bottleneck", idea="The fixed-vector bottleneck",
        explain=(
            "An encoder–decoder reads a sentence and writes another. Without attention, the decoder gets "
            "one thing from the encoder: its last state, a single vector that must hold the whole "
            "sentence. Long sentences do not fit. With attention, every output step looks back at all "
            "the encoder's states and takes what it needs. Both models here are trained on the same toy "
            "translation task; the map is the attention model's."
        ),
        look_for="each output word's row lights up its source word; the no-attention model loses track "
                 "as the sentence goes on.",
        query={"task": "translation", "input": "example", "s2s_view": "Bottleneck study",
               "example": "a teacher drinks some tall doctors here and the blue friends are loving my blue "
                          "young girl under white cows now"},
        contrast={"task": "translation", "input": "example",
                  "example": "my red young car writes my doctor under some friends"},
        measure=measure_bottleneck, view=view_bottleneck, quiz=quiz_bottleneck,
        deeper="exact match by source length for every scoring function and without attention",
        more={"RNN through time": {"s2s_view": "RNN through time"}},
    ),
    Step(
        id="alignment", idea="Attention as alignment",
        explain=(
            "At each step the decoder scores every encoder state against its own state, turns the scores "
            "into weights with a softmax, and reads the weighted sum. Stack one row of weights per output "
            "token and you get an alignment: which source token each output token came from. Here the "
            "model normalises dates, character by character."
        ),
        look_for="the rows that write the year, the month and the day, and which source characters they "
                 "light up.",
        query={**TYPED, "s2s_view": "Alignment"},
        contrast={"input": "text", "text": "11/17/2026"},
        measure=measure_alignment, view=view_alignment, quiz=quiz_alignment,
        deeper="other scoring functions, beam search, gold links, your own text",
        more={view: {**TYPED, "s2s_view": view} for view in ("Step inspector", "Attention vs importance")},
    ),
)  # fmt: skip
