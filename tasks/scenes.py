"""Seeded captioning scenes: 1–3 shapes or handwritten digits on a light background, 64×64 RGB.

Captions come from a small grammar that follows the layout:
  1 shape   "a small red circle"
  2 shapes  "a small red circle above a big blue square"   (or "left of": the larger separation)
  3 shapes  "a small red circle , a big blue square and a green triangle"   (left to right)
  digits    "the digit 7" / "the digits 3 1 4"   (real scikit-learn handwriting, left to right)
Every object keeps its pixel mask, and every caption word that names an object (the shape noun,
the digit) keeps that object's index: the pointing game asks whether attention lands inside it.
Augmentation: background tint, pixel noise, colour jitter, hand-drawn outlines.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from tasks.common import SPECIALS, Vocab, split_of

SIZE = 64  # image side in pixels
SUPER = 3  # draw at 3× and downscale, for smooth edges
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (225, 195, 20),
    "purple": (140, 55, 185),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 6.5, "big": 11.0}  # radius in pixels
MAX_CAPTION = 20  # decoding stops here: the grammar's longest caption is 14 words + </s>


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (64, 64, 3) uint8
    caption: tuple[str, ...]
    masks: np.ndarray  # (n_objects, 64, 64) bool
    word_objects: tuple[int, ...]  # per caption word: the object it names, or -1
    key: str  # the scene's parameters, which decide its split


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images / 16.0, d.target


def _unambiguous(centres: list[tuple[float, float]]) -> bool:
    """The caption's order must follow from the image: two objects are separated clearly more
    along one axis than the other; three are at clearly different x (they are read left to right)."""
    if len(centres) == 2:
        dx, dy = (abs(a - b) for a, b in zip(*centres, strict=True))
        return max(dx, dy) >= 1.4 * min(dx, dy)
    xs = sorted(x for x, _ in centres)
    return all(b - a >= 7 for a, b in zip(xs, xs[1:], strict=False))


def _place(rng: random.Random, radii: list[float]) -> list[tuple[float, float]] | None:
    """Centres with no two objects touching, each fully on the canvas, in an unambiguous layout."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        for _ in range(200):
            x, y = rng.uniform(r + 2, SIZE - r - 2), rng.uniform(r + 2, SIZE - r - 2)
            if all(
                np.hypot(x - cx, y - cy) > r + cr + 3 for (cx, cy), cr in zip(centres, radii, strict=False)
            ):
                centres.append((x, y))
                break
        else:
            return None
    return centres if _unambiguous(centres) else None


