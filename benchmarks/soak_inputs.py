"""What bench_soak's sessions type and what each should see: the inputs people type, picked per
page by a session's own seeded random.Random, and the oracle that computes each input's output
alone, in this process, from the runners with the pages' defaults (see bench_soak.py)."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import streamlit.logger
import torch
from PIL import Image

streamlit.logger.set_log_level("error")  # views.serving's caches warn that no runtime is found here

from families import load  # noqa: E402
from families.bert.runner import encode, folders  # noqa: E402
from families.captioner import runner as captioner  # noqa: E402
from families.gpt import runner as gpt  # noqa: E402
from families.llm import runner as llama  # noqa: E402
from families.seq2seq import runner as seq2seq  # noqa: E402
from families.transformer import runner as transformer  # noqa: E402
from models.attention import SCORINGS, Interventions  # noqa: E402
from models.bert import load_bert  # noqa: E402
from models.checkpoints import checkpoint_name  # noqa: E402
from models.device import pick_device  # noqa: E402
from tasks import TASKS, prepare  # noqa: E402
from tasks.images import model_input  # noqa: E402
from tasks.scenes import generate  # noqa: E402

DATES = (  # as people type them: the date task's own formats and a few looser ones
    "12 march 1999", "saturday, 21 november 2026", "jan 5 1987", "25.12.99", "the 1st of may, 2010",
    "october 31, 1968", "07/04/1976", "9/11/01", "14 feb 22", "2000-02-29", "sunday, 1 january 2040",
    "the 22nd of august, 1955", "apr 30 2019", "16.06.04", "december 8, 1980", "3 july 2004",
)  # fmt: skip
SENTENCES = (
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
PROMPTS = (  # the SmolLM2 page's: plain English a visitor might try, each with its own next token
    "The Eiffel Tower is in the city of", "The capital of Japan is", "Water boils at a temperature of",
    "When Mary and John went to the store, John gave a drink to", "The opposite of hot is",
    "One, two, three, four,", "The largest planet in our solar system is", "My favourite colour is",
)  # fmt: skip
CODE = (  # the GPT page's: Python as its training text reads
    "def add(self, item):\n    self.items.append(", "for key, value in items.items():\n    print(",
    "import os\nimport sys\n\n\ndef main():\n    ", "class Stack:\n    def __init__(self):\n        self.",
    "if __name__ == '__main__':\n    ", "with open(path) as f:\n    data = f.",
)  # fmt: skip
# The transformer page's sidebar checkboxes: label → (Interventions field or "padded", default).
TF_CHECKS = {
    "Causal mask in decoder self-attention": ("causal", True),
    "Padding mask": ("padding", True),
    "Run the input in a padded batch": ("padded", False),
    "Scale logits by 1/√d_k": ("scaled", True),
    "Positional encoding": ("positional", True),
}
# The sidebar checkboxes a session clicks, per page whose expected output they change (the oracle's
# key then holds the labels toggled away from their defaults).
KEYED_CHECKS = {
    "transformer": TF_CHECKS,
    "llm": {"Causal mask": ("causal", True), "RoPE (rotary positions)": ("positional", True)},
    "gpt": {"Causal mask": ("causal", True)},
}


def toggled(checks: dict[str, tuple[str, bool]], labels: frozenset[str]) -> dict[str, bool]:
    """Each checkbox's field → its value, with ``labels`` clicked once from their defaults."""
    return {f: default != (label in labels) for label, (f, default) in checks.items()}


def pick_input(page: str, rng: random.Random) -> tuple[dict, tuple]:
    """URL parameters for the page, and the oracle's key for them."""
    if page in ("seq2seq", "transformer"):
        text = rng.choice(DATES)
        return {"input": "text", "text": text}, (text,) if page == "seq2seq" else (text, frozenset())
    if page == "bert":
        a, b = rng.sample(SENTENCES, 2)
        return {"a": a, "b": b}, (a, b)
    if page in ("llm", "gpt"):
        text = rng.choice(PROMPTS if page == "llm" else CODE)
        return {f"{page}_prompt": text}, (text, frozenset())
    seed = rng.randrange(10**6)
    return {"source": "random", "seed": seed}, (seed,)


class Oracle:
    """What each input shows when it runs alone: the runners called here with the pages' defaults.

    Runs on one worker thread (the event loop stays free; torch gets one core of the two), and
    caches per input, so a repeated input costs one lookup."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.task = TASKS[list(TASKS)[0]]  # the task select's first option
        self.seq2seq = load(checkpoint_name("seq2seq", self.task.name, SCORINGS[0]))
        self.transformer = load(checkpoint_name("transformer", self.task.name, "h4"))  # the page's default
        self.bert = load_bert(list(folders())[0], pick_device())  # the checkpoint select's first
        self.captioner = load(captioner.DEFAULT)
        self.gpt = gpt.load()
        self.llm = llama.load_all()
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.cache: dict[tuple, str] = {}

    async def expected(self, page: str, key: tuple) -> str:
        if (page, key) not in self.cache:
            loop = asyncio.get_running_loop()
            self.cache[page, key] = await loop.run_in_executor(self.pool, self.compute, page, key)
        return self.cache[page, key]

    def compute(self, page: str, key: tuple) -> str:
        if page == "seq2seq":
            model, _, src_vocab, tgt_vocab = self.seq2seq
            src = prepare(self.task, key[0], src_vocab).tokens
            return seq2seq.run(model, self.task, src, src_vocab, tgt_vocab)[0].text or "(empty output)"
        if page == "transformer":
            text, labels = key
            state = toggled(TF_CHECKS, labels)
            padded = state.pop("padded")
            model, _, src_vocab, tgt_vocab = self.transformer
            src = prepare(self.task, text, src_vocab).tokens
            iv, pad_to = Interventions(**state), self.task.max_source if padded else 0
            run = transformer.run(model, self.task, src, src_vocab, tgt_vocab, iv, pad_to=pad_to)
            return run.text or "(empty output)"
        if page == "bert":
            return str(len(encode(self.bert, key[0], key[1] or None).tokens))
        if page in ("llm", "gpt"):  # the "Next token after the prompt" metric: its token and probability
            text, labels = key
            iv = Interventions(**toggled(KEYED_CHECKS[page], labels))
            if page == "llm":
                prompt = llama.prepare(self.llm, text)  # the page's layers: all 30 up to 128 tokens
                run = llama.run(self.llm, prompt, iv, llama.page_layers(len(prompt.ids), 0))
            else:
                loaded = self.gpt
                run = gpt.run(loaded, gpt.prepare(loaded, text), iv)
            return f"{run.top_tokens[-1][0]} p = {run.top_probs[-1, 0]:.1%}"
        model, _, _, vocab = self.captioner
        picture = Image.fromarray(generate(1, key[0])[0].image)
        seen, _ = model_input(picture)
        _, x = model_input(Image.fromarray(seen))  # as the runner's `picture` rebuilds it
        return captioner.run(model, vocab, x)[0].text or "(empty caption)"

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
