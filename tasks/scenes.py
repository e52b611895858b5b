"""Seeded captioning scenes: 1–3 shapes or handwritten digits on a plain background, 64×64 RGB.

Captions come from a small grammar that follows the layout:
  1 shape   "a small red circle"
  2 shapes  "a small red circle above a big blue square"   (or "left of": the larger separation)
  3 shapes  "a small red circle , a big blue square and a green triangle"   (left to right)
  digits    "the digit 7" / "the digits 3 1 4"   (real people's handwriting, left to right)
Every object keeps its pixel mask, and every caption word that names an object (the shape noun,
the digit) keeps that object's index: the pointing game asks whether attention lands inside it.
What people draw, the generator draws too (`tasks.hand`): shapes at any angle and at any size from
small to filling most of the picture (a "small" one's radius is 4.5–7.5 px, a "big" one's 10.5 px up
to what fits), filled or outlined by hand (bent sides, rounded corners, unclosed or overshooting
strokes) with a pen 1–6% of the picture's side wide, sometimes touching or overlapping a little, on
light, tinted or grey backgrounds; digits written by real people (scikit-learn's 8×8 scans and MNIST
at 28×28, thickened as by broader pens) or as pen strokes, 13–44 px tall. A third of the pictures are
letterboxed (aspect 0.5–0.9) as an upload of another shape is (`tasks.images.model_input`: bands in the
picture's median border colour). Plus blur, pixel noise and colour jitter.

Here: what a scene is, which kind each picture is, its letterbox, blur and noise, the split, the
vocabulary; `tasks.scene_drawing` places and draws the objects and says their caption words.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ImageFilter

from tasks.common import SPECIALS, Vocab, split_of
from tasks.scene_drawing import (
    BIG_MAX,
    COLOURS,
    CORNER_EXTENT,
    DIGIT_SIDES,
    DIGIT_SOURCES,
    DIGIT_WEIGHTS,
    FULL,
    OUTLINE_SHARE,
    PEN_INK,
    PEN_WIDTHS,
    RADII,
    REACH,
    SHAPES,
    SIZE,
    SIZES,
    SUPER,
    TOUCH_SHARE,
    Box,
    Drawn,
    corners_scene,
    digits_scene,
    draw_shapes,
    outline_points,
    shapes_scene,
    unambiguous,
)

__all__ = [  # the drawing's names too: tasks.scenes is where the rest of the project imports them from
    "BIG_MAX",
    "COLOURS",
    "CORNER_EXTENT",
    "CORNER_SHARE",
    "DIGIT_SIDES",
    "DIGIT_SOURCES",
    "DIGIT_WEIGHTS",
    "FULL",
    "LAYOUT_TRIES",
    "LETTERBOX_SHARE",
    "MAX_CAPTION",
    "OBJECT_COUNTS",
    "OUTLINE_SHARE",
    "PEN_INK",
    "PEN_WIDTHS",
    "RADII",
    "REACH",
    "SHAPES",
    "SIZE",
    "SIZES",
    "SUPER",
    "TOUCH_SHARE",
    "VOCABULARY",
    "Box",
    "Drawn",
    "Scene",
    "caption_is_defined",
    "cell_shares",
    "compose",
    "generate",
    "letterbox_bands",
    "outline_points",
    "render",
    "vocab",
]

LETTERBOX_SHARE = 0.3  # pictures letterboxed to another aspect ratio (0.5–0.9)
OBJECT_COUNTS = (1, 2, 2, 3, 3, 3)  # a scene's object count, drawn from these: three objects half the time
CORNER_SHARE = 0.15  # shape scenes of large filled triangles beside large filled squares (`corners_scene`)
LAYOUT_TRIES = 50  # layouts tried for one object count and box before both are drawn again
MAX_CAPTION = 20  # decoding stops here: the grammar's longest caption is 14 words + </s>


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (64, 64, 3) uint8
    caption: tuple[str, ...]
    masks: np.ndarray  # (n_objects, 64, 64) bool
    word_objects: tuple[int, ...]  # per caption word: the object it names, or -1
    key: str  # the scene's parameters, which decide its split


def _content_box(rng: random.Random) -> Box:
    """The whole picture, or (``LETTERBOX_SHARE``) a centred band of aspect 0.5–0.9 across it."""
    if rng.random() >= LETTERBOX_SHARE:
        return FULL
    short = SIZE * rng.uniform(0.5, 0.9)
    lo, hi = (SIZE - short) / 2, (SIZE + short) / 2
    return (0.0, lo, float(SIZE), hi) if rng.random() < 0.5 else (lo, 0.0, hi, float(SIZE))


def letterbox_bands(image: np.ndarray, box: Box) -> np.ndarray:
    """``image`` with everything outside ``box`` painted the median colour of the box's border
    pixels, as `tasks.images.model_input` pads an upload of that aspect ratio."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inner = image[y0:y1, x0:x1]
    border = np.concatenate([inner[0], inner[-1], inner[:, 0], inner[:, -1]])
    out = np.empty_like(image)
    out[:] = np.median(border, axis=0).astype(image.dtype)
    out[y0:y1, x0:x1] = inner
    return out


