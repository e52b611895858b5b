"""Seeded captioning scenes: 1–3 shapes or handwritten digits on a plain background, 64×64 RGB.

Captions come from a small grammar that follows the layout:
  1 shape   "a small red circle"
  2 shapes  "a small red circle above a big blue square"   (or "left of": the larger separation)
  3 shapes  "a small red circle , a big blue square and a green triangle"   (left to right)
  digits    "the digit 7" / "the digits 3 1 4"   (real scikit-learn handwriting, left to right)
Every object keeps its pixel mask, and every caption word that names an object (the shape noun,
the digit) keeps that object's index: the pointing game asks whether attention lands inside it.
What people draw, the generator draws too: shapes at any angle (triangles point any way), filled
or outline-only with a pen's stroke width (1.5–4 px, the canvas's range), on light, tinted or grey
backgrounds; digits from scikit-learn's handwriting or as pen strokes (`PEN_DIGITS`: stroke paths
with jittered points, slant, rotation and width). Plus pixel noise and colour jitter.
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
PEN_INK = (30, 30, 30)  # the canvas's black pen, for digits: inside the training digits' ink (0–70)
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 6.5, "big": 11.0}  # radius in pixels
REACH = {"circle": 1.0, "square": 1.2, "triangle": 1.0}  # farthest point / radius, at any angle
OUTLINE_SHARE = 0.4  # shapes drawn as an outline only (a pen), not filled
PEN_WIDTHS = (1.5, 4.0)  # outline and pen-digit stroke widths in pixels (the canvas pen's range)
PEN_DIGIT_SHARE = 0.5  # digit scenes drawn with pen strokes instead of scikit-learn handwriting
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


def _background(rng: random.Random, darkest: int = 110) -> tuple[int, int, int]:
    """Half light (each channel 205–255), a quarter grey (one level, ``darkest``–230), a quarter
    tinted (a light colour with one or two channels lowered by up to 60)."""
    kind = rng.random()
    if kind < 0.5:
        return tuple(rng.randint(205, 255) for _ in range(3))
    if kind < 0.75:
        level = rng.randint(darkest, 230)
        return tuple(int(np.clip(level + rng.randint(-4, 4), 0, 255)) for _ in range(3))
    base = [rng.randint(215, 255) for _ in range(3)]
    for ch in rng.sample(range(3), rng.choice((1, 2))):
        base[ch] -= rng.randint(20, 60)
    return tuple(base)


def outline_points(
    shape: str, x: float, y: float, r: float, rng: random.Random, wobble: float, angle: float = 0.0
) -> list[tuple]:
    """The outline turned by ``angle`` radians about its centre, jittered by ``wobble`` px, at SUPER scale."""
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
    cos, sin = np.cos(angle), np.sin(angle)
    turned = [(x + (px - x) * cos - (py - y) * sin, y + (px - x) * sin + (py - y) * cos) for px, py in pts]
    return [
        ((px + rng.uniform(-wobble, wobble)) * SUPER, (py + rng.uniform(-wobble, wobble)) * SUPER)
        for px, py in turned
    ]


def _shapes_scene(
    rng: random.Random, n: int
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    objs = [(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES))) for _ in range(n)]
    centres = _place(rng, [SIZES[s] * REACH[shape] for shape, _, s in objs])
    if centres is None:
        return _shapes_scene(rng, n)
    return _draw_shapes(objs, centres, _background(rng), rng, outline_prob=OUTLINE_SHARE, rotate=True)


def _draw_shapes(
    objs: list[tuple[str, str, str]],
    centres: list[tuple[float, float]],
    bg: tuple,
    rng: random.Random,
    outline_prob: float,
    rotate: bool,
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    """Each object filled, or (``outline_prob``) outlined with a pen-width wobbly line; turned to a
    random angle when ``rotate``. An object's mask is the region its outline encloses."""
    n = len(objs)
    canvas = Image.new("RGB", (SIZE * SUPER, SIZE * SUPER), bg)
    draw = ImageDraw.Draw(canvas)
    masks = []
    for (shape, colour, size), (x, y) in zip(objs, centres, strict=True):
        fill = tuple(int(np.clip(c + rng.randint(-12, 12), 0, 255)) for c in COLOURS[colour])
        outline = rng.random() < outline_prob  # hand-drawn look: a wobbly pen outline, not a fill
        angle = rng.uniform(0, 2 * np.pi) if rotate else 0.0
        pts = outline_points(shape, x, y, SIZES[size], rng, wobble=0.8 if outline else 0.0, angle=angle)
        m = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(m).polygon(pts, fill=255)
        if outline:
            width = max(1, round(rng.uniform(*PEN_WIDTHS) * SUPER))
            draw.line(pts + pts[:1], fill=fill, width=width, joint="curve")
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


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> list[tuple[float, float]]:
    """Points along an ellipse arc in the unit box (y down), angles in degrees (0 = right, 90 = down)."""
    a = np.radians(np.linspace(start, stop, max(4, int(abs(stop - start) / 20) + 1)))
    return [(cx + rx * np.cos(t), cy + ry * np.sin(t)) for t in a]


