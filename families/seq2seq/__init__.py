"""Seq2seq alignment: a trained bidirectional-GRU encoder–decoder with four scoring functions, its
alignment, the RNN through time and the fixed-vector bottleneck."""

import functools
import random

import models.seq2seq
from analysis.family import Bench, Control, Family, Smoke, Soak, TextBox
from families.seq2seq import circuits, importance, rnn, runner, steps
from models.attention import SCORINGS
from models.checkpoints import checkpoint_name, load_checkpoint
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from tasks import TASKS, prepare
from tasks.dates import TYPED


@functools.cache
def _default():
    """The page's defaults: its first task and scoring function, greedy decoding."""
    task = next(iter(TASKS.values()))
    return task, load_checkpoint(checkpoint_name("seq2seq", task.name, SCORINGS[0]), Seq2Seq, Seq2SeqConfig)


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    text = rng.choice(TYPED)
    return {"input": "text", "text": text}, (text,)


def _soak_expected(key: tuple) -> str:
    task, (model, _, src_vocab, tgt_vocab) = _default()
    src = prepare(task, key[0], src_vocab).tokens
    return runner.run(model, task, src, src_vocab, tgt_vocab)[0].text or "(empty output)"


TEXT = {"input": "text"}
FAMILY = Family(
    name="seq2seq", title="Seq2seq alignment", page="families/seq2seq/page.py", url_path="seq2seq", icon="🔀",
    example=runner.example, network=Seq2Seq, config=Seq2SeqConfig, training=models.seq2seq,
    served=runner.SERVED | importance.SERVED | circuits.SERVED, importance=importance.TAB,
    measurements={"importance": importance.measure_cards, "gradient-distance": rnn.measure_cards},
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="s2s_view",
    url_inputs=("task", "scoring", "decoding", "k", "input", "example", "text", "ref", "s2s_view"),
    url_needs={"text": TEXT, "ref": TEXT, "k": {"decoding": "beam"}},
    text_inputs=(
        TextBox("text", "text_input", TEXT), TextBox("ref", "text_input", TEXT),
        TextBox("text", "text_input", {"task": "translation", **TEXT}),
        TextBox("s2s_patch_corrupt", "text_input", {"s2s_view": "Causal alignment"},
                answer="s2s_causal_grid"),
    ),
    smoke=Smoke({**TEXT, "text": "saturday, 21 november 2026"}, component="s2s_heatmap"),
    soak=Soak(_soak_pick, _soak_expected, output=("text after", "Output")),
    bench=Bench((
        Control("radio", "Decoding", ("beam", "greedy")), Control("select", "Scoring function"),
        *(Control("look", "s2s_heatmap", a) for a in ("hover", "zoom")),
        Control("radio", "Input:", ("text", "example")), Control("select", "Example (held-out*"),
        *(Control("tab", t, "Alignment") for t in ("Step inspector", "Teacher forcing", "Bottleneck study")),
        Control("tab", "Statistics & export", "Alignment"),
        *(Control("tab", t, "Alignment") for t in ("RNN through time", "Attention vs importance")),
        Control("slider", "Decoder step t", tab="Step inspector"),  # in an st.fragment
    )),
)  # fmt: skip
