"""The one attention component: an `st.components.v2` component of our own (inline HTML, CSS and
JavaScript — one file per concept in `attention_component_js/`, joined here; nothing fetched),
drawing on canvas the layers × heads model view, one map with exact values on hover (zoom and pan;
token labels once a cell is tall enough to read them), and the head view (lines from queries to
keys, heads toggled). Every look — another layer, head or query, a head toggled, a hover, a zoom,
the arrow keys, PNG export — happens in the browser; the server reruns only for what needs the model.

What is sent, once per run (``payload``): the maps as the model's own float32 numbers, the one
being shown first, then by layer distance and head distance (what the arrow keys reach first: its
layer, the same head a layer up and down, …), until ``BUDGET`` bytes; when that is not all of
them, every head also as a uint8 thumbnail (max-pooled to at most ``THUMB_SIDE`` cells a side in
the model view, ``PREVIEW_SIDE`` elsewhere; scaled to its own largest weight; counted in the
budget): colours only. Picking a map that was not sent exact draws its
thumbnail at once and asks the server for its numbers (the component's ``request`` state: a rerun
of the enclosing fragment that sends that map first).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from analysis.protocol import AttentionMaps

MAGIC = b"AEX1"
BUDGET = 1_900_000  # bytes a run sends at most, thumbnails included (beyond the one map shown)
THUMB_SIDE = 40  # thumbnail cells a side at most in the model view (SmolLM2: 270 × 40² = 432 kB)
PREVIEW_SIDE = 20  # … where thumbnails are only a map's preview until its numbers come
VIEWS = ("model", "map", "lines")

_HTML = """
<div class="ae" tabindex="0" aria-label="Attention view: arrow keys move the layer and head">
  <div class="bar"><strong class="title"></strong><span class="pickers"></span></div>
  <div class="wide"><canvas class="grid" aria-label="Model view: every layer and head; click one to zoom">
  </canvas></div>
  <div class="map-tools">
    <button class="zoom-in" type="button" title="Zoom in (+)">+</button>
    <button class="zoom-out" type="button" title="Zoom out (−)">−</button>
    <button class="zoom-fit" type="button" title="Fit the whole map">fit</button>
    <span class="scale">0 <span class="ramp"></span> <span class="scale-max"></span></span>
    <span class="axes"></span>
  </div>
  <canvas class="map" aria-label="Attention map: hover a cell for its exact value"></canvas>
  <div class="chips"></div>
  <div class="lines-wrap"><canvas class="lines" aria-label="Head view"></canvas></div>
  <div class="lines-note"></div>
  <div class="readout" aria-live="polite"></div>
  <div class="tip"></div>
</div>
"""
_CSS = """
.ae { position: relative; font-family: sans-serif; font-size: 13px; color: var(--st-text-color);
      outline: none; display: flex; flex-direction: column; gap: 6px; }
