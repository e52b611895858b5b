"""GPT lab: a small GPT of our own, trained here on the Python standard library's source."""

import functools
import random

import models.gpt
from analysis import lm_circuits
from analysis.family import Bench, Control, Family, Smoke, Soak, TextBox
from families.gpt import importance, runner, steps
from models.attention import Interventions
from models.gpt import GPT, GPTConfig

PROMPTS = (  # what the soak's sessions type: Python as the training text reads
    "def add(self, item):\n    self.items.append(", "for key, value in items.items():\n    print(",
    "import os\nimport sys\n\n\ndef main():\n    ", "class Stack:\n    def __init__(self):\n        self.",
    "if __name__ == '__main__':\n    ", "with open(path) as f:\n    data = f.",
)  # fmt: skip
CHECKS = {"Causal mask": ("causal", True)}  # the sidebar checkbox the soak clicks
NEXT_TOKEN = ("metric", "Next token after the prompt", ("stMetricValue", "stMetricDelta"))


@functools.cache
def _default():
    return runner.load()


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    text = rng.choice(PROMPTS)
    return {"gpt_prompt": text}, (text, frozenset())


def _soak_expected(key: tuple) -> str:
    """The "Next token after the prompt" metric: the token and its probability."""
    text, clicked = key
    iv = Interventions(**{field: default != (label in clicked) for label, (field, default) in CHECKS.items()})
    loaded = _default()
    run = runner.run(loaded, runner.prepare(loaded, text), iv)
    return f"{run.top_tokens[-1][0]} p = {run.top_probs[-1, 0]:.1%}"


KEYS = ("key:ArrowRight", "key:ArrowDown")  # another head, another layer
CIRCUITS = {"gpt_view": "Circuits"}
FAMILY = Family(
    name="gpt", title="GPT lab", page="families/gpt/page.py", url_path="gpt", icon="✍️",
    example=runner.example, network=GPT, config=GPTConfig, training=models.gpt, load=runner.LOAD,
    served=runner.SERVED | importance.SERVED | lm_circuits.SERVED, importance=importance.TAB,
    measurements={"importance": importance.measure_cards, "diagonal-mass": runner.measure_diagonal},
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="gpt_view",
    url_inputs=("gpt_input", "gpt_prompt", "gpt_seed", "gpt_view"),
    url_needs={"gpt_seed": {"gpt_input": "random"}},
    text_inputs=(
        TextBox("gpt_prompt", "text_area"),
        TextBox("circ_clean", "text_area", CIRCUITS, answer="gpt_circ_lens_grid"),
        TextBox("circ_corrupt", "text_area", CIRCUITS, answer="gpt_circ_lens_grid"),
    ),
    smoke=Smoke({"gpt_view": "Attention"}, charts=2, component="gpt_model"),
    soak=Soak(_soak_pick, _soak_expected, output=NEXT_TOKEN, checks=CHECKS),
    bench=Bench((
        Control("check", "Causal mask"), Control("slider", "Temperature on attention logits"),
        Control("radio", "Input:", ("random", "prompt")),
        Control("slider", "Candidates per position", tab="Next tokens"),  # in an st.fragment
        *(Control("tab", t, "Next tokens") for t in ("Attention", "Head roles", "Induction")),
        *(Control("tab", t, "Next tokens") for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "gpt_model", a, tab="Attention") for a in (*KEYS, "hover")),
        Control("look", "gpt_heads", "chip", tab="Attention"),
    )),
)  # fmt: skip
