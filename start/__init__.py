"""The start page: the app's default page, a learner's path through the material — one step per idea,
each a live view on one of our models, a question graded against that model's numbers, and a link
to the page that goes deeper — beside a map of every idea's views.

Each family declares its own steps (`analysis.family.Step`, in ``families/<name>/steps.py``); the story's
order is this one list, naming them by (family, step id). A family the app does not register (yet) is
skipped; `tests/test_path.py` fails when a registered family declares a step the story does not place,
or the story names one that family does not declare.
"""

from analysis.family import Bench, Control, Smoke, StartPage

STORY = (
    ("seq2seq", "bottleneck"),  # the fixed-vector bottleneck
    ("seq2seq", "alignment"),  # attention as alignment
    ("transformer", "scaling"),  # scaled dot-product attention and why 1/√d_k
    ("bert", "self-attention"),  # self-attention and why W_Q, W_K, W_V exist
    ("transformer", "masks"),  # masks
    ("transformer", "multi-head"),  # multi-head: split, concat, W_O
    ("transformer", "positions"),  # positional encoding
    ("transformer", "block"),  # the whole block: post- vs pre-norm, warm-up
    ("transformer", "cross-attention"),  # encoder–decoder cross-attention
    ("gpt", "induction"),  # GPT-style decoders and induction heads
    ("llm", "sinks"),  # a real LLM: GQA, RoPE, sinks
    ("llm", "name-movers"),  # what one head does: IOI name movers
    ("captioner", "hide-regions"),  # captioning with attention
    ("vit", "patches"),  # attention over images (declared by the vision-transformer family)
)
FIRST_VIEW = "path_bottleneck_map"  # the attention component the first step draws

START = StartPage(
    name="start", title="Start here", page="start/page.py", url_path="start", icon="🧭",
    url_inputs=("step",), story=STORY, forwards="seq2seq",
    smoke=Smoke(component=FIRST_VIEW),
    bench=Bench((
        Control("look", FIRST_VIEW, "hover"),
        Control("radio", "The path", ("Attention as alignment", "The fixed-vector bottleneck")),
    )),
)  # fmt: skip