.ae:focus-visible { box-shadow: 0 0 0 2px var(--st-primary-color); }
.bar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
.pickers { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
select, button { font: inherit; color: inherit; background: var(--st-secondary-background-color);
                 border: 1px solid #8884; border-radius: 4px; padding: 1px 6px; }
.wide { overflow-x: auto; }
.map-tools { display: flex; gap: 6px; align-items: center; }
.ramp { display: inline-block; width: 120px; height: 10px; vertical-align: middle;
        background: linear-gradient(90deg, #440154, #3b528b, #21918c, #5ec962, #fde725); }
canvas.map { cursor: crosshair; touch-action: none; }
.chips { display: flex; flex-wrap: wrap; gap: 4px; }
.chip { border: 2px solid var(--c); opacity: 0.45; }
.chip.on { background: var(--c); color: #fff; opacity: 1; }
.lines-wrap { max-height: 560px; overflow-y: auto; }
.lines-note, .readout { font-size: 12px; opacity: 0.85; min-height: 1.2em; }
.tip { position: absolute; display: none; pointer-events: none; background: #222e; color: #fff;
       padding: 3px 6px; border-radius: 4px; font-size: 12px; max-width: 250px; z-index: 5; }
"""
# The JavaScript, one file per concept, joined in this order into the one module the component loads
# (each file's top-level names are visible to the files after it; main.js, last, is the entry point
# and says how a view kind plugs in).
JS_FOLDER = Path(__file__).with_name("attention_component_js")
JS_PARTS = ("common.js", "data.js", "model_view.js", "map_view.js", "head_view.js", "controls.js", "main.js")


def _script() -> str:
    """The component's JavaScript: ``JS_PARTS`` joined, each under a comment naming its file."""
    found = sorted(path.name for path in JS_FOLDER.glob("*.js"))
    if found != sorted(JS_PARTS):
        raise RuntimeError(
            f"{JS_FOLDER.name}/ holds {found} but JS_PARTS joins {sorted(JS_PARTS)}: "
            "name every .js file there in JS_PARTS (in load order), or remove it"
        )
    parts = (f"// --- {name} ---\n" + (JS_FOLDER / name).read_text(encoding="utf-8") for name in JS_PARTS)
    return "\n".join(parts)


_component = st.components.v2.component("attention_explorer_maps", html=_HTML, css=_CSS, js=_script())


@dataclass(frozen=True)
class View:
    """What the component shows first: a layer, a head, and (head view) one query or all."""

    layer: int = 0
    head: int = 0
    query: int | None = None

    @classmethod
    def parse(cls, text: str | None, maps: AttentionMaps) -> View | None:
        """``"layer.head.query"`` as the component writes it in the URL; None when it is not one
        (junk in the URL is dropped, like a bound widget's invalid value)."""
        found = re.fullmatch(r"(\d+)\.(\d+)\.(\d*)", text or "", re.ASCII)
        if found is None:
            return None
        layer, head, query = int(found[1]), int(found[2]), int(found[3]) if found[3] else None
        if layer >= maps.n_layers or head >= maps.n_heads:
            return None
        return cls(layer, head, query if query is None or query < len(maps.queries) else None)


def _order(maps: AttentionMaps, at: tuple[int, int], whole_layers: bool) -> list[tuple[int, int]]:
    """Every (layer, head), most wanted first: the one at ``at``, then by layer distance and, within
    it, by head distance — what the arrow keys reach first (the rest of its layer; the same head a
    layer up and down; …). ``whole_layers`` (the head view draws every head of a layer): the layer
    below whole before the layer above."""
    layer, head = at
    cells = [(i, h) for i in range(maps.n_layers) for h in range(maps.n_heads)]
    if whole_layers:
        return sorted(cells, key=lambda c: (abs(c[0] - layer), c[0] < layer, abs(c[1] - head), c))
    return sorted(cells, key=lambda c: (abs(c[0] - layer), abs(c[1] - head), c))


def thumbnails(weights: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """(L, h, Tq, Tk) → (L, h, tq, tk) uint8, tq = min(Tq, side): each block's largest weight, scaled
    to the map's own largest (255). Colours for the model view; never a number on screen."""
    n_layers, n_heads, tq, tk = weights.shape
    rows, cols = min(tq, side), min(tk, side)
    row_starts = np.ceil(np.arange(rows) * tq / rows).astype(int)  # cell r goes to floor(r · rows / tq)
    col_starts = np.ceil(np.arange(cols) * tk / cols).astype(int)
    pooled = np.maximum.reduceat(np.maximum.reduceat(weights, row_starts, axis=2), col_starts, axis=3)
    top = pooled.max(axis=(2, 3), keepdims=True)
    scaled = np.divide(pooled, top, out=np.zeros_like(pooled), where=top > 0)
    return np.round(scaled * 255).astype(np.uint8)


def payload(
    maps: AttentionMaps,
    view: View,
    *,
    views: Sequence[str] = VIEWS,
    requested: tuple[int, int] | None = None,
    budget: int = BUDGET,
    layer_names: Sequence[str] | None = None,
    head_names: Sequence[str] | None = None,
    url: str | None = None,
    title: str = "",
    axes: tuple[str, str] = ("query", "key"),
    value_name: str = "w",
    numbers: bool = False,
    gold_sure: Sequence[tuple[int, int]] = (),
    gold_possible: Sequence[tuple[int, int]] = (),
    file_stem: str = "attention",
) -> bytes:
    """The bytes the component reads: ``MAGIC``, a little-endian uint32 header length, the JSON
    header, then the exact maps (float32, C order) and the thumbnails (uint8). ``unpack`` reads it."""
    weights = np.ascontiguousarray(maps.weights, dtype=np.float32)
    n_layers, n_heads, tq, tk = weights.shape
    size, side = tq * tk * 4, THUMB_SIDE if "model" in views else PREVIEW_SIDE
    small = None if weights.nbytes <= budget else thumbnails(weights, side)  # all exact, or thumbnails too
    budget -= 0 if small is None else small.nbytes
    exact, blocks, offset = [], [], 0
    # What the component last asked for is what it shows now (a fragment rerun does not see the URL
    # it wrote), so it comes first; else the first view.
    at = requested or (view.layer, view.head)
    for i, (layer, head) in enumerate(_order(maps, at, whole_layers="lines" in views)):
        if i and offset + size > budget:  # the first map goes whatever its size
            break
        exact.append([layer, head, offset])
        blocks.append(weights[layer, head].tobytes())
        offset += size
    thumbs = None
    if small is not None:
        thumbs = {"offset": offset, "rows": small.shape[2], "cols": small.shape[3]}
        blocks.append(small.tobytes())
    sure = {tuple(c) for c in gold_sure}
    header = {
        "title": title or maps.title, "queries": list(maps.queries), "keys": list(maps.keys),
        "layers": n_layers, "heads": n_heads, "rows": tq, "cols": tk,
        "layer_names": list(layer_names or (f"L{i}" for i in range(n_layers))),
        "head_names": list(head_names or (f"H{h}" for h in range(n_heads))),
        "views": [v for v in views if v in VIEWS],
        "state": {"layer": view.layer, "head": view.head, "query": view.query},
        "axes": list(axes), "value_name": value_name, "numbers": numbers, "url": url, "file_stem": file_stem,
        "gold": {"sure": sorted(sure), "possible": sorted({tuple(c) for c in gold_possible} - sure)},
        "exact": exact, "thumbs": thumbs, "thumb_side": side,
    }  # fmt: skip
    text = json.dumps(header, ensure_ascii=False).encode()
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % 4)  # the blocks start 4-byte aligned
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(blocks)


def unpack(data: bytes) -> tuple[dict, dict[tuple[int, int], np.ndarray], np.ndarray | None]:
    """The header, the exact maps by (layer, head) and the thumbnails of a ``payload``."""
    if data[:4] != MAGIC:
        raise ValueError("not an attention payload: it starts with another magic")
    (n,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    rows, cols = header["rows"], header["cols"]
    exact = {
        (layer, head): np.frombuffer(body, np.float32, rows * cols, offset).reshape(rows, cols)
        for layer, head, offset in header["exact"]
    }
    thumbs = None
    if header["thumbs"]:
        shape = (header["layers"], header["heads"], header["thumbs"]["rows"], header["thumbs"]["cols"])
        thumbs = np.frombuffer(body, np.uint8, int(np.prod(shape)), header["thumbs"]["offset"]).reshape(shape)
    return header, exact, thumbs


def _requested(key: str, maps: AttentionMaps) -> tuple[int, int] | None:
    """The map the component last asked for ("layer,head", its ``request`` state), if it is one."""
    state = st.session_state.get(key) or {}
    parts = str(state.get("request") or "").split(",")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        layer, head = map(int, parts)
        if layer < maps.n_layers and head < maps.n_heads:
            return layer, head
    return None


def attention_maps(
    maps: AttentionMaps,
    key: str,
    *,
    views: Sequence[str] = VIEWS,
    layer: int | None = None,
    head: int | None = None,
    in_url: bool = True,
    height: int | str = "content",
    **labels,
) -> None:
    """Mount the component on ``maps``. The first view: ``layer``/``head`` when the page picks them
    (a page's own select; the component follows it when it changes), else the URL's ``view_<key>``,
    else layer 0, head 0. ``in_url``: the component keeps its view in the URL (``view_<key>`` =
    layer.head.query). ``labels``: ``payload``'s title, axes, value_name, numbers, gold cells,
    layer and head names, file stem."""
    url = f"view_{key}" if in_url else None
    view = View(layer or 0, head or 0)
    if layer is None and head is None and url:
        view = View.parse(st.query_params.get(url), maps) or view
    data = payload(maps, view, views=views, requested=_requested(key, maps), url=url, **labels)
    _component(data=data, key=key, on_request_change=lambda: None, height=height)
