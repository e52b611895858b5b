"""The one attention component: an `st.components.v2` component of our own (inline HTML, CSS and
JavaScript — one file per concept in `attention_component_js/`, joined here; nothing fetched),
drawing on canvas the layers × heads model view, one map with exact values on hover (zoom and pan;
token labels once a cell is tall enough to read them), the head view (lines from queries to
keys, heads toggled) and the image overlay (one query's row over a picture's patch grid, every layer
and head as small overlays, a click on a patch picks its row). Every look — another layer, head or
query, a head toggled, a hover, a zoom,
the arrow keys, PNG export — happens in the browser; the server reruns only for what needs the model.

What is sent, once per run (``payload``): the maps as the model's own float32 numbers, the one
being shown first, then by layer distance and head distance (what the arrow keys reach first: its
layer, the same head a layer up and down, …), until ``BUDGET`` bytes; when that is not all of
them, every head also as a uint8 thumbnail (max-pooled to at most ``THUMB_SIDE`` cells a side in
the model view, ``PREVIEW_SIDE`` elsewhere; scaled to its own largest weight; counted in the
budget): colours only. Picking a map that was not sent exact draws its
thumbnail at once and asks the server for its numbers (the component's ``request`` state: a rerun
of the enclosing fragment that sends that map first). The image overlay draws rows, not maps: one
query's row of every layer and head is sent first (``rows``: 72 × 257 float32 are 74 kB for a ViT), then
whole maps by layer as the budget allows (every row of those layers: a click on a patch draws at once),
no thumbnails; a patch whose rows were not sent is asked for (``request`` "row:<query>").
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from analysis.protocol import AttentionMaps

MAGIC = b"AEX1"
BUDGET = 1_900_000  # bytes a run sends at most, thumbnails included (beyond the one map shown)
THUMB_SIDE = 40  # thumbnail cells a side at most in the model view (SmolLM2: 270 × 40² = 432 kB)
PREVIEW_SIDE = 20  # … where thumbnails are only a map's preview until its numbers come
VIEWS = ("model", "map", "lines")  # the views a component shows unless told
KINDS = (*VIEWS, "image")  # every view kind (the image overlay needs a picture: `image_header`)

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
  <div class="image-view">
    <canvas class="photo" aria-label="Attention over the picture: hover a patch, click it for its row">
    </canvas>
    <canvas class="overlays" aria-label="Every layer and head over the picture: click one to look at it">
    </canvas>
  </div>
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
.image-view { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: flex-start; }
canvas.photo { cursor: crosshair; } canvas.overlays { cursor: pointer; }
.tip { position: absolute; display: none; pointer-events: none; background: #222e; color: #fff;
       padding: 3px 6px; border-radius: 4px; font-size: 12px; max-width: 250px; z-index: 5; }
"""
# The JavaScript, one file per concept, joined in this order into the one module the component loads
# (each file's top-level names are visible to the files after it; main.js, last, is the entry point
# and says how a view kind plugs in).
JS_FOLDER = Path(__file__).with_name("attention_component_js")
JS_PARTS = ("common.js", "data.js", "model_view.js", "map_view.js", "head_view.js", "image_view.js",
            "controls.js", "main.js")  # fmt: skip


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
    rows: Sequence[int] = (),
    image: Mapping | None = None,
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
    header, then the ``rows`` (each query's row of every layer and head, (L, h, Tk) float32), the exact
    maps (float32, C order) and the thumbnails (uint8). ``unpack`` and ``unpack_rows`` read it. ``image``:
    the image overlay's picture and grid (`image_header`); a view of rows only gets no thumbnails, and
    no map beyond the budget (its rows are what it draws)."""
    weights = np.ascontiguousarray(maps.weights, dtype=np.float32)
    n_layers, n_heads, tq, tk = weights.shape
    size, side = tq * tk * 4, THUMB_SIDE if "model" in views else PREVIEW_SIDE
    blocks, row_blocks, offset = [], [], 0
    for query in dict.fromkeys(q for q in rows if 0 <= q < tq):  # each once, in the order given
        row_blocks.append([query, offset])
        blocks.append(np.ascontiguousarray(weights[:, :, query]).tobytes())  # (L, h, Tk)
        offset += n_layers * n_heads * tk * 4
    budget -= offset
    thumbs_drawn = any(v != "image" for v in views)
    small = None if weights.nbytes <= budget or not thumbs_drawn else thumbnails(weights, side)
    budget -= 0 if small is None else small.nbytes
    exact, start = [], offset
    # What the component last asked for is what it shows now (a fragment rerun does not see the URL
    # it wrote), so it comes first; else the first view.
    at = requested or (view.layer, view.head)
    whole_layers = "lines" in views or "image" in views
    for i, (layer, head) in enumerate(_order(maps, at, whole_layers=whole_layers)):
        if (i or row_blocks) and offset - start + size > budget:  # the first map goes whatever its size …
            break  # … unless rows were sent (a view of rows draws those)
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
        "views": [v for v in views if v in KINDS],
        "state": {"layer": view.layer, "head": view.head, "query": view.query},
        "axes": list(axes), "value_name": value_name, "numbers": numbers, "url": url, "file_stem": file_stem,
        "gold": {"sure": sorted(sure), "possible": sorted({tuple(c) for c in gold_possible} - sure)},
        "exact": exact, "thumbs": thumbs, "thumb_side": side, "row_blocks": row_blocks, "image": image,
    }  # fmt: skip
    text = json.dumps(header, ensure_ascii=False).encode()
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % 4)  # the blocks start 4-byte aligned
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(blocks)


def _header(data: bytes) -> tuple[dict, memoryview]:
    if data[:4] != MAGIC:
        raise ValueError("not an attention payload: it starts with another magic")
    (n,) = struct.unpack("<I", data[4:8])
    return json.loads(data[8 : 8 + n]), memoryview(data)[8 + n :]


def unpack(data: bytes) -> tuple[dict, dict[tuple[int, int], np.ndarray], np.ndarray | None]:
    """The header, the exact maps by (layer, head) and the thumbnails of a ``payload``."""
    header, body = _header(data)
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


def unpack_rows(data: bytes) -> dict[int, np.ndarray]:
    """The rows of a ``payload``: query → its (L, h, Tk) row of every layer and head."""
    header, body = _header(data)
    shape = (header["layers"], header["heads"], header["cols"])
    return {query: np.frombuffer(body, np.float32, int(np.prod(shape)), offset).reshape(shape)
            for query, offset in header.get("row_blocks") or []}  # fmt: skip


Outline = tuple[str, Mapping[tuple[int, int], np.ndarray]]  # a mask's name, (layer, head) → its patches


def image_header(picture: np.ndarray, grid: tuple[int, int], *, first: int = 1, opacity: float = 0.6,
                 outline: Outline | None = None) -> dict:  # fmt: skip
    """The image overlay's part of the header: ``picture`` (H, W, 3) uint8 as the model saw it, sent once
    as a JPEG data URI (a backdrop: the numbers are the rows); its patch ``grid`` (rows, cols), row-major
    from key ``first``; and an ``outline`` (name, (layer, head) → (rows·cols,) bool patches) drawn over the
    first query's rows."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    src = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    cells = None
    if outline is not None:
        name, masks = outline
        cells = {"name": name, "cells": [[layer, head, [first + int(i) for i in np.flatnonzero(mask)]]
                                         for (layer, head), mask in masks.items()]}  # fmt: skip
    return {"src": src, "rows": grid[0], "cols": grid[1], "first": first, "opacity": opacity,
            "outline": cells}


def _request(key: str) -> str:
    state = st.session_state.get(key) or {}
    return str(state.get("request") or "")


def _requested(key: str, maps: AttentionMaps) -> tuple[int, int] | None:
    """The map the component last asked for ("layer,head", its ``request`` state), if it is one."""
    parts = _request(key).split(",")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        layer, head = map(int, parts)
        if layer < maps.n_layers and head < maps.n_heads:
            return layer, head
    return None


def _requested_row(key: str, maps: AttentionMaps) -> int | None:
    """The query whose rows the component last asked for ("row:<query>"), if it is one."""
    found = re.fullmatch(r"row:(\d+)", _request(key), re.ASCII)
    return int(found[1]) if found and int(found[1]) < len(maps.queries) else None


def attention_maps(
    maps: AttentionMaps,
    key: str,
    *,
    views: Sequence[str] = VIEWS,
    layer: int | None = None,
    head: int | None = None,
    in_url: bool = True,
    height: int | str = "content",
    image: Mapping | None = None,
    **labels,
) -> None:
    """Mount the component on ``maps``. The first view: ``layer``/``head`` when the page picks them
    (a page's own select; the component follows it when it changes), else the URL's ``view_<key>``,
    else layer 0, head 0. ``in_url``: the component keeps its view in the URL (``view_<key>`` =
    layer.head.query). ``image`` (`image_header`): the image overlay's picture; it starts on query 0's
    rows (or the URL's query), which are sent with the last asked-for query's. ``labels``: ``payload``'s
    title, axes, value_name, numbers, gold cells, layer and head names, file stem."""
    url = f"view_{key}" if in_url else None
    view = View(layer or 0, head or 0, 0 if image is not None else None)
    if layer is None and head is None and url:
        view = View.parse(st.query_params.get(url), maps) or view
    rows = ()
    if image is not None:
        view = replace(view, query=view.query or 0)
        rows = (0, view.query, _requested_row(key, maps))
        rows = tuple(q for q in rows if q is not None)
    data = payload(maps, view, views=views, requested=_requested(key, maps), url=url, rows=rows, image=image,
                   **labels)  # fmt: skip
    _component(data=data, key=key, on_request_change=lambda: None, height=height)
