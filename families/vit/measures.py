"""What the ViT page and card compute from DINOv2's returned trace (numpy; no Streamlit, no model).

- DINO's mask (Caron et al. 2021, Fig. 4 and its Jaccard table): per head, the [CLS] row of the last
  layer over the patches only — [CLS]'s weight on itself is left out and the patches' weights are
  renormalised to sum to 1, as facebookresearch/dino's ``visualize_attention.py`` does (it takes
  ``attentions[0, :, 0, 1:]``, sorts it, divides by its sum, and keeps the patches whose ascending
  cumulative sum exceeds 1 − 0.6): the smallest set of patches holding 60% of that mass.
- Jaccard (intersection over union) of two boolean masks, at the pixels' resolution: a patch mask is
  blown up to its 14×14 pixels (DINO upsamples its mask the same way, nearest).
- Attention rollout (Abnar & Zuidema 2020): `analysis.stats.rollout` through every layer, read at the
  [CLS] row over the patches.
- High-norm tokens (Darcet et al. 2023, "Vision Transformers Need Registers"): a patch whose output
  norm exceeds `HIGH_NORM_FACTOR` × its layer's median patch norm. Darcet et al. cut with one
  hand-picked absolute norm (150, for ViT-g); an absolute cut does not carry across layers or models
  (DINOv2-small's median patch norm is ≈ 1 at layer 3 and ≈ 50 at layer 11), a ratio to the median
  does. Why 3: no patch of DINOv2-small exceeds 1.9× its layer's median in any layer on real photos
  (scikit-learn's two, at 224 and 448 px), nor 2.1× on 200 generated scenes (the card), so 3× leaves the
  ordinary spread below the bar — this small model shows no artefact tokens there, as the paper finds
  for models below ViT-L — while the paper's outliers, several times the ordinary norms, stand above it.
- The outliers' share of [CLS] attention: the weight [CLS]'s row (all tokens, [CLS] included, as the
  softmax gave it) puts on those patches.
"""

from __future__ import annotations

import numpy as np

from analysis.stats import rollout
from models.dinov2 import CLS

MASS = 0.6  # DINO keeps the patches holding 60% of a head's [CLS] attention
MASK_NAME = "DINO's 60% mask"  # what the views call that set of patches
HIGH_NORM_FACTOR = 3.0  # an outlier's norm is above 3 × its layer's median patch norm (module docstring)


def cls_to_patches(weights: np.ndarray) -> np.ndarray:
    """(…, T, T) attention → (…, N) [CLS]'s row over the patches (its weight on itself left out)."""
    return weights[..., CLS, CLS + 1 :]


def dino_mask(cls_row: np.ndarray, mass: float = MASS) -> np.ndarray:
    """(…, N) [CLS] weights over the patches → (…, N) bool: the smallest set holding ``mass`` of them
    once renormalised over the patches (DINO's ``th_attn``: sort ascending, cumulative sum, keep what
    lies above 1 − mass). Ties are broken by position, as a stable sort does."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}; DINO uses 0.6.")
    order = np.argsort(cls_row, axis=-1, kind="stable")  # ascending
    ranked = np.take_along_axis(cls_row, order, -1)
    cumulative = np.cumsum(ranked, -1) / ranked.sum(-1, keepdims=True)  # renormalised over the patches
    keep = np.empty_like(cumulative, dtype=bool)
    np.put_along_axis(keep, order, cumulative > 1 - mass, -1)  # back to the patches' order
    return keep


def patches_to_pixels(mask: np.ndarray, grid: tuple[int, int], patch: int = 14) -> np.ndarray:
    """(…, rows·cols) per-patch values → (…, rows·patch, cols·patch): each patch's value on its pixels."""
    rows, cols = grid
    image = mask.reshape(*mask.shape[:-1], rows, cols)
    return np.repeat(np.repeat(image, patch, -2), patch, -1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two boolean masks of one shape; two empty masks agree (1.0)."""
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape}; compare masks of one resolution.")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def cls_rollout(weights: np.ndarray) -> np.ndarray:
    """(L, h, T, T) every layer's attention → (N,) the rollout through all L layers, [CLS]'s row over
    the patches (its share on itself left out, not renormalised)."""
    return cls_to_patches(rollout(weights)[-1])


def high_norm_tokens(norms: np.ndarray, factor: float = HIGH_NORM_FACTOR) -> np.ndarray:
    """(…, N) patch output norms (per layer) → (…, N) bool: above ``factor`` × the median of the last axis."""
    return norms > factor * np.median(norms, axis=-1, keepdims=True)


def norm_ratios(norms: np.ndarray) -> np.ndarray:
    """(…, N) patch norms → (…, N) each over its layer's median: what `high_norm_tokens` compares."""
    return norms / np.median(norms, axis=-1, keepdims=True)


def share_of_cls_attention(cls_row: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """(…, T) [CLS]'s full row ([CLS] first) and (…, N) bool patches → (…) the weight on those patches."""
    return (cls_row[..., CLS + 1 :] * patches).sum(-1)
