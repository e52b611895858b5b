"""Make tests/data/drawings2/: a second set of drawings, made another way than tests/data/drawings.

The first set was drawn with the mouse on the page's canvas (256×256, round pen, 2–4 px in the
model's units). This one is drawn with Pillow straight into image files, at the sizes and shapes
people upload (96 px to 2,048 px, square, landscape and portrait), by hand-placed point paths
written here — not the training generator's (`tasks/hand.py`) nor make_drawings.py's: every
shape's corners are listed by hand and the path between them is smoothed by Chaikin corner
cutting; digits are letterforms of their own (a flagged 1 with a foot, a closed 4, a crossed 7, a
looped 2, an 8 of two separate rings, a 9 with a straight stem …). Three pens: a marker (one
width), a brush (its width swelling and thinning along the stroke) and a pencil (thin, grey ink,
a grainy line); widths 1–5% of the picture's side. Colours are near the model's, not its exact
ones; the paper is white, cream or light grey. Large triangles pointing down and sideways, three
shapes in a row, shapes that touch, thick-stroke digits: the kinds the first model missed.

Each drawing's caption is what the grammar says of the layout (`tasks.scenes`: two objects by their
larger separation, three and digits left to right; "big" when the radius is over 9 px of the
model's 64). Run from the repository root:

    python tests/data/make_drawings2.py

It rewrites tests/data/drawings2/*.png and tests/data/drawings2.csv (file, caption, size, pen).
Kept out of training: nothing here is read by tasks/ or training/.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent / "drawings2"
INKS = {  # near the model's colours, as a person's pens are
    "red": (222, 52, 47),
    "green": (52, 150, 70),
    "blue": (35, 95, 205),
    "yellow": (232, 190, 35),
    "purple": (128, 62, 170),
    "black": (25, 25, 35),
}
PAPERS = ((255, 255, 255), (250, 246, 232), (232, 232, 232))

Point = tuple[float, float]

# Shapes by their hand-placed corners in a unit box around the centre (x right, y down), before a turn.
TRIANGLE = [(0.0, -1.0), (0.9, 0.68), (-0.88, 0.72)]
SQUARE = [(-0.82, -0.8), (0.84, -0.83), (0.8, 0.82), (-0.83, 0.8)]


def chaikin(points: list[Point], rounds: int, closed: bool) -> list[Point]:
    """Corner cutting: each round replaces every segment by its ¼ and ¾ points (rounder corners)."""
    for _ in range(rounds):
        ring = points + points[:1] if closed else points
        cut: list[Point] = [] if closed else [points[0]]
        for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False):
            cut += [
                (0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1),
                (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1),
            ]
        points = cut if closed else cut + [points[-1]]
    return points


def shape_path(shape: str, x: float, y: float, r: float, turn: float, rng: random.Random) -> list[Point]:
    """A closed path around the shape, the start repeated a little past the end (how a hand closes it)."""
    if shape == "circle":
        corners = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 9, endpoint=False)]
        corners = [
            (u * (1 + rng.uniform(-0.05, 0.05)), v * (1 + rng.uniform(-0.05, 0.05))) for u, v in corners
        ]
        rounds = 4
    else:
        corners = TRIANGLE if shape == "triangle" else SQUARE
        corners = [(u + rng.uniform(-0.04, 0.04), v + rng.uniform(-0.04, 0.04)) for u, v in corners]
        # Straight sides kept straight: add side midpoints so corner cutting only rounds the corners.
        corners = [
            p for a, b in zip(corners, corners[1:] + corners[:1], strict=True) for p in (a, _mid(a, b))
        ]
        rounds = 2
    c, s = math.cos(turn), math.sin(turn)
    pts = [(x + r * (u * c - v * s), y + r * (u * s + v * c)) for u, v in corners]
    ring = chaikin(pts, rounds, closed=True)
    return ring + ring[: max(2, len(ring) // 12)]


def _mid(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


# Digits: strokes in a unit box (x right, y down), drawn in this order.
def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 14) -> list[Point]:
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(a0, a1, n)
    ]


DIGITS: dict[int, list[list[Point]]] = {
    0: [arc(0.5, 0.5, 0.34, 0.46, 270, -90, 20)],  # counter-clockwise from the top
    1: [[(0.28, 0.26), (0.55, 0.04), (0.55, 0.96)], [(0.3, 0.96), (0.8, 0.96)]],  # a flag and a foot
    2: [
        arc(0.5, 0.3, 0.3, 0.26, 200, 400)
        + [(0.2, 0.92)]
        + arc(0.3, 0.86, 0.1, 0.08, 180, 450)
        + [(0.88, 0.93)]
    ],
    3: [[(0.2, 0.06), (0.78, 0.06), (0.48, 0.42)] + arc(0.5, 0.68, 0.32, 0.28, -90, 150)],  # a flat top
    4: [[(0.7, 0.96), (0.7, 0.04), (0.12, 0.68), (0.92, 0.68)]],  # closed, one stroke
    5: [[(0.3, 0.06), (0.26, 0.46)] + arc(0.5, 0.68, 0.3, 0.27, 220, 500), [(0.3, 0.06), (0.82, 0.06)]],
    6: [arc(0.55, 0.52, 0.36, 0.46, 290, 180, 10) + arc(0.5, 0.72, 0.3, 0.24, 180, 540, 18)],
    7: [[(0.14, 0.08), (0.86, 0.06), (0.42, 0.96)], [(0.34, 0.52), (0.78, 0.5)]],  # crossed
    8: [arc(0.5, 0.27, 0.24, 0.22, 0, 360, 16), arc(0.5, 0.72, 0.3, 0.25, 0, 360, 18)],  # two rings
    9: [arc(0.48, 0.3, 0.3, 0.26, 0, -360, 18), [(0.78, 0.3), (0.78, 0.96)]],  # a straight stem
}


def digit_strokes(d: int, x: float, y: float, h: float, rng: random.Random) -> list[list[Point]]:
    w, slant = h * rng.uniform(0.55, 0.75), rng.uniform(-0.15, 0.15)
    return [
        chaikin([(x + (u - 0.5) * w + slant * (0.5 - v) * h, y + (v - 0.5) * h) for u, v in stroke], 1, False)
        for stroke in DIGITS[d]
    ]


def pen_stroke(
    draw: ImageDraw.ImageDraw, path: list[Point], ink: tuple, width: float, pen: str, rng: random.Random
) -> None:
    """One stroke: a marker (fixed width, round ends), a brush (width swelling and thinning) or a
    pencil (grainy: some dabs lighter, the width a little uneven)."""
    phase = rng.uniform(0, 2 * math.pi)
    for i, (a, b) in enumerate(zip(path, path[1:], strict=False)):
        t = i / max(1, len(path) - 2)
        w = width
        colour = ink
        if pen == "brush":
            w = width * (0.6 + 0.6 * math.sin(math.pi * t) + 0.15 * math.sin(7 * t + phase))
        elif pen == "pencil":
            w = width * rng.uniform(0.8, 1.1)
            light = rng.uniform(0.0, 0.35)
            colour = tuple(int(c + (255 - c) * light) for c in ink)
        steps = max(1, int(math.hypot(b[0] - a[0], b[1] - a[1]) / max(1.0, w / 3)))
        for k in range(steps + 1):  # round dabs along the segment: round ends and joins
            px, py = a[0] + (b[0] - a[0]) * k / steps, a[1] + (b[1] - a[1]) * k / steps
            draw.ellipse((px - w / 2, py - w / 2, px + w / 2, py + w / 2), fill=colour)


# The drawings: picture size (W, H), pen, width (share of the shorter side), and objects. A shape is
# (shape, colour, x, y, radius, turn in degrees, filled) with x, y as shares of W, H and the radius a
# share of the shorter side; a digit is (digit, x, y, height share).
SCENES: list[dict] = [
    # Single shapes: large triangles pointing down and sideways, large and small squares and circles.
    dict(
        size=(256, 256), pen="marker", width=0.035, shapes=[("triangle", "red", 0.5, 0.52, 0.25, 180, True)]
    ),
    dict(size=(512, 512), pen="brush", width=0.03, shapes=[("triangle", "blue", 0.5, 0.5, 0.3, 90, False)]),
    dict(
        size=(1024, 768), pen="marker", width=0.04, shapes=[("triangle", "green", 0.48, 0.5, 0.33, 270, True)]
    ),
    dict(
        size=(300, 300), pen="pencil", width=0.02, shapes=[("triangle", "purple", 0.5, 0.5, 0.38, 200, False)]
    ),
    dict(size=(200, 200), pen="marker", width=0.05, shapes=[("square", "yellow", 0.5, 0.5, 0.3, 12, False)]),
    dict(size=(2048, 2048), pen="marker", width=0.03, shapes=[("square", "red", 0.5, 0.5, 0.36, -8, True)]),
    dict(size=(96, 96), pen="marker", width=0.04, shapes=[("circle", "blue", 0.5, 0.5, 0.12, 0, True)]),
    dict(size=(600, 300), pen="brush", width=0.04, shapes=[("circle", "green", 0.4, 0.5, 0.32, 0, False)]),
    dict(
        size=(300, 600), pen="pencil", width=0.025, shapes=[("square", "purple", 0.5, 0.45, 0.22, 30, False)]
    ),
    dict(
        size=(400, 400), pen="marker", width=0.02, shapes=[("triangle", "yellow", 0.55, 0.45, 0.1, 60, False)]
    ),
    # Pairs, some touching.
    dict(
        size=(512, 512),
        pen="marker",
        width=0.03,
        shapes=[
            ("triangle", "red", 0.27, 0.5, 0.17, 180, False),
            ("square", "blue", 0.72, 0.48, 0.16, 5, True),
        ],
    ),
    dict(
        size=(800, 600),
        pen="brush",
        width=0.035,
        shapes=[
            ("circle", "yellow", 0.5, 0.25, 0.13, 0, True),
            ("triangle", "green", 0.48, 0.7, 0.2, 90, False),
        ],
    ),
    dict(
        size=(256, 256),
        pen="pencil",
        width=0.025,
        shapes=[
            ("square", "green", 0.32, 0.5, 0.16, 0, False),
            ("circle", "purple", 0.66, 0.52, 0.17, 0, False),
        ],
    ),
    dict(
        size=(1200, 1200),
        pen="marker",
        width=0.045,
        shapes=[("triangle", "blue", 0.3, 0.3, 0.16, 270, True), ("circle", "red", 0.7, 0.72, 0.2, 0, False)],
    ),
    dict(
        size=(640, 360),
        pen="marker",
        width=0.04,
        shapes=[
            ("square", "purple", 0.3, 0.5, 0.18, 20, True),
            ("triangle", "yellow", 0.68, 0.5, 0.26, 0, True),
        ],
    ),
    dict(
        size=(360, 640),
        pen="brush",
        width=0.03,
        shapes=[
            ("triangle", "red", 0.5, 0.3, 0.2, 180, False),
            ("square", "green", 0.5, 0.72, 0.2, 45, False),
        ],
    ),
    # Threes, left to right.
    dict(
        size=(768, 512),
        pen="marker",
        width=0.03,
        shapes=[
            ("circle", "red", 0.16, 0.4, 0.12, 0, True),
            ("square", "blue", 0.5, 0.6, 0.13, 10, False),
            ("triangle", "green", 0.83, 0.42, 0.14, 0, True),
        ],
    ),
    dict(
        size=(512, 512),
        pen="brush",
        width=0.03,
        shapes=[
            ("triangle", "purple", 0.18, 0.7, 0.12, 180, True),
            ("circle", "yellow", 0.5, 0.3, 0.13, 0, False),
            ("square", "red", 0.8, 0.68, 0.12, 0, True),
        ],
    ),
    dict(
        size=(1024, 1024),
        pen="marker",
        width=0.025,
        shapes=[
            ("square", "green", 0.17, 0.25, 0.12, 15, False),
            ("triangle", "blue", 0.5, 0.72, 0.18, 90, True),
            ("circle", "purple", 0.82, 0.3, 0.12, 0, True),
        ],
    ),
    dict(
        size=(300, 200),
        pen="pencil",
        width=0.03,
        shapes=[
            ("circle", "blue", 0.17, 0.5, 0.17, 0, False),
            ("circle", "red", 0.5, 0.5, 0.15, 0, False),
            ("triangle", "yellow", 0.83, 0.5, 0.17, 0, True),
        ],
    ),
    dict(
        size=(600, 600),
        pen="marker",
        width=0.035,
        shapes=[
            ("triangle", "red", 0.2, 0.5, 0.15, 270, True),
            ("triangle", "green", 0.5, 0.5, 0.15, 180, True),
            ("square", "yellow", 0.8, 0.5, 0.13, 0, False),
        ],
    ),
    dict(
        size=(2048, 1536),
        pen="brush",
        width=0.03,
        shapes=[
            ("square", "blue", 0.15, 0.7, 0.13, 0, True),
            ("circle", "green", 0.47, 0.3, 0.15, 0, True),
            ("triangle", "purple", 0.8, 0.65, 0.17, 90, False),
        ],
    ),
    # Digits, thick strokes among them.
    dict(size=(256, 256), pen="marker", width=0.035, digits=[(0, 0.5, 0.5, 0.6)]),
    dict(size=(512, 512), pen="marker", width=0.045, digits=[(8, 0.5, 0.5, 0.65)]),
    dict(size=(300, 300), pen="brush", width=0.04, digits=[(9, 0.5, 0.5, 0.55)]),
    dict(size=(128, 128), pen="marker", width=0.05, digits=[(4, 0.5, 0.5, 0.5)]),
    dict(size=(1024, 1024), pen="pencil", width=0.015, digits=[(7, 0.5, 0.5, 0.5)]),
    dict(size=(400, 600), pen="marker", width=0.03, digits=[(2, 0.5, 0.5, 0.45)]),
    dict(size=(256, 256), pen="brush", width=0.035, digits=[(6, 0.5, 0.5, 0.55)]),
    dict(size=(200, 200), pen="marker", width=0.03, digits=[(1, 0.5, 0.5, 0.5)]),
    dict(size=(512, 512), pen="marker", width=0.04, digits=[(9, 0.28, 0.5, 0.4), (1, 0.72, 0.5, 0.4)]),
    dict(size=(600, 400), pen="brush", width=0.035, digits=[(3, 0.3, 0.5, 0.45), (5, 0.7, 0.5, 0.45)]),
    dict(size=(256, 256), pen="marker", width=0.035, digits=[(2, 0.28, 0.45, 0.38), (0, 0.72, 0.55, 0.38)]),
    dict(size=(800, 800), pen="pencil", width=0.02, digits=[(4, 0.3, 0.4, 0.35), (7, 0.7, 0.6, 0.35)]),
    dict(
        size=(768, 512),
        pen="marker",
        width=0.03,
        digits=[(8, 0.2, 0.5, 0.4), (0, 0.5, 0.5, 0.4), (6, 0.8, 0.5, 0.4)],
    ),
    dict(
        size=(512, 512),
        pen="brush",
        width=0.03,
        digits=[(1, 0.2, 0.4, 0.3), (9, 0.5, 0.6, 0.3), (3, 0.8, 0.4, 0.3)],
    ),
    dict(size=(2048, 2048), pen="marker", width=0.035, digits=[(5, 0.3, 0.5, 0.4), (2, 0.7, 0.5, 0.4)]),
    dict(size=(300, 150), pen="marker", width=0.04, digits=[(6, 0.3, 0.5, 0.6), (4, 0.7, 0.5, 0.6)]),
    # The smallest and a tall picture.
    dict(size=(64, 64), pen="marker", width=0.05, shapes=[("triangle", "yellow", 0.5, 0.5, 0.3, 90, True)]),
    dict(size=(1536, 2048), pen="marker", width=0.045, digits=[(7, 0.3, 0.35, 0.3), (3, 0.7, 0.65, 0.3)]),
]


def caption(scene: dict) -> str:
    """The grammar's caption of the layout, in pixels of the picture (a letterbox scales it evenly)."""
    w, h = scene["size"]
    if "digits" in scene:
        ordered = [str(d) for d, *_ in sorted(scene["digits"], key=lambda t: t[1])]
        return ("the digits " if len(ordered) > 1 else "the digit ") + " ".join(ordered)
    objs = [(shape, colour, x * w, y * h, r * min(w, h)) for shape, colour, x, y, r, _, _ in scene["shapes"]]
    order = list(range(len(objs)))
    relation = None
    if len(objs) == 2:
        dx, dy = abs(objs[1][2] - objs[0][2]), abs(objs[1][3] - objs[0][3])
        relation = "left of" if dx >= dy else "above"
        order.sort(key=lambda i: objs[i][2] if relation == "left of" else objs[i][3])
    else:
        order.sort(key=lambda i: objs[i][2])
    words = []
    for k, i in enumerate(order):
        shape, colour, _, _, r = objs[i]
        if k:
            words.append(relation if len(objs) == 2 else ("," if k == 1 else "and"))
        words += ["a", "big" if r * 64 / max(w, h) > 9 else "small", colour, shape]
    return " ".join(words)


