"""Make tests/data/drawings/: freehand drawings made on the captioning page's own canvas, in Chromium,
with the mouse — the path a visitor's drawing takes (canvas strokes, round pen, PNG, upload checks).

No person drew these (none was at hand): a scripted hand draws them, along wobbly paths written here
and NOT taken from the training generator (`tasks/scenes.py`): circles with a drifting radius and an
overshooting close, polygons whose sides bend, digits in letterforms of their own. Each drawing's
caption is what the grammar says of the layout that was meant (`scenes.compose` for shapes; digits
read left to right). Run from the repository root (needs chromium, see README):

    python tests/data/make_drawings.py

It rewrites tests/data/drawings/*.png and tests/data/drawings.csv (file, caption).
"""

from __future__ import annotations

import base64
import csv
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from benchmarks.bench_browser import BROWSER_ARGS, CHROMIUM, start_server, stop_server  # noqa: E402
from tasks.scenes import SIZES, compose  # noqa: E402

OUT = ROOT / "tests" / "data" / "drawings"
SCALE = 4  # canvas pixels per model pixel (256 / 64)

Point = tuple[float, float]


def wobbly(points: list[Point], rng: random.Random, wobble: float = 0.35, step: float = 1.5) -> list[Point]:
    """A hand going through ``points``: each side cut into ~``step``-pixel moves, pushed sideways by a
    slowly drifting offset (a hand does not draw straight)."""
    out, drift = [], 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        n = max(2, int(math.hypot(x1 - x0, y1 - y0) / step))
        nx, ny = -(y1 - y0), x1 - x0
        norm = math.hypot(nx, ny) or 1.0
        for i in range(n):
            drift = 0.8 * drift + rng.gauss(0, wobble)
            t = i / n
            out.append((x0 + t * (x1 - x0) + drift * nx / norm, y0 + t * (y1 - y0) + drift * ny / norm))
    out.append(points[-1])
    return out


def shape_path(shape: str, x: float, y: float, r: float, angle: float, rng: random.Random) -> list[Point]:
    """One stroke around the shape, closed with a small overshoot, as people close a figure."""
    if shape == "circle":
        start, turns = rng.uniform(0, 2 * math.pi), 1 + rng.uniform(0.03, 0.12)
        phase, bulge = rng.uniform(0, 2 * math.pi), rng.uniform(0.03, 0.09)
        pts = []
        for i in range(41):
            a = start + 2 * math.pi * turns * i / 40
            rr = r * (1 + bulge * math.sin(2 * a + phase))
            pts.append((x + rr * math.cos(a), y + rr * math.sin(a)))
        return wobbly(pts, rng, wobble=0.15)
    if shape == "square":
        corners = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    else:  # a triangle, pointing wherever ``angle`` turns it
        corners = [(0.0, -1.0), (0.9, 0.72), (-0.9, 0.72)]
    c, s = math.cos(angle), math.sin(angle)
    pts = [
        (x + r * (u * c - v * s) + rng.gauss(0, 0.4), y + r * (u * s + v * c) + rng.gauss(0, 0.4))
        for u, v in corners
    ]
    first, second = pts[0], pts[1]
    over = (first[0] + 0.15 * (second[0] - first[0]), first[1] + 0.15 * (second[1] - first[1]))
    return wobbly(pts + [first, over], rng)


def ellipse(cx, cy, rx, ry, a0, a1, n=16) -> list[Point]:
    """Unit-box arc, angles in degrees, 0 = right, 90 = down."""
    angles = [math.radians(a0 + (a1 - a0) * i / n) for i in range(n + 1)]
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Letterforms of this script's own (unit box, y down): different start points, proportions and
# stroke orders from the training generator's PEN_DIGITS.
LETTERS: dict[int, list[list[Point]]] = {
    0: [ellipse(0.5, 0.5, 0.36, 0.47, -100, 280)],
    1: [[(0.42, 0.12), (0.56, 0.02), (0.52, 0.98)]],
    2: [ellipse(0.48, 0.33, 0.33, 0.3, 200, 350) + [(0.25, 0.9), (0.22, 0.97), (0.9, 0.94)]],
    3: [[(0.2, 0.08), (0.8, 0.08), (0.45, 0.42)] + ellipse(0.5, 0.7, 0.33, 0.27, -80, 150)],
    4: [[(0.55, 0.02), (0.12, 0.66), (0.92, 0.66)], [(0.68, 0.25), (0.66, 0.98)]],
    5: [[(0.82, 0.04), (0.28, 0.06), (0.22, 0.44)] + ellipse(0.48, 0.68, 0.34, 0.28, 230, 500)],
    6: [
        [(0.78, 0.02)] + ellipse(0.62, 0.62, 0.42, 0.6, 250, 180) + ellipse(0.48, 0.72, 0.28, 0.24, 180, 535)
    ],
    7: [[(0.12, 0.06), (0.9, 0.04), (0.62, 0.5), (0.46, 0.98)]],
    8: [
        ellipse(0.5, 0.26, 0.26, 0.22, 0, -270)
        + ellipse(0.5, 0.72, 0.32, 0.26, -90, 270)
        + ellipse(0.5, 0.26, 0.26, 0.22, 90, 0)
    ],
    9: [ellipse(0.46, 0.3, 0.3, 0.26, 350, -10), [(0.76, 0.2), (0.74, 0.98)]],
}


