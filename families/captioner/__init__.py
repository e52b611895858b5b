"""Captioning: Show, Attend and Tell, trained here on scenes drawn the way people draw."""

import functools
import random

from PIL import Image

import models.captioner
from analysis.family import Bench, Control, Family, ImageInput, Smoke, Soak
from families.captioner import importance, runner, steps
from models.captioner import Captioner, CaptionerConfig
from models.checkpoints import load_checkpoint
from tasks.images import model_input
from tasks.scenes import generate


@functools.cache
def _default():
    return load_checkpoint(runner.DEFAULT, Captioner, CaptionerConfig)


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    seed = rng.randrange(10**6)
    return {"source": "random", "seed": str(seed)}, (seed,)


def _soak_expected(key: tuple) -> str:
    model, _, _, vocab = _default()
    seen, _ = model_input(Image.fromarray(generate(1, key[0])[0].image))
    _, x = model_input(Image.fromarray(seen))  # as the runner's `picture` rebuilds it from the pixels
    return runner.run(model, vocab, x)[0].text or "(empty caption)"


WHERE = "Where each word looks"
FAMILY = Family(
    name="captioner", title="Captioning", page="families/captioner/page.py", url_path="captioning", icon="🖼️",
    example=runner.example, network=Captioner, config=CaptionerConfig, training=models.captioner,
    served=runner.SERVED | importance.SERVED, measurements={"importance": importance.measure_cards},
    steps=steps.STEPS,  # its steps of the learner's path (start.STORY places them)
    tab_key="cap_view",
    url_inputs=("source", "sample", "seed", "cap_view"),
    url_needs={"seed": {"source": "random"}},
    image_inputs=(ImageInput("cap_upload", {"source": "upload"}),),
    smoke=Smoke(charts=3, traces=("image", "heatmap")),
    soak=Soak(_soak_pick, _soak_expected, output=("text after", "Caption")),
    bench=Bench((
        Control("radio", "Image:", ("random", "gallery")), Control("radio", "Image:", ("compose", "gallery")),
        *(Control("slider", s) for s in ("Sample", "Beam size (1 = greedy)", "Overlay opacity")),
        Control("tab", "Coverage and CNN self-attention", WHERE),
        Control("tab", "Statistics & export", WHERE),
        Control("slider", "Word", tab=WHERE),  # in an st.fragment
        Control("slider", "row", tab="Coverage and CNN self-attention"),  # in an st.fragment
        Control("tab", "Attention vs importance", WHERE),
    )),
)  # fmt: skip