# Each digit as pen strokes in a unit box (x right, y down); some digits have two ways people write them.
PEN_DIGITS: dict[int, tuple[tuple[list[tuple[float, float]], ...], ...]] = {
    0: ((_arc(0.5, 0.5, 0.32, 0.45, -90, 275),),),
    1: (([(0.5, 0.05), (0.5, 0.95)],), ([(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)],)),
    2: ((_arc(0.5, 0.3, 0.3, 0.25, 190, 380) + [(0.18, 0.95), (0.85, 0.95)],),),
    3: ((_arc(0.5, 0.28, 0.3, 0.23, 200, 450), _arc(0.5, 0.72, 0.32, 0.23, 270, 520)),),
    4: (
        ([(0.68, 0.95), (0.68, 0.05), (0.12, 0.65), (0.9, 0.65)],),
        ([(0.3, 0.05), (0.2, 0.6), (0.88, 0.6)], [(0.66, 0.3), (0.66, 0.95)]),
    ),
    5: (([(0.8, 0.05), (0.3, 0.05), (0.26, 0.47)], _arc(0.5, 0.67, 0.32, 0.28, 220, 500)),),
    6: (([(0.72, 0.05), (0.4, 0.3)] + _arc(0.5, 0.7, 0.3, 0.25, 200, 560),),),
    7: (
        ([(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)],),
        ([(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)], [(0.3, 0.5), (0.75, 0.5)]),
    ),
    8: ((_arc(0.5, 0.27, 0.25, 0.22, 90, 450), _arc(0.5, 0.72, 0.3, 0.24, -90, 270)),),
    9: ((_arc(0.5, 0.3, 0.3, 0.25, 0, 360), [(0.8, 0.3), (0.72, 0.95)]),),
}


def _pen_digit(digit: int, side: int, rng: random.Random) -> np.ndarray:
    """One digit written with a pen: a (side, side) float ink image in [0, 1]. The stroke path is
    jittered point by point, slanted, turned a little, squeezed sideways, drawn with a pen width."""
    strokes = rng.choice(PEN_DIGITS[digit])
    slant, turn, squeeze = rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25), rng.uniform(0.65, 1.0)
    cos, sin = np.cos(turn), np.sin(turn)
    big = side * SUPER
    ink = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(ink)
    width = max(1, round(rng.uniform(*PEN_WIDTHS) * SUPER))
    inner = big - width  # keep the pen inside the box

    def place(px: float, py: float) -> tuple[float, float]:
        u = (px - 0.5) * squeeze + slant * (0.5 - py) + rng.gauss(0, 0.025)
        v = (py - 0.5) + rng.gauss(0, 0.025)
        u, v = u * cos - v * sin, u * sin + v * cos
        return big / 2 + u * inner * 0.92, big / 2 + v * inner * 0.92

    for stroke in strokes:
        draw.line([place(*pt) for pt in stroke], fill=255, width=width, joint="curve")
    return np.asarray(ink.resize((side, side), Image.LANCZOS), dtype=np.float32) / 255.0


def _digits_scene(
    rng: random.Random, n: int
) -> tuple[Image.Image, list[np.ndarray], list[str], list[int], str]:
    images, labels = _digits()
    pen = rng.random() < PEN_DIGIT_SHARE
    picks = [rng.randrange(len(labels)) for _ in range(n)]
    digits = [int(labels[p]) for p in picks]
    sizes = [rng.randint(16, 22) for _ in range(n)]
    centres = _place(rng, [s / 2 for s in sizes])
    if centres is None:
        return _digits_scene(rng, n)
    bg = np.array(_background(rng, darkest=150), dtype=np.float32)  # dark ink needs a light enough page
    ink = np.array([rng.randint(0, 70) for _ in range(3)], dtype=np.float32)
    img = np.tile(bg, (SIZE, SIZE, 1))
    masks = []
    for p, d, s, (x, y) in zip(picks, digits, sizes, centres, strict=True):
        if pen:
            alpha = _pen_digit(d, s, rng)[..., None]
        else:
            glyph = Image.fromarray((images[p] * 255).astype(np.uint8)).resize((s, s), Image.BILINEAR)
            alpha = np.asarray(glyph, dtype=np.float32)[..., None] / 255.0
        top, left = int(round(y - s / 2)), int(round(x - s / 2))
        region = img[top : top + s, left : left + s]
        img[top : top + s, left : left + s] = region * (1 - alpha) + ink * alpha
        m = np.zeros((SIZE, SIZE), dtype=bool)
        m[top : top + s, left : left + s] = alpha[..., 0] > 60 / 255
        masks.append(m)
    order = sorted(range(n), key=lambda i: centres[i][0])
    words = ["the", "digits" if n > 1 else "digit"] + [str(digits[i]) for i in order]
    links = [-1, -1] + order
    key = repr(
        [
            ("pen" if pen else int(p), d, round(cx, 1), round(cy, 1))
            for p, d, (cx, cy) in zip(picks, digits, centres, strict=True)
        ]
    )
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
    image, masks, words, links, key = _draw_shapes(
        objs, centres, tuple(background), random.Random(0), outline_prob=0.0, rotate=False
    )
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