def digit_strokes(d: int, x: float, y: float, height: float, rng: random.Random) -> list[list[Point]]:
    slant = rng.uniform(-0.2, 0.2)
    width = height * rng.uniform(0.6, 0.8)

    def to_box(u: float, v: float) -> Point:
        return x + (u - 0.5) * width + slant * (0.5 - v) * height, y + (v - 0.5) * height

    return [wobbly([to_box(u, v) for u, v in stroke], rng, wobble=0.12, step=1.0) for stroke in LETTERS[d]]


def scenes_to_draw(rng: random.Random) -> list[dict]:
    """Shapes alone, shapes in pairs, digits alone and in pairs: 40 drawings."""
    colours = ["red", "green", "blue", "yellow", "purple"]
    out = []
    for i in range(15):
        shape, size = ("circle", "square", "triangle")[i % 3], ("small", "big")[(i // 3) % 2]
        out.append({"shapes": [(shape, colours[i % 5], size, rng.uniform(22, 42), rng.uniform(22, 42))]})
    pairs = [((18, 32), (46, 30)), ((32, 16), (30, 48)), ((16, 22), (48, 44)), ((30, 14), (36, 48))]
    for i in range(10):
        (x0, y0), (x1, y1) = pairs[i % 4]
        a, b = rng.sample(("circle", "square", "triangle"), 2)
        out.append(
            {
                "shapes": [
                    (a, colours[i % 5], "small", x0, y0),
                    (b, colours[(i + 2) % 5], ("small", "big")[i % 2], x1, y1),
                ]
            }
        )
    for d in range(10):
        out.append({"digits": [(d, rng.uniform(24, 40), rng.uniform(24, 40), rng.uniform(18, 24))]})
    for _ in range(5):
        d0, d1 = rng.randrange(10), rng.randrange(10)
        out.append({"digits": [(d0, 18, rng.uniform(24, 40), 19), (d1, 46, rng.uniform(24, 40), 19)]})
    return out


def draw(page, url: str, scene: dict, rng: random.Random) -> tuple[bytes, str]:
    """Draw one scene on a fresh canvas with the mouse: the PNG the canvas sends, and the caption."""
    page.goto(f"{url}/captioning?source=draw")
    canvas = page.locator("canvas[aria-label='Drawing canvas']")
    canvas.wait_for(timeout=120_000)
    box = canvas.bounding_box()
    to_screen = box["width"] / 64

    def stroke(points: list[Point]) -> None:
        (x0, y0), *rest = [(box["x"] + px * to_screen, box["y"] + py * to_screen) for px, py in points]
        page.mouse.move(x0, y0)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(x, y)
        page.mouse.up()

    def pen(colour: str, width: int) -> None:
        page.get_by_label(f"Pen colour {colour}").click()
        page.locator("input.width").evaluate(
            "(el, w) => { el.value = w; el.dispatchEvent(new Event('input')); }", width
        )

    if "shapes" in scene:
        for shape, colour, size, x, y in scene["shapes"]:
            pen(colour, rng.choice((2, 3, 4)))
            stroke(shape_path(shape, x, y, SIZES[size], rng.uniform(0, 2 * math.pi), rng))
        caption = " ".join(compose(scene["shapes"]).caption)
    else:
        for d, x, y, height in scene["digits"]:
            pen("black", rng.choice((2, 3, 4)))
            for s in digit_strokes(d, x, y, height, rng):
                stroke(s)
        ordered = [str(d) for d, *_ in sorted(scene["digits"], key=lambda t: t[1])]
        caption = ("the digits " if len(ordered) > 1 else "the digit ") + " ".join(ordered)
    png = canvas.evaluate("c => c.toDataURL('image/png')")
    return base64.b64decode(png.split(",", 1)[1]), caption


def main() -> None:
    rng = random.Random(20261122)
    OUT.mkdir(parents=True, exist_ok=True)
    rows, procs = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            url, _ = start_server(ROOT / "app.py", Path("/tmp/make_drawings.log"), procs)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for n, scene in enumerate(scenes_to_draw(rng)):
                png, caption = draw(page, url, scene, rng)
                name = f"{n:02d}.png"
                (OUT / name).write_bytes(png)
                rows.append({"file": name, "caption": caption})
                print(name, caption)
        finally:
            browser.close()
            for p in procs:
                stop_server(p)
    with open(OUT.parent / "drawings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "caption"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