def render(rng: random.Random) -> Scene:
    """One random scene (60% shapes, ``CORNER_SHARE`` of them large filled triangles and squares; 40%
    digits; ``OBJECT_COUNTS`` objects) with blur and noise, maybe letterboxed."""
    drawn = None
    while drawn is None:  # a layout that cannot fit its box (three big shapes in a narrow band) is drawn anew
        n = rng.choice(OBJECT_COUNTS)
        maker = shapes_scene if rng.random() < 0.6 else digits_scene
        if maker is shapes_scene and rng.random() < CORNER_SHARE:
            maker = corners_scene
        box = _content_box(rng)
        for _ in range(LAYOUT_TRIES):
            drawn = maker(rng, n, box)
            if drawn is not None:
                break
    image, masks, words, links, key = drawn
    if rng.random() < 0.25:  # a picture downscaled from a larger one, or drawn with a soft brush
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    arr = np.asarray(image, dtype=np.float32)
    noise = rng.uniform(0, 12)
    arr = arr + np.random.default_rng(rng.randrange(2**32)).normal(0, noise, arr.shape)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if box != FULL:
        arr = letterbox_bands(arr, box)
        key += f" in {tuple(round(v, 1) for v in box)}"
    return Scene(arr, tuple(words), np.stack(masks), tuple(links), key)


def compose(objects: Sequence[tuple[str, str, str, float, float]], background=(240, 240, 240)) -> Scene:
    """A scene the user lays out: (shape, colour, size, x, y) per object, x and y in pixels.

    Its caption is what the grammar says of that layout; `caption_is_defined` tells whether the
    layout is one the generator would have drawn (no overlap, unambiguous order)."""
    objs = [(shape, colour, size) for shape, colour, size, _, _ in objects]
    centres = [(float(x), float(y)) for *_, x, y in objects]
    image, masks, words, links, key = draw_shapes(objs, centres, tuple(background), random.Random(0))
    return Scene(np.asarray(image), tuple(words), np.stack(masks), tuple(links), key)


def caption_is_defined(objects: Sequence[tuple[str, str, str, float, float]]) -> bool:
    centres = [(float(x), float(y)) for *_, x, y in objects]
    radii = [SIZES[o[2]] for o in objects]
    pairs = [(i, j) for i in range(len(centres)) for j in range(i + 1, len(centres))]
    apart = all(
        np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1]) > radii[i] + radii[j] + 3
        for i, j in pairs
    )
    return apart and (len(centres) == 1 or unambiguous(centres))


def cell_shares(masks: np.ndarray, grid: int = 8) -> np.ndarray:
    """(n_objects, H, W) masks → (n_objects, grid²): the share of each grid cell (row-major, the
    captioner's regions) that lies on each object. The pointing game and the attention supervision
    both read it."""
    n, h, _ = masks.shape
    side = h // grid
    return masks.reshape(n, grid, side, grid, side).mean((2, 4)).reshape(n, grid * grid)


def generate(n: int, seed: int, split: str | None = None) -> list[Scene]:
    """``n`` scenes from a seeded generator, optionally only those of one split."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        scene = render(rng)
        if split is None or split_of(scene.key) == split:
            out.append(scene)
    return out


VOCABULARY = sorted(
    {
        "a",
        "the",
        "digit",
        "digits",
        "left",
        "of",
        "above",
        ",",
        "and",
        *SIZES,
        *COLOURS,
        *SHAPES,
        *map(str, range(10)),
    }
)


def vocab() -> Vocab:
    """The caption vocabulary: the grammar's words, fixed rather than read off the training scenes,
    so every word has the same id whatever seed or size drew the training set."""
    return Vocab(SPECIALS + tuple(VOCABULARY))
