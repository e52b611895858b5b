"""A freehand drawing canvas: a small `st.components.v2` component of our own (inline HTML, CSS and
JavaScript, nothing fetched), so it works offline.

The visitor draws with the mouse or a pen in one of the given colours and widths; Undo removes the
last stroke, Clear all of them. When a stroke ends, the picture goes to Python as a PNG data URL
(the component's ``drawing`` state); Python checks those bytes like any upload. Over a picture (``image``),
the strokes are drawn on it and sent alone, on transparency: a mask drawn over a photo.
"""

from __future__ import annotations

import base64

import streamlit as st

SIDE = 256  # canvas pixels (the captioner resizes to its 64×64 input)
PREFIX = "data:image/png;base64,"

_HTML = f"""
<div class="pad">
  <canvas width="{SIDE}" height="{SIDE}" aria-label="Drawing canvas"></canvas>
  <div class="tools">
    <span class="colours"></span>
    <label>Pen <input class="width" type="range" min="1" max="12" value="4" aria-label="Pen width"></label>
    <button class="undo" type="button">Undo</button>
    <button class="clear" type="button">Clear</button>
  </div>
</div>
"""
_CSS = """
.pad { display: flex; flex-direction: column; gap: 6px; font-family: sans-serif; font-size: 14px; }
canvas { border: 1px solid #999; touch-action: none; cursor: crosshair; width: 256px; height: 256px; }
.tools { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.swatch { width: 22px; height: 22px; border: 2px solid #fff; outline: 1px solid #999; cursor: pointer; }
.swatch.on { outline: 3px solid #000; }
button { padding: 2px 8px; }
"""
_JS = """
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const canvas = parentElement.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  // Strokes live on the element, so a rerun that calls this function again keeps the drawing.
  const state = parentElement.__drawing ??= { strokes: [], colour: data.palette[0][1], width: 4 };
  canvas.style.background = data.image ? `center / 100% 100% no-repeat url(${data.image})` : "";
  const paint = () => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!data.image) {  // over a picture the strokes stay alone: the picture is the element's background
      ctx.fillStyle = data.background;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
    }
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const s of state.strokes) {
      ctx.strokeStyle = s.colour;
      ctx.lineWidth = s.width * (canvas.width / 64);  // pen width in the model's 64-pixel units
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.1, s.points[0][1]);
      ctx.stroke();
    }
  };
  const send = () => setStateValue("drawing", state.strokes.length ? canvas.toDataURL("image/png") : "");
  const colours = parentElement.querySelector(".colours");
  colours.replaceChildren(...data.palette.map(([name, css]) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "swatch" + (css === state.colour ? " on" : "");
    b.style.background = css;
    b.title = name;
    b.setAttribute("aria-label", "Pen colour " + name);
    b.onclick = () => {
      state.colour = css;
      colours.querySelectorAll(".swatch").forEach((x) => x.classList.toggle("on", x === b));
    };
    return b;
  }));
  const width = parentElement.querySelector(".width");
  width.value = state.width;
  width.oninput = () => (state.width = Number(width.value));
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    const sx = canvas.width / r.width, sy = canvas.height / r.height;
    return [(e.clientX - r.left) * sx, (e.clientY - r.top) * sy];
  };
  let current = null;
  canvas.onpointerdown = (e) => {
    canvas.setPointerCapture(e.pointerId);
    current = { colour: state.colour, width: state.width, points: [at(e)] };
    state.strokes.push(current);
    paint();
  };
  canvas.onpointermove = (e) => {
    if (!current) return;
    current.points.push(at(e));
    paint();
  };
  canvas.onpointerup = canvas.onpointercancel = () => {
    if (!current) return;
    current = null;
    send();  // a finished stroke: caption it
  };
  parentElement.querySelector(".undo").onclick = () => { state.strokes.pop(); paint(); send(); };
  parentElement.querySelector(".clear").onclick = () => { state.strokes = []; paint(); send(); };
  paint();
}
"""

_canvas = st.components.v2.component("attention_explorer_canvas", html=_HTML, css=_CSS, js=_JS)


def _css(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def drawing_canvas(palette: dict[str, tuple[int, int, int]], background: tuple[int, int, int], *, key: str,
                   image: str | None = None):  # fmt: skip
    """Mount the canvas; returns the PNG bytes of the drawing once a stroke is finished (None while
    the canvas is empty). The bytes come from the browser: check them like an upload. ``image``: a
    picture's data URI shown under the strokes (stretched to the square canvas); the PNG then holds the
    strokes alone, on transparency."""
    data = {
        "palette": [[name, _css(rgb)] for name, rgb in palette.items()],
        "background": _css(background),
        "image": image,
    }
    result = _canvas(data=data, key=key, on_drawing_change=lambda: None, height=330)
    url = getattr(result, "drawing", None) or ""
    if not url.startswith(PREFIX):
        return None
    try:
        return base64.b64decode(url[len(PREFIX) :], validate=True)
    except ValueError:
        return None
