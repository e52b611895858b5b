"""Drawing a captioning scene's objects (`tasks.scenes` composes the pictures): where they go (an
unambiguous layout inside the picture's content box), the background, shapes drawn exactly or by
hand (`tasks.hand`) and handwritten digits, each object's pixel mask, and the caption words the
grammar gives their layout, each word that names an object linked to it.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from tasks import hand

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
SIZES = {"small": 6.5, "big": 11.0}  # radius in pixels of a composed scene's shapes
RADII = {"small": (4.5, 7.5), "big": (10.5, 27.0)}  # the generator's radius ranges (big: up to what fits)
BIG_MAX = {1: 27.0, 2: 17.0, 3: 13.0}  # the largest "big" radius by object count
REACH = {"circle": 1.15, "square": 1.3, "triangle": 1.1}  # farthest point / radius, hand-drawn, any angle
DIGIT_SIDES = {1: (14, 44), 2: (14, 30), 3: (13, 22)}  # a digit's box side in pixels, by count
OUTLINE_SHARE = 0.45  # shapes drawn as an outline only (a pen), not filled
PEN_WIDTHS = (0.7, 4.0)  # pen widths in pixels of the 64-px picture: 1.1–6.3% of its side
DIGIT_SOURCES = (("mnist", 0.4), ("sklearn", 0.25), ("pen", 0.35))  # who wrote a digit scene's digits
TOUCH_SHARE = 0.25  # shape scenes whose objects may touch or overlap a little
CORNER_EXTENT = (0.4, 0.9)  # a lone corner scene's shape spans this share of the picture's shorter side
# per digit class: 0 4 6 8 9 drawn more often, as people's 6/0 and 4/8/9 look alike
DIGIT_WEIGHTS = (1.6, 1, 1, 1, 1.6, 1, 1.6, 1, 1.6, 1.6)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: where the picture's content is
FULL: Box = (0.0, 0.0, float(SIZE), float(SIZE))


def unambiguous(centres: list[tuple[float, float]]) -> bool:
    """The caption's order must follow from the image: two objects are separated clearly more
    along one axis than the other; three are at clearly different x (they are read left to right)."""
    if len(centres) == 2:
        dx, dy = (abs(a - b) for a, b in zip(*centres, strict=True))
        return max(dx, dy) >= 1.4 * min(dx, dy)
    xs = sorted(x for x, _ in centres)
    return all(b - a >= 7 for a, b in zip(xs, xs[1:], strict=False))


def _place(
    rng: random.Random, radii: list[float], box: Box = FULL, closeness: float = 0.0
) -> list[tuple[float, float]] | None:
    """Centres, each object fully inside ``box``, in an unambiguous layout. Two objects' reaches stay
    3 px apart, or with ``closeness`` c > 0 may come within (1 − c)·(r₁ + r₂) (touching a little)."""
    x0, y0, x1, y1 = box
    centres: list[tuple[float, float]] = []
    for r in radii:
        if 2 * r + 2 > min(x1 - x0, y1 - y0):
            return None
        gap = [(1 - closeness) * (r + cr) if closeness else r + cr + 3 for cr in radii[: len(centres)]]
        for _ in range(200):
            x, y = rng.uniform(x0 + r + 1, x1 - r - 1), rng.uniform(y0 + r + 1, y1 - r - 1)
            if all(np.hypot(x - cx, y - cy) > g for (cx, cy), g in zip(centres, gap, strict=False)):
                centres.append((x, y))
                break
        else:
            return None
    return centres if unambiguous(centres) else None


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


Drawn = tuple[Image.Image, list[np.ndarray], list[str], list[int], str]  # image, masks, words, links, key


def shapes_scene(rng: random.Random, n: int, box: Box) -> Drawn | None:
    """Random shapes in ``box``, or None when the layout drawn did not fit (the caller draws again)."""
    objs = [(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(RADII))) for _ in range(n)]
    fits = (min(box[2] - box[0], box[3] - box[1]) / 2 - 1.5) / max(REACH[shape] for shape, _, _ in objs)
    radii = []
    for _, _, size in objs:
        lo, hi = RADII[size]
        hi = min(hi, BIG_MAX[n], fits) if size == "big" else hi
        radii.append(float(np.exp(rng.uniform(np.log(lo), np.log(max(lo, hi))))))
    closeness = rng.uniform(0.05, 0.25) if rng.random() < TOUCH_SHARE else 0.0
    reaches = [r * REACH[shape] for r, (shape, _, _) in zip(radii, objs, strict=True)]
    centres = _place(rng, reaches, box, closeness)
    if centres is None:
        return None
    return draw_shapes(objs, centres, _background(rng), rng, radii=radii, hand_drawn=True)


def corners_scene(rng: random.Random, n: int, box: Box) -> Drawn | None:
    """Large filled triangles beside large filled squares, as people draw them: turned to point up,
    right, down or left (a little off), so that only their corners tell them apart. One alone spans
    ``CORNER_EXTENT`` of the picture's shorter side; with others, a triangle and a square both "big" (a
    third shape any); or None when the layout drawn did not fit (the caller draws again)."""
    if n == 1:
        shapes = ["triangle" if rng.random() < 0.6 else "square"]
    else:
        shapes = ["triangle", "square", *(rng.choice(SHAPES) for _ in range(n - 2))]
        rng.shuffle(shapes)
    sizes = ["big" if k < 2 else rng.choice(list(RADII)) for k in range(n)]
    objs = [(shape, rng.choice(list(COLOURS)), size) for shape, size in zip(shapes, sizes, strict=True)]
    short = min(box[2] - box[0], box[3] - box[1])
    fits = (short / 2 - 1.5) / max(REACH[shape] for shape in shapes)
    radii = []
    for shape, _, size in objs:
        if size == "small":
            radii.append(rng.uniform(*RADII["small"]))
        elif n == 1:  # a triangle's corners span 1.9 r, a square's sides 1.7 r
            lo, hi = (e * short / (1.9 if shape == "triangle" else 1.7) for e in CORNER_EXTENT)
            radii.append(rng.uniform(max(lo, RADII["big"][0]), max(RADII["big"][0], min(hi, fits))))
        else:
            radii.append(rng.uniform(RADII["big"][0], max(RADII["big"][0], min(BIG_MAX[n], fits))))
    angles = [
        rng.choice((0, 1, 2, 3)) * np.pi / 2 + rng.gauss(0, 0.12)
        if shape == "triangle" or rng.random() < 0.6
        else rng.uniform(0, 2 * np.pi)
        for shape in shapes
    ]
    closeness = rng.uniform(0.05, 0.25) if rng.random() < TOUCH_SHARE else 0.0
    reaches = [r * REACH[shape] for r, shape in zip(radii, shapes, strict=True)]
    centres = _place(rng, reaches, box, closeness)
    if centres is None:
        return None
    bg = _background(rng)
    return draw_shapes(objs, centres, bg, rng, radii=radii, hand_drawn=True, angles=angles, filled=True)


def draw_shapes(
    objs: list[tuple[str, str, str]],
    centres: list[tuple[float, float]],
    bg: tuple,
    rng: random.Random,
    *,
    radii: list[float] | None = None,
    hand_drawn: bool = False,
    angles: list[float] | None = None,
    filled: bool = False,
) -> Drawn:
    """Each object filled, or (hand-drawn, not ``filled``: ``OUTLINE_SHARE``) outlined with a pen;
    hand-drawn ones are turned to ``angles`` (default: random) and drawn along
    `tasks.hand.hand_outline`, else exactly (`tasks.scenes.compose`). An object's mask is the region
    its outline encloses, less what later filled objects cover."""
    n = len(objs)
    radii = radii or [SIZES[size] for _, _, size in objs]
    canvas = Image.new("RGB", (SIZE * SUPER, SIZE * SUPER), bg)
    draw = ImageDraw.Draw(canvas)
    masks: list[np.ndarray] = []
    for k, ((shape, colour, _), (x, y), r) in enumerate(zip(objs, centres, radii, strict=True)):
        fill = tuple(int(np.clip(c + rng.randint(-12, 12), 0, 255)) for c in COLOURS[colour])
        outline = hand_drawn and not filled and rng.random() < OUTLINE_SHARE
        if hand_drawn:
            wobble = rng.uniform(0.2, 1.0) if outline else rng.uniform(0.0, 0.5)
            angle = angles[k] if angles is not None else rng.uniform(0, 2 * np.pi)
            path, ring = hand.hand_outline(shape, x, y, r, angle, rng, wobble=wobble)
            path, ring = [(u * SUPER, v * SUPER) for u, v in path], [(u * SUPER, v * SUPER) for u, v in ring]
        else:
            path = ring = outline_points(shape, x, y, r, rng, wobble=0.0)
        m = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(m).polygon(ring, fill=255)
        if outline:
            width = max(1, round(rng.uniform(*PEN_WIDTHS) * SUPER))
            draw.line(path, fill=fill, width=width, joint="curve")
        else:
            draw.polygon(ring, fill=fill)
        mask = np.asarray(m.resize((SIZE, SIZE), Image.BILINEAR)) > 64
        if not outline:  # a filled object hides what it covers
            masks = [earlier & ~mask for earlier in masks]
        masks.append(mask)
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
    layout = zip(objs, radii, centres, strict=True)
    key = repr([(o, round(r, 1), round(cx, 1), round(cy, 1)) for o, r, (cx, cy) in layout])
    return canvas.resize((SIZE, SIZE), Image.LANCZOS), masks, words, links, key


def digits_scene(rng: random.Random, n: int, box: Box) -> Drawn | None:
    """Random handwritten digits in ``box``, or None when the layout drawn did not fit."""
    (sk_images, sk_labels), (mn_images, mn_labels) = hand.handwriting()
    source = rng.choices([name for name, _ in DIGIT_SOURCES], [w for _, w in DIGIT_SOURCES])[0]
    images, labels = (mn_images, mn_labels) if source == "mnist" else (sk_images, sk_labels)
    digits = rng.choices(range(10), DIGIT_WEIGHTS, k=n)  # the class first, then one of its writings
    picks = [int(rng.choice(_of_class(source == "mnist", labels)[d])) for d in digits]
    sizes = [rng.randint(*DIGIT_SIDES[n]) for _ in range(n)]
    centres = _place(rng, [s / 2 for s in sizes], box)
    if centres is None:
        return None
    bg = np.array(_background(rng, darkest=150), dtype=np.float32)  # dark ink needs a light enough page
    ink = np.array([rng.randint(0, 70) for _ in range(3)], dtype=np.float32)
    img = np.tile(bg, (SIZE, SIZE, 1))
    width = rng.uniform(0.9, PEN_WIDTHS[1])  # one pen for the whole picture
    masks = []
    for p, d, s, (x, y) in zip(picks, digits, sizes, centres, strict=True):
        if source == "pen":
            alpha = hand.pen_digit(d, s, width, SUPER, rng)[..., None]
        else:
            alpha = hand.scanned_digit(images[p], s, SUPER, rng)[..., None]
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
            (source, "pen" if source == "pen" else int(p), d, s, round(cx, 1), round(cy, 1))
            for p, d, s, (cx, cy) in zip(picks, digits, sizes, centres, strict=True)
        ]
    )
    return Image.fromarray(img.astype(np.uint8)), masks, words, links, key


_CLASSES: dict[bool, list[np.ndarray]] = {}


def _of_class(mnist: bool, labels: np.ndarray) -> list[np.ndarray]:
    """Per digit class, the indices of its writings in one source (MNIST, or scikit-learn's)."""
    if mnist not in _CLASSES:
        _CLASSES[mnist] = [np.flatnonzero(labels == d) for d in range(10)]
    return _CLASSES[mnist]
