"""Language models: the shipped SmolLM2-135M-Instruct and any decoder this machine offers (Llama, Mistral,
Qwen 2/3, Gemma 2, GPT-2; `models.lm_catalog`), picked by name, on our own attention core. The family keeps
the name ``llm`` and the page its address ``/llm`` and its ``llm_*`` URL keys, so links shared before the
picker still open."""

import random

from analysis import lm_circuits
from analysis.family import Bench, Control, Family, Smoke, Soak, TextBox
from families.llm import analysis, card, importance, runner, steps
from models.attention import Interventions
from models.decoder import Decoder

PROMPTS = (  # what the soak's sessions type: plain English, each with its own next token
    "The Eiffel Tower is in the city of", "The capital of Japan is", "Water boils at a temperature of",
    "When Mary and John went to the store, John gave a drink to", "The opposite of hot is",
    "One, two, three, four,", "The largest planet in our solar system is", "My favourite colour is",
)  # fmt: skip
CHECKS = {"Causal mask": ("causal", True), "RoPE (rotary positions)": ("positional", True)}
NEXT_TOKEN = ("metric", "Next token after the prompt", ("stMetricValue", "stMetricDelta"))
LONG = "One two three four five six seven eight nine ten. " * 11  # read as 122 tokens: more than a run sends


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    """A prompt, and a model among those offered: sessions switch models when ``ATTENTION_EXPLORER_LM_DIR``
    offers more than the shipped one (their sidebar checks include RoPE: offer RoPE models to soak)."""
    text = rng.choice(PROMPTS)
    found = runner.catalog()
    name = rng.choice(found.names)
    params = {"llm_prompt": text} | ({} if name == found.default else {"llm_checkpoint": name})
    return params, ((name, text), frozenset())


def _soak_expected(key: tuple) -> str:
    """The "Next token after the prompt" metric, with the page's layers for the picked model."""
    (name, text), clicked = key
    iv = Interventions(**{field: default != (label in clicked) for label, (field, default) in CHECKS.items()})
    loaded = runner.LOAD.fn(name)
    prompt = runner.prepare(loaded, text)
    run = runner.run(loaded, prompt, iv, runner.page_layers(loaded.model.cfg, len(prompt.ids), 0))
    return f"{run.top_tokens[-1][0]} p = {run.top_probs[-1, 0]:.1%}"


KEYS = ("key:ArrowRight", "key:ArrowDown")  # another head, another layer
CIRCUITS = {"llm_view": "Circuits"}
FAMILY = Family(
    name="llm", title="Language models", page="families/llm/page.py", url_path="llm", icon="🦙",
    example=runner.example, network=Decoder, load=runner.LOAD, importance=importance.TAB,
    served=runner.SERVED | analysis.SERVED | importance.SERVED | card.SERVED | lm_circuits.SERVED,
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="llm_view",
    url_inputs=("llm_checkpoint", "llm_mode", "llm_prompt", "llm_layer", "llm_head", "llm_view"),
    text_inputs=(
        TextBox("llm_prompt", "text_area"),
        TextBox("circ_clean", "text_area", CIRCUITS, answer="llm_circ_lens_grid"),
        TextBox("circ_corrupt", "text_area", CIRCUITS, answer="llm_circ_lens_grid"),
    ),
    smoke=Smoke({"llm_view": "Attention"}, component="llm_map"),
    soak=Soak(_soak_pick, _soak_expected, output=NEXT_TOKEN, checks=CHECKS),
    bench=Bench((
        Control("check", "RoPE (rotary positions)"), Control("radio", "Input:", ("chat", "prompt")),
        *(Control("select", s, tab="Attention") for s in ("Layer", "Head")),  # the map redrawn
        Control("slider", "Candidates per position", tab="Next tokens"),  # in an st.fragment
        *(Control("tab", t, "Next tokens") for t in ("Attention", "Model view", "Generate")),
        Control("tab", "Head statistics", "Next tokens"),
        *(Control("look", "llm_map", a, tab="Attention") for a in (*KEYS, "hover")),
        Control("look", "llm_model", "key:ArrowRight", tab="Model view"),
    )),
    bench_variants={"128": Bench((  # ~128 tokens: 270 maps are 16 MB, more than a run sends exact
        *(Control("look", "llm_map", a) for a in (*KEYS, "hover")),
        Control("look", "llm_map", "far:L25/L29"),  # a layer not sent exact: asked of the server
        Control("look", "llm_model", "key:ArrowRight", tab="Model view"),
    ), query={"llm_view": "Attention", "llm_prompt": LONG}, drawn="llm_model")},
)  # fmt: skip
