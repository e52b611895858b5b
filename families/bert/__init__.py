"""Pretrained BERT: all-MiniLM-L6-v2 (shipped by a wheel) on our own encoder."""

import functools
import random

from analysis.family import Bench, Control, Family, Smoke, Soak, TextBox
from families.bert import circuits, importance, runner, steps
from models.bert import BertEncoder, load_bert
from models.device import pick_device

SENTENCES = (  # what the soak's sessions type: sentences people try on BERT
    "The animal didn't cross the street because it was too tired.",
    "The creature stayed on the pavement, exhausted.",
    "She poured the water from the jug into the glass until it was full.",
    "A bank can refuse a loan, and a river bank can flood.",
    "The trophy would not fit in the suitcase because it was too big.",
    "Attention lets every word look at every other word.",
    "My cat sleeps on the keyboard whenever I try to work.",
    "The committee postponed the vote until the report was finished.",
    "Colourless green ideas sleep furiously.",
    "He saw her duck under the table.",
)


@functools.cache
def _default():
    """The checkpoint select's first folder, as the page opens."""
    return load_bert(next(iter(runner.folders())), pick_device())


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    a, b = rng.sample(SENTENCES, 2)
    return {"a": a, "b": b}, (a, b)


def _soak_expected(key: tuple) -> str:
    return str(len(runner.encode(_default(), key[0], key[1] or None).tokens))


HEAD_VIEW = "Head view"
FAMILY = Family(
    name="bert", title="Pretrained BERT", page="families/bert/page.py", url_path="bert", icon="🔬",
    example=runner.example, network=BertEncoder, load=runner.LOAD,
    served=runner.SERVED | importance.SERVED | circuits.SERVED, importance=importance.TAB,
    measurements={"importance": importance.measure_cards, "diagonal-mass": runner.measure_diagonal},
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="bert_view",
    url_inputs=("a", "b", "bert_view"),
    text_inputs=(
        TextBox("a", "text_area"), TextBox("b", "text_input"),
        TextBox("bert_patch_corrupt", "text_input", {"bert_view": "Patching"}, answer="bert_patch_positions"),
    ),
    smoke=Smoke({"a": "The bank raised interest rates.", "b": ""}, component="bert_heads"),
    soak=Soak(_soak_pick, _soak_expected, output=("metric", "Tokens", ("stMetricValue",)),
              clicks=("Hide [CLS] / [SEP] in the views",)),
    bench=Bench((
        Control("check", "Hide [CLS] / [SEP] in the views"), Control("slider", "Temperature on attention*"),
        Control("radio", "Chart camera button saves", ("svg", "png")),
        *(Control("tab", t, HEAD_VIEW) for t in ("Model view", "Neuron view", "Rollout vs raw")),
        *(Control("tab", t, HEAD_VIEW) for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "bert_heads", a, tab=HEAD_VIEW) for a in ("select:L5/L0", "chip")),
        *(Control("look", "bert_model", a, tab="Model view") for a in ("key:ArrowRight", "hover")),
    )),
    bench_variants={"512": Bench((  # a 512-token input: the window and the model view at full size
        Control("check", "Hide [CLS] / [SEP] in the views"),
        Control("slider", "Temperature on attention logits"), Control("slider", "Window:*"),
        Control("tab", "Model view", HEAD_VIEW),
        *(Control("look", "bert_heads", a, tab=HEAD_VIEW) for a in ("select:L5/L0", "chip")),
        *(Control("look", "bert_model", a, tab="Model view") for a in ("key:ArrowRight", "hover", "zoom")),
    ), query={"a": "token " * 600})},
)  # fmt: skip
