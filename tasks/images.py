"""Images in: untrusted uploads to clean RGB, and RGB to the captioner's input tensor.

Uploads are hostile input: the format is allow-listed, decompression bombs are refused (scoped to
this call, not process-wide), truncated files fail inside our try (``img.load()``), EXIF
orientation is applied, and every mode (RGBA, LA, P with transparency, L, I;16, CMYK, …) becomes
RGB correctly — transparency over white, 16-bit scaled, not clipped. The model's input is the
picture letterboxed to its square (`model_input`).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 40_000_000  # refuse images larger than this (a decompression bomb guard)
DISPLAY_SIDE = 512  # uploads are downscaled to this before anything else sees them
MEAN, STD = 0.5, 0.25  # the captioner's input normalisation


class ImageError(ValueError):
    """An upload the page should refuse, with the message to show."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB: 16-bit grey scaled to 8 bits (not clipped), transparency over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (PNG's opens as I;16 or I): scale, not clip
        arr = np.asarray(img, dtype=np.float64) / 257  # 65,535 → 255, and a flat grey stays that grey
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, RGB, F …


def load_upload(data: bytes, *, max_side: int = DISPLAY_SIDE) -> Image.Image:
    """Bytes from an upload → an RGB image no larger than ``max_side``; ImageError otherwise."""
    if not data:
        raise ImageError("The file is empty (0 bytes). Choose an image file (PNG, JPEG, WebP, GIF or BMP).")
    try:
        # Image.open reads only the header. Our MAX_PIXELS is below Pillow's own bomb threshold, so
        # this check refuses a bomb before any pixel is decoded — without `warnings` filters, which
        # are process-global and not thread-safe in a server that runs many sessions at once.
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(
                f"The image is {img.width}×{img.height} pixels; the limit is {MAX_PIXELS // 1_000_000} "
                "megapixels. Downscale it first."
            )
        img.seek(0)  # animated GIF/WebP: the first frame
        img.load()  # truncated or corrupt data fails here, inside the try
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"Refused: the image decompresses to too many pixels ({err}).") from err
    except Image.UnidentifiedImageError as err:
        raise ImageError(
            "This is not an image this page reads: PNG, JPEG, WebP, GIF (first frame) or BMP. "
            "(SVG and other formats are not accepted.)"
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"The image file is damaged or truncated and cannot be decoded ({err}).") from err
    if img.width < 1 or img.height < 1:
        raise ImageError("The image has no pixels.")
    img.thumbnail((max_side, max_side), Image.LANCZOS)
    return img


def model_input(img: Image.Image, side: int = 64) -> tuple[np.ndarray, torch.Tensor]:
    """RGB image → (the side×side RGB array the model sees, its (1, 3, side, side) input tensor).

    Letterboxed, never stretched: the picture is scaled evenly to fit the square (an upload of any
    size, 64 to 2,048 px and more, any aspect ratio) and the rest filled with its median border
    colour — the bands the training scenes' letterboxed pictures have (`tasks.scenes.letterbox_bands`).
    """
    arr = np.asarray(img.convert("RGB"))
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    square = ImageOps.pad(img.convert("RGB"), (side, side), method=Image.LANCZOS, color=fill)
    seen = np.asarray(square)
    return seen, to_tensor(seen[None])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float, normalised as in training."""
    x = TF.to_dtype(
        torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2), torch.float32, scale=True
    )
    return TF.normalize(x, [MEAN] * 3, [STD] * 3)
