"""The ViT measures on small inputs whose answers can be worked out by hand (no model here)."""

from __future__ import annotations

import numpy as np
import pytest

from families.vit.measures import (
    cls_rollout,
    cls_to_patches,
    dino_mask,
    high_norm_tokens,
    jaccard,
    norm_ratios,
    patches_to_pixels,
    share_of_cls_attention,
)
from families.vit.preprocess import letterbox_mask


def test_dino_mask_keeps_the_fewest_patches_holding_60_percent():
    # Ascending: 0.05, 0.15, 0.3, 0.5 → cumulative 0.05, 0.2, 0.5, 1.0; above 0.4: the 0.3 and the 0.5.
    assert dino_mask(np.array([0.05, 0.5, 0.15, 0.3])).tolist() == [False, True, False, True]
    # The whole [CLS] row: its weight on itself (0.5) is left out and the patches renormalised — same mask.
    weights = np.zeros((5, 5))
    weights[0] = [0.5, 0.025, 0.25, 0.075, 0.15]  # [CLS]'s row: half on itself
    assert dino_mask(cls_to_patches(weights)).tolist() == [False, True, False, True]
    # One patch over the mass alone is enough; a uniform row needs ⌈0.6 · N⌉ of N.
    assert dino_mask(np.array([0.7, 0.1, 0.1, 0.1])).tolist() == [True, False, False, False]
    assert dino_mask(np.full(10, 0.1)).sum() == 6
    # Per head, (h, N) at once; 85%: 0.5 + 0.3 + 0.15, and 0.7 + 0.1 + 0.1 (0.7 + 0.1 is short of it).
    heads = np.array([[0.05, 0.5, 0.15, 0.3], [0.7, 0.1, 0.1, 0.1]])
    assert dino_mask(heads, mass=0.85).tolist() == [[False, True, True, True], [True, False, True, True]]
    with pytest.raises(ValueError, match="mass"):
        dino_mask(np.ones(4), mass=0)


def test_cls_to_patches_reads_the_first_row_without_its_first_key():
    w = np.arange(16.0).reshape(1, 4, 4)
    assert cls_to_patches(w).tolist() == [[1.0, 2.0, 3.0]]


def test_jaccard_and_patch_masks_at_pixel_resolution():
    a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 1.0 and jaccard(a, ~a) == 0.0
    pixels = patches_to_pixels(np.array([True, False, False, True]), (2, 2), patch=3)  # 2×2 patches of 3 px
    assert pixels.shape == (6, 6) and pixels[:3, :3].all() and pixels[3:, 3:].all()
    assert not pixels[:3, 3:].any() and not pixels[3:, :3].any()
    with pytest.raises(ValueError, match="shapes"):
        jaccard(a, pixels)


def test_letterbox_mask_follows_the_pictures_geometry():
    mask = np.zeros((64, 32), bool)
    mask[:32] = True  # the top half of a tall 32 × 64 picture
    square = letterbox_mask(mask, side=128)  # scaled ×2 to 64 × 128, centred: columns 32–95
    assert square[:64, 32:96].all() and not square[64:].any() and not square[:, :32].any()


def test_cls_rollout_by_hand():
    # One layer, one head, [CLS] and one patch; [CLS] attends 0.5 / 0.5. (A + I) / 2 → [[0.75, 0.25], …].
    one = np.array([[[[0.5, 0.5], [0.0, 1.0]]]])  # (L=1, h=1, 2, 2)
    assert cls_rollout(one).tolist() == [0.25]
    # Two such layers: [[0.75, 0.25], [0, 1]]² = [[0.5625, 0.4375], [0, 1]].
    assert cls_rollout(np.concatenate([one, one])) == pytest.approx([0.4375])


def test_high_norm_tokens_are_those_above_three_times_the_layer_median():
    norms = np.array([[1.0, 1.1, 0.9, 1.0, 5.0], [10.0, 31.0, 9.0, 10.0, 29.0]])  # medians 1 and 10
    assert high_norm_tokens(norms).tolist() == [[0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]
    assert norm_ratios(norms)[1].tolist() == pytest.approx([1.0, 3.1, 0.9, 1.0, 2.9])


def test_share_of_cls_attention_on_chosen_patches():
    row = np.array([0.1, 0.2, 0.3, 0.4])  # [CLS] itself, then three patches
    assert share_of_cls_attention(row, np.array([False, False, True])) == pytest.approx(0.4)
    everything = share_of_cls_attention(row, np.array([True, True, True]))
    assert everything == pytest.approx(0.9)  # [CLS]'s weight on itself is not a patch's