def draw(scene: dict, rng: random.Random) -> Image.Image:
    w, h = scene["size"]
    side = min(w, h)
    img = Image.new("RGB", (w, h), rng.choice(PAPERS))
    d = ImageDraw.Draw(img)
    width = max(1.0, scene["width"] * side)
    for shape, colour, x, y, r, turn, filled in scene.get("shapes", []):
        ink = tuple(int(np.clip(c + rng.randint(-15, 15), 0, 255)) for c in INKS[colour])
        path = shape_path(shape, x * w, y * h, r * side, math.radians(turn), rng)
        if filled:
            d.polygon(path, fill=ink)
        pen_stroke(d, path, ink, width, scene["pen"], rng)
    for digit, x, y, height in scene.get("digits", []):
        for stroke in digit_strokes(digit, x * w, y * h, height * side, rng):
            pen_stroke(d, stroke, INKS["black"], width, scene["pen"], rng)
    return img


def main() -> None:
    rng = random.Random(20261203)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, scene in enumerate(SCENES):
        name = f"{n:02d}.png"
        draw(scene, rng).save(OUT / name, optimize=True)
        rows.append(
            {
                "file": name,
                "caption": caption(scene),
                "size": "×".join(map(str, scene["size"])),
                "pen": scene["pen"],
            }
        )
        print(name, rows[-1]["size"], rows[-1]["caption"])
    with open(OUT.parent / "drawings2.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "caption", "size", "pen"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
