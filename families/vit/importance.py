"""Attention vs importance for DINOv2 (Abnar & Zuidema 2020), on one picture at 224 × 224 (16 × 16 patches).

The quantity is the picture's [CLS] embedding (the final LayerNorm's [CLS] row: what DINO trains and
what a retrieval or a linear probe reads). Positions are blocks of ``block`` × ``block`` patches — each
patch alone (256 positions), or 2 × 2 (64: the page's default, a quarter of the forwards); [CLS] is left
out (never hidden, never ranked). Per position j:

- **importance**: 1 − cos([CLS] embedding with block j hidden, the embedding as it is) — hidden as the
  page's intervention hides: no query of any layer or head may attend to its patches (their own streams
  still run, nobody reads them). The hidden copies run in batches of `CHUNK` (`Dinov2.forward`'s
  ``hidden_per_row``);
- **raw L{l}**: [CLS]'s attention to block j in layer l (summed over its patches; mean over heads, or one
  head);
- **rollout L{l}**: [CLS]'s row of `analysis.stats.rollout` through layer l, summed over block j;
- **grad × input**: Σ over block j's pixels and channels of x ∂s/∂x, s = ⟨[CLS](x), ĉ⟩ with ĉ the unit
  [CLS] embedding of the picture (held fixed): the textbook gradient × input from the baseline 0 — in the
  normalised input, ImageNet's mean colour. Not the cosine's gradient, which is 0 at the picture itself
  (its maximum); hiding has no input-space replacement to take the gradient at instead (BERT's page takes
  it at the [MASK]ed copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.family import ImportanceTab, Served
from analysis.importance import Comparison, compare, layered_measures
from analysis.protocol import to_numpy
from analysis.stats import rollout
from families.vit.measures import cls_to_patches
from families.vit.preprocess import normalise
from families.vit.runner import ViT, square
from models.dinov2 import CLS, SIDE, Dinov2

CHUNK = 32  # hidden copies per forward (32 × 257 tokens)
BLOCKS = (2, 1)  # block sides the page offers, its default first: 64 hidden copies, or 256
QUANTITY = "the [CLS] embedding's cosine to the one with nothing hidden"


@dataclass(frozen=True)
class ViTImportance:
    """One picture: the N patches' importance and every measure of them."""

    positions: tuple[str, ...]  # (n,) 'r<row>c<col>', or 'r<r0>-<r1> c<c0>-<c1>' for a block
    blocks: np.ndarray  # (n, N) bool: the patches of each position
    importance: np.ndarray  # (n,) 1 − cos(embedding with block j hidden, embedding)
    weights: np.ndarray  # (L, h, n) [CLS]'s attention to each block
    rollout: np.ndarray  # (L, n) [CLS]'s rollout row through layer l, at each block
    grad_x_input: np.ndarray  # (n,)

    def comparison(self, head: int | None = None) -> Comparison:
        measures = layered_measures(self.weights, self.rollout, self.grad_x_input, head)
        return compare(self.positions, self.importance, measures, quantity=QUANTITY)


