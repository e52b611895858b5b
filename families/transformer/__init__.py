"""Transformer lab: a small trained encoder–decoder transformer in head-count variants and a post-norm
twin, with the whole block walked through, live toggles and the material's lessons."""

import functools
import random

import models.transformer
from analysis.family import Bench, Control, Family, Smoke, Soak, TextBox
from families.transformer import importance, runner, steps
from models.attention import Interventions
from models.checkpoints import checkpoint_name, load_checkpoint
from models.transformer import Transformer, TransformerConfig
from tasks import TASKS, prepare
from tasks.dates import TYPED

# The sidebar checkboxes the soak clicks: label → (Interventions field or "padded", default).
CHECKS = {
    "Causal mask in decoder self-attention": ("causal", True),
    "Padding mask": ("padding", True),
    "Run the input in a padded batch": ("padded", False),
    "Scale logits by 1/√d_k": ("scaled", True),
    "Positional encoding": ("positional", True),
}


@functools.cache
def _default():
    """The page's defaults: its first task and the h4 model."""
    task = next(iter(TASKS.values()))
    name = checkpoint_name("transformer", task.name, "h4")
    return task, load_checkpoint(name, Transformer, TransformerConfig)


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    text = rng.choice(TYPED)
    return {"input": "text", "text": text}, (text, frozenset())


def _soak_expected(key: tuple) -> str:
    text, clicked = key
    state = {field: default != (label in clicked) for label, (field, default) in CHECKS.items()}
    padded = state.pop("padded")
    task, (model, _, src_vocab, tgt_vocab) = _default()
    src = prepare(task, text, src_vocab).tokens
    run = runner.run(model, task, src, src_vocab, tgt_vocab, Interventions(**state),
                     pad_to=task.max_source if padded else 0)  # fmt: skip
    return run.text or "(empty output)"


TEXT = {"input": "text"}
FAMILY = Family(
    name="transformer", title="Transformer lab", page="families/transformer/page.py", url_path="transformer",
    icon="🧪", example=runner.example, network=Transformer, config=TransformerConfig,
    training=models.transformer, served=runner.SERVED | importance.SERVED, importance=importance.TAB,
    measurements={"importance": importance.measure_cards, "diagonal-mass": runner.measure_diagonal},
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="tf_view",
    url_inputs=("task", "model", "input", "example", "text", "ref", "tf_view"),
    url_needs={"text": TEXT, "ref": TEXT},
    text_inputs=(
        TextBox("text", "text_input", TEXT), TextBox("ref", "text_input", TEXT),
        TextBox("tf_pg_text", "text_input", {"tf_view": "Playground"}),
        TextBox("circ_corrupt", "text_input", {"tf_view": "Circuits"}, answer="tf_circ_lens_grid"),
    ),
    smoke=Smoke(charts=2, traces=("heatmap",)),
    soak=Soak(_soak_pick, _soak_expected, output=("text after", "Output"), checks=CHECKS),
    bench=Bench((
        Control("check", "Causal mask in decoder self-attention"), Control("check", "Padding mask"),
        Control("check", "Scale logits by 1/√d_k"), Control("check", "Positional encoding"),
        Control("slider", "Temperature on attention logits"),
        Control("select", "Head", tab="Walkthrough"),  # in an st.fragment
        *(Control("radio", "Step (pre-norm order)", (step, "1 · Layer norm"), tab="Walkthrough")
          for step in ("3 · Scores → softmax", "7 · Feed-forward")),
        *(Control("tab", t, "Walkthrough") for t in ("Heads", "Ablation", "Positional encoding")),
        *(Control("tab", t, "Walkthrough") for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "tf_model", a, tab="Heads") for a in ("key:ArrowRight", "key:ArrowDown", "hover",
                                                                  "zoom")),
        Control("look", "tf_heads", "chip", tab="Heads"),
    )),
)  # fmt: skip
