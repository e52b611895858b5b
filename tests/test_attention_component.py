"""The attention component's data (views/attention_component.py): what the browser draws and shows on
hover is the model's float32 maps, bit for bit; what does not fit the budget goes as thumbnails; a
view in the URL is read back or dropped."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from analysis.protocol import AttentionMaps
from views.attention_component import (
    BUDGET,
    PREVIEW_SIDE,
    THUMB_SIDE,
    View,
    image_header,
    payload,
    thumbnails,
    unpack,
    unpack_rows,
)


def maps_of(n_layers: int, n_heads: int, t: int, tokens=None, seed: int = 0) -> AttentionMaps:
    rng = np.random.default_rng(seed)
    w = rng.random((n_layers, n_heads, t, t), dtype=np.float32) ** 6
    w /= w.sum(-1, keepdims=True)
    labels = tuple(tokens or (f"t{i}" for i in range(t)))
    return AttentionMaps("self", w, labels, labels, np.zeros(t, dtype=bool))


def test_a_small_run_goes_whole_and_exact():
    maps = maps_of(2, 4, 9, tokens=["</script>", "<b>x</b>", "🎉", "a\nb", '"q"', " ", "é", "日本", "[CLS]"])
    header, exact, thumbs = unpack(payload(maps, View(1, 2, 3), title="mine", axes=("output", "source")))
    assert thumbs is None and len(exact) == 8  # everything exact: no thumbnails needed
    for (layer, head), w in exact.items():
        np.testing.assert_array_equal(w, maps.weights[layer, head])  # bit for bit
    assert header["queries"] == list(maps.queries)  # hostile and non-ASCII tokens survive as text
    assert header["state"] == {"layer": 1, "head": 2, "query": 3}
    assert (header["title"], header["axes"]) == ("mine", ["output", "source"])
    assert header["exact"][0][:2] == [1, 2]  # the shown map first


def test_an_llm_sized_run_stays_in_budget_with_the_shown_layer_exact():
    maps = maps_of(30, 9, 128)  # SmolLM2 at 128 tokens: 17.7 MB as float32
    data = payload(maps, View(12, 4))
    assert len(data) <= 2_000_000  # the bound per run
    header, exact, thumbs = unpack(data)
    assert {(12, h) for h in range(9)} <= set(exact)  # the shown layer, every head
    assert {(11, 4), (13, 4), (11, 3), (13, 5)} <= set(exact)  # then what the arrow keys reach first
    assert len(exact) * 128 * 128 * 4 <= BUDGET
    assert {layer for layer, _ in exact} == {11, 12, 13}
    for (layer, head), w in exact.items():
        np.testing.assert_array_equal(w, maps.weights[layer, head])
    assert thumbs.shape == (30, 9, THUMB_SIDE, THUMB_SIDE)
    np.testing.assert_array_equal(thumbs, thumbnails(maps.weights))


def test_a_requested_map_comes_first_whatever_the_view():
    maps = maps_of(30, 9, 128)
    header, exact, _ = unpack(payload(maps, View(0, 0), requested=(27, 8)))
    assert header["exact"][0][:2] == [27, 8] and (27, 0) in exact
    np.testing.assert_array_equal(exact[27, 8], maps.weights[27, 8])


def test_one_map_over_the_budget_is_still_sent():
    maps = maps_of(1, 2, 700)  # 1.96 MB a map
    _, exact, thumbs = unpack(payload(maps, View(0, 1)))
    assert set(exact) == {(0, 1)} and thumbs.shape == (1, 2, THUMB_SIDE, THUMB_SIDE)


def test_thumbnails_are_each_blocks_largest_weight_scaled_to_the_maps_own():
    w = np.zeros((1, 2, 5, 4), np.float32)
    w[0, 0, 4, 3], w[0, 0, 0, 0], w[0, 1, 2, 1] = 0.8, 0.2, 0.5
    small = thumbnails(w, side=2)  # rows 0-2 | 3-4, columns 0-1 | 2-3 (cell r → r·2 // 5)
    np.testing.assert_array_equal(small[0, 0], [[64, 0], [0, 255]])  # 0.2 / 0.8 · 255 = 63.75 → 64
    np.testing.assert_array_equal(small[0, 1], [[255, 0], [0, 0]])
    assert thumbnails(np.zeros((1, 1, 3, 3), np.float32)).max() == 0  # an all-zero map stays dark


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.3.", View(2, 3, None)),
        ("2.3.7", View(2, 3, 7)),
        ("2.3.99", View(2, 3, None)),  # a query past the end is dropped, the rest kept
        ("9.0.", None),  # no layer 9
        ("1.9.", None),
        ("-1.0.", None),
        ("a.b.c", None),
        ("", None),
        (None, None),
        ("1.2", None),
        ("1.2.3.4", None),
        ("１.２.", None),  # full-width digits are not ours
    ],
)
def test_a_view_in_the_url_is_read_back_or_dropped(text, expected):
    assert View.parse(text, maps_of(3, 4, 10)) == expected


def test_a_payload_of_something_else_is_refused():
    with pytest.raises(ValueError, match="not an attention payload"):
        unpack(b"PNG\x00" + bytes(20))


def test_the_head_view_gets_whole_layers_and_small_previews():
    maps = maps_of(30, 9, 128)  # the head view draws every head of a layer: the next layer comes whole
    data = payload(maps, View(18, 6), views=("map", "lines"))
    assert len(data) <= 2_000_000
    _, exact, thumbs = unpack(data)
    assert {(layer, h) for layer in (18, 19) for h in range(9)} <= set(exact)
    assert thumbs.shape == (30, 9, PREVIEW_SIDE, PREVIEW_SIDE)  # no model view: thumbnails are previews


def picture(side: int = 224) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_the_image_overlay_gets_rows_everywhere_and_its_layer_whole_within_the_budget():
    """A ViT at 224 px: 72 maps of 257 × 257 are 19 MB. Sent: [CLS]'s row (query 0) and a clicked patch's
    row of every layer and head, bit for bit, then the shown layer's maps whole (every patch's rows: a
    click draws at once) — no thumbnails (the overlay draws rows), under 2 MB in all."""
    maps = maps_of(12, 6, 257)
    header_part = image_header(picture(), (16, 16))
    data = payload(maps, View(7, 2, 0), views=("image",), rows=(0, 40), image=header_part)
    assert len(data) <= 2_000_000
    header, exact, thumbs = unpack(data)
    assert thumbs is None and header["views"] == ["image"] and header["image"]["rows"] == 16
    assert set(exact) == {(7, h) for h in range(6)}  # the shown layer, whole; no room for another
    rows = unpack_rows(data)
    assert set(rows) == {0, 40}
    for query, row in rows.items():
        np.testing.assert_array_equal(row, maps.weights[:, :, query])  # (L, h, Tk), the model's own
    for (layer, head), w in exact.items():
        np.testing.assert_array_equal(w, maps.weights[layer, head])


def test_a_448_overlay_sends_rows_only_and_a_requested_layer_first():
    """1,025 tokens: one map is 4.2 MB, over the budget — rows only (the first map does not go whatever
    its size, as it does for views that draw maps). A smaller run's requested layer comes first."""
    maps = maps_of(1, 6, 1025)
    part = image_header(picture(448), (32, 32))
    data = payload(maps, View(0, 3, 0), views=("image",), rows=(0, 517), image=part)
    assert len(data) <= 2_000_000
    _, exact, thumbs = unpack(data)
    assert exact == {} and thumbs is None
    np.testing.assert_array_equal(unpack_rows(data)[517], maps.weights[:, :, 517])
    small = maps_of(12, 6, 65)
    _, exact, _ = unpack(payload(small, View(0, 0, 0), views=("image",), rows=(0,), requested=(9, 4)))
    assert next(iter(exact)) == (9, 4) and {(9, h) for h in range(6)} <= set(exact)


def test_the_image_header_carries_the_picture_and_the_outline_on_the_grid():
    shown = picture()
    part = image_header(shown, (16, 16), first=1, outline=("mask", {(0, 1): np.arange(256) % 50 == 0}))
    prefix = "data:image/jpeg;base64,"
    assert part["src"].startswith(prefix)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(part["src"][len(prefix) :]))))
    assert decoded.shape == shown.shape  # the picture as the model saw it (JPEG: a backdrop, not numbers)
    assert part["outline"] == {"name": "mask", "cells": [[0, 1, [1, 51, 101, 151, 201, 251]]]}  # keys: 1 + i
