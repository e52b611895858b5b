"""The vision transformer's step of the learner's path: attention over a photo's patches — where [CLS]
looks in each head of the last layer, and which head gathers its attention on the fewest patches (DINO's
60% mask, the red outline), from the page's own served run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.family import Family, Query, Quiz, Step
from analysis.protocol import AttentionMaps
from families.vit import measures
from families.vit.inputs import gallery_names, gallery_picture
from families.vit.preprocess import letterbox
from families.vit.runner import NAME, SIDE, ViTRun
from models.attention import Interventions
from views.attention import image_overlay
from views.serving import cached

PHOTO = "flower"  # the gallery's photo the step opens on (`families.vit.inputs.GALLERY`)


@dataclass(frozen=True)
class Patches:
    seen: np.ndarray  # (224, 224, 3) the square the model sees
    run: ViTRun  # every layer's maps at 224 px (the page's run)

    @property
    def last(self) -> int:
        return self.run.n_layers - 1

    @property
    def masks(self) -> np.ndarray:
        """(h, N) bool: each last-layer head's fewest patches holding 60% of [CLS]'s attention on them."""
        return measures.dino_mask(measures.cls_to_patches(self.run.weights[self.last]))


def measure(family: Family, query: Query) -> Patches:
    """The page's gallery photo (``vit_photo``; its first when absent) at 224 px, nothing intervened."""
    name = query.get("vit_photo", PHOTO)
    if name not in gallery_names():
        raise ValueError(f"the gallery photo {name!r} is not installed: `pip install -r requirements.txt` "
                         "installs scikit-learn's.")  # fmt: skip
    seen, _ = letterbox(gallery_picture(name), SIDE)
    return Patches(seen, cached(family, "run")(NAME, seen.tobytes(), SIDE, Interventions(), None))


def view(result: Patches, key: str) -> None:
    run, last = result.run, result.last
    every = run.maps["self"]
    maps = AttentionMaps(every.title, every.weights[last : last + 1], every.queries, every.keys,
                         every.special_keys)  # fmt: skip  # the last layer's 6 heads
    outline = {(0, h): mask for h, mask in enumerate(result.masks)}
    image_overlay(maps, f"{key}_overlay", result.seen, run.grid, outline=(measures.MASK_NAME, outline),
                  layer_names=[f"L{last}"], title="DINOv2", file_stem="dinov2_path")  # fmt: skip


def quiz(result: Patches) -> Quiz:
    sizes = result.masks.sum(-1)  # (h,) patches in each head's outline
    rows = measures.cls_to_patches(result.run.weights[result.last])  # (h, N) [CLS] on the patches
    n_patches = result.masks.shape[-1]
    names = tuple(f"H{h}" for h in range(len(sizes)))
    best = int(np.argmin(sizes))  # the first of equals: the question names "the fewest"
    listed = ", ".join(f"{n} {int(s)}" for n, s in zip(names, sizes, strict=True))
    feedback = (
        f"{names[best]}: 60% of [CLS]'s attention on the patches sits in {int(sizes[best])} of the "
        f"{n_patches} patches (per head: {listed}); its brightest patch alone holds "
        f"{rows[best].max() / rows[best].sum():.3f}. No label told the model what the object is; the last "
        "layer's heads find parts of it on their own — DINO's finding, on a model trained without labels."
    )
    question = (f"In the last layer (L{result.last}), which head holds 60% of [CLS]'s attention on the "
                "patches in the fewest patches (the smallest red outline)?")  # fmt: skip
    return Quiz(question, names[best], feedback, names)


STEPS = (
    Step(
        id="patches", idea="Attention over images: a vision transformer",
        explain=(
            "A vision transformer has no convolutions after its first layer: it cuts the photo into "
            "14 × 14-pixel patches, turns each into a token, and puts a learned [CLS] token in front — 257 "
            "tokens at 224 px. Then it is the same self-attention as for words. DINOv2-small learned from "
            "photos without labels; its [CLS] token's attention in the last layer falls on the object, "
            "each head on its own part. The red outline is the fewest patches holding 60% of that attention."
        ),
        look_for="where each head's [CLS] attention sits on the photo, and how tight its outline is (hover "
                 "a patch for its weight; ←/→ switch heads).",
        query={"vit_source": "gallery", "vit_photo": PHOTO, "vit_side": str(SIDE),
               "vit_view": "Attention over the photo"},
        contrast={"vit_source": "gallery", "vit_photo": "china"},
        measure=measure, view=view, quiz=quiz,
        deeper="every layer and head, rollout, DINO's mask against an object's exact mask, high-norm tokens, "
               "the saliency map and interventions",
        more={"DINO's mask": {"vit_source": "gallery", "vit_photo": PHOTO, "vit_view": "DINO's mask"},
              "Rollout vs raw": {"vit_source": "gallery", "vit_photo": PHOTO, "vit_view": "Rollout vs raw"}},
    ),
)  # fmt: skip