def _polygon(shape: str, x: float, y: float, r: float, rng: random.Random, wobble: float) -> list[tuple]:
    if shape == "square":
        pts = [
            (x - r * 0.85, y - r * 0.85),
            (x + r * 0.85, y - r * 0.85),
            (x + r * 0.85, y + r * 0.85),
            (x - r * 0.85, y + r * 0.85),
        ]
    elif shape == "triangle":
        pts = [(x, y - r), (x + r * 0.95, y + r * 0.75), (x - r * 0.95, y + r * 0.75)]
    else:
        pts = [(x + r * np.cos(a), y + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
    return [
        ((px + rng.uniform(-wobble, wobble)) * SUPER, (py + rng.uniform(-wobble, wobble)) * SUPER)
        for px, py in pts
    ]


def _shapes_scene(
    rng: random.Random, n: int
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    objs = [(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES))) for _ in range(n)]
    centres = _place(rng, [SIZES[s] for _, _, s in objs])
    if centres is None:
        return _shapes_scene(rng, n)
    bg = tuple(rng.randint(205, 255) for _ in range(3))
    return _draw_shapes(objs, centres, bg, rng, outline_prob=0.25)


def _draw_shapes(
    objs: list[tuple[str, str, str]],
    centres: list[tuple[float, float]],
    bg: tuple,
    rng: random.Random,
    outline_prob: float,
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    n = len(objs)
    canvas = Image.new("RGB", (SIZE * SUPER, SIZE * SUPER), bg)
    draw = ImageDraw.Draw(canvas)
    masks = []
    for (shape, colour, size), (x, y) in zip(objs, centres, strict=True):
        fill = tuple(int(np.clip(c + rng.randint(-12, 12), 0, 255)) for c in COLOURS[colour])
        outline = rng.random() < outline_prob  # hand-drawn look: a wobbly thick outline, not a fill
        pts = _polygon(shape, x, y, SIZES[size], rng, wobble=0.8 if outline else 0.0)
        m = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(m).polygon(pts, fill=255)
        if outline:
            draw.line(pts + pts[:1], fill=fill, width=int(2.2 * SUPER), joint="curve")
        else:
            draw.polygon(pts, fill=fill)
        masks.append(np.asarray(m.resize((SIZE, SIZE), Image.BILINEAR)) > 64)
    # Caption: one object; two by their larger separation; three left to right.
    order = list(range(n))
    relation = None
    if n == 2:
        (x0, y0), (x1, y1) = centres
        relation = "left of" if abs(x1 - x0) >= abs(y1 - y0) else "above"
        order.sort(key=lambda i: centres[i][0] if relation == "left of" else centres[i][1])
    elif n == 3:
        order.sort(key=lambda i: centres[i][0])
    words, links = [], []
    for k, i in enumerate(order):
        if k:
            sep = relation.split() if n == 2 else ([","] if k == 1 else ["and"])
            words += sep
            links += [-1] * len(sep)
        shape, colour, size = objs[i]
        words += ["a", size, colour, shape]
        links += [-1, -1, -1, i]
    key = repr([(o, round(cx, 1), round(cy, 1)) for o, (cx, cy) in zip(objs, centres, strict=True)])
    return canvas.resize((SIZE, SIZE), Image.LANCZOS), masks, words, links, key


def _digits_scene(
    rng: random.Random, n: int
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    images, labels = _digits()
    picks = [rng.randrange(len(labels)) for _ in range(n)]
    sizes = [rng.randint(16, 22) for _ in range(n)]
    centres = _place(rng, [s / 2 for s in sizes])
    if centres is None:
        return _digits_scene(rng, n)
    bg = np.array([rng.randint(205, 255) for _ in range(3)], dtype=np.float32)
    ink = np.array([rng.randint(0, 70) for _ in range(3)], dtype=np.float32)
    img = np.tile(bg, (SIZE, SIZE, 1))
    masks = []
    for p, s, (x, y) in zip(picks, sizes, centres, strict=True):
        glyph = np.asarray(Image.fromarray((images[p] * 255).astype(np.uint8)).resize((s, s), Image.BILINEAR))
        alpha = glyph.astype(np.float32)[..., None] / 255.0
        top, left = int(round(y - s / 2)), int(round(x - s / 2))
        region = img[top : top + s, left : left + s]
        img[top : top + s, left : left + s] = region * (1 - alpha) + ink * alpha
        m = np.zeros((SIZE, SIZE), dtype=bool)
        m[top : top + s, left : left + s] = glyph > 60
        masks.append(m)
    order = sorted(range(n), key=lambda i: centres[i][0])
    words = ["the", "digits" if n > 1 else "digit"] + [str(labels[picks[i]]) for i in order]
    links = [-1, -1] + order
    key = repr([(int(p), round(cx, 1), round(cy, 1)) for p, (cx, cy) in zip(picks, centres, strict=True)])
    return Image.fromarray(img.astype(np.uint8)), masks, words, links, key


def render(rng: random.Random) -> Scene:
    """One random scene (60% shapes, 40% digits; 1–3 objects) with noise."""
    n = rng.choice((1, 2, 2, 3, 3))
    maker = _shapes_scene if rng.random() < 0.6 else _digits_scene
    image, masks, words, links, key = maker(rng, n)
    arr = np.asarray(image, dtype=np.float32)
    noise = rng.uniform(0, 12)
    arr = arr + np.random.default_rng(rng.randrange(2**32)).normal(0, noise, arr.shape)
    return Scene(np.clip(arr, 0, 255).astype(np.uint8), tuple(words), np.stack(masks), tuple(links), key)


def compose(objects: Sequence[tuple[str, str, str, float, float]], background=(240, 240, 240)) -> Scene:
    """A scene the user lays out: (shape, colour, size, x, y) per object, x and y in pixels.

    Its caption is what the grammar says of that layout; `caption_is_defined` tells whether the
    layout is one the generator would have drawn (no overlap, unambiguous order)."""
    objs = [(shape, colour, size) for shape, colour, size, _, _ in objects]
    centres = [(float(x), float(y)) for *_, x, y in objects]
    image, masks, words, links, key = _draw_shapes(objs, centres, tuple(background), random.Random(0), 0.0)
    return Scene(np.asarray(image), tuple(words), np.stack(masks), tuple(links), key)


def caption_is_defined(objects: Sequence[tuple[str, str, str, float, float]]) -> bool:
    centres = [(float(x), float(y)) for *_, x, y in objects]
    radii = [SIZES[o[2]] for o in objects]
    pairs = [(i, j) for i in range(len(centres)) for j in range(i + 1, len(centres))]
    apart = all(
        np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1]) > radii[i] + radii[j] + 3
        for i, j in pairs
    )
    return apart and (len(centres) == 1 or _unambiguous(centres))


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