def _patch_sums(values: torch.Tensor, patch: int) -> torch.Tensor:
    """(1, 3, H, W) → (N,) each patch's sum over its pixels and channels, row-major."""
    _, _, h, w = values.shape
    blocks = values[0].reshape(3, h // patch, patch, w // patch, patch)  # (3, rows, p, cols, p)
    return blocks.sum((0, 2, 4)).flatten()


def blocks_of(grid: tuple[int, int], block: int) -> tuple[tuple[str, ...], np.ndarray]:
    """(labels, (n, N) bool): the grid cut into ``block`` × ``block`` squares of patches, row-major (a
    last row or column of squares may be narrower)."""
    rows, cols = grid
    r, c = np.indices(grid).reshape(2, -1)  # (N,) each patch's row and column
    labels, members = [], []
    for r0 in range(0, rows, block):
        for c0 in range(0, cols, block):
            r1, c1 = min(r0 + block, rows) - 1, min(c0 + block, cols) - 1
            labels.append(f"r{r0}c{c0}" if block == 1 else f"r{r0}-{r1} c{c0}-{c1}")
            members.append((r >= r0) & (r <= r1) & (c >= c0) & (c <= c1))
    return tuple(labels), np.stack(members)


def measure(model: Dinov2, seen: np.ndarray, block: int = BLOCKS[0], chunk: int = CHUNK) -> ViTImportance:
    """Importance by hiding each ``block`` × ``block`` square of patches, and every measure of them, on
    ``seen`` (S, S, 3) uint8, on the model as it is (no interventions)."""
    device = next(model.parameters()).device
    pixels = normalise(seen[None]).to(device)  # (1, 3, S, S)
    # 1) The picture itself: every layer's maps, its [CLS] embedding.
    with torch.inference_mode():
        out, trace = model(pixels, return_trace=True)
    weights = to_numpy(trace.weights[0])  # (L, h, T, T)
    base = out.cls[0]  # (d,)
    unit = base / base.norm()
    labels, members = blocks_of(trace.grid, block)  # (n,), (n, N)
    hide = torch.from_numpy(np.pad(members, ((0, 0), (CLS + 1, 0)))).to(device)  # (n, T): [CLS] never
    # 2) Block j hidden from every query, one copy per block, in chunks: 1 − cos to the embedding.
    drops = []
    with torch.inference_mode():
        for start in range(0, len(hide), chunk):
            rows = hide[start : start + chunk]  # (b, T): copy i hides block start + i
            copies, _ = model(pixels.expand(len(rows), -1, -1, -1), hidden_per_row=rows)
            drops.append(1 - torch.nn.functional.cosine_similarity(copies.cls, base[None], dim=-1))
    # 3) Gradient × input on the pixels (baseline 0), of the embedding's length along itself.
    leaf = pixels.clone().requires_grad_()
    with torch.inference_mode(False), torch.enable_grad():
        along = model(leaf)[0].cls[0] @ unit.clone()  # s = ⟨[CLS](x), ĉ⟩
        (gradient,) = torch.autograd.grad(along, leaf)  # (1, 3, S, S)
    gxi = to_numpy(_patch_sums(leaf.detach() * gradient, model.cfg.patch))  # (N,)
    summed = members.T.astype(np.float32)  # (N, n): a patch's value → its block's sum
    return ViTImportance(
        positions=labels,
        blocks=members,
        importance=to_numpy(torch.cat(drops)),
        weights=cls_to_patches(weights) @ summed,  # (L, h, n)
        rollout=cls_to_patches(rollout(weights)) @ summed,  # (L, n)
        grad_x_input=gxi @ summed,
    )


# --- What the app serves (`views.serving.cached`) and its "Attention vs importance" tab -----------
def _served_measure(loaded: ViT, pixels: bytes, block: int) -> ViTImportance:
    return measure(loaded.model, square(pixels, SIDE), block)


def _explain(loaded: ViT, inputs: tuple[bytes, int], result: ViTImportance) -> str:
    block = inputs[1]
    what = "patch" if block == 1 else f"{block} × {block} block of patches"
    return (
        f"Importance of a {what} = 1 − cos(the [CLS] embedding with it alone hidden from every query, the "
        f"embedding as it is): {len(result.positions)} hidden copies of the {SIDE} × {SIDE} picture. Raw = "
        "[CLS]'s attention to it; rollout = [CLS]'s row of the rollout (Abnar & Zuidema 2020); gradient × "
        "input = Σ over its pixels of x · ∂⟨[CLS], ĉ⟩/∂x (ĉ: the unit embedding, held fixed; baseline 0, "
        f"ImageNet's mean colour){'' if block == 1 else '; each summed over the block'}."
    )


SERVED = {"importance": Served(_served_measure, max_entries=8, spinner="Hiding each block of patches…")}
TAB = ImportanceTab(
    key="vit",
    query="whole input",
    layers_heads=lambda result: result.weights.shape[:2],
    explain=_explain,
    without_card="DINOv2's card has no held-out Spearman: the numbers above are this picture's alone.",
)
