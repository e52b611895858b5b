"""DINOv2-small's card: it names the file it measured, its numbers hang together, and its first block of
scenes recomputes here from the model (a subset of each scene measurement)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.checkpoints import ASSETS
from models.dinov2 import load
from models.dinov2_onnx import onnx_path
from tasks import scenes
from training import vit_card
from training.llm_card import file_digest

CARD = json.loads((ASSETS / f"{vit_card.CARD}.json").read_text(encoding="utf-8"))
# A DINO mask sorts float32 weights: another CPU or thread count may order two nearly equal patches the
# other way, moving one patch (196 of ~50,000 pixels) in or out of a mask: ~0.01 on one scene's Jaccard.
JACCARD_ATOL = 0.01


@pytest.fixture(scope="module")
def model():
    return load(device=torch.device("cpu"))


def test_the_card_names_the_file_it_measured():
    path = onnx_path()
    assert CARD["file"]["name"] == "models/vit_s_focus.onnx" and CARD["file"]["bytes"] == path.stat().st_size
    assert CARD["file"]["sha256"] == file_digest(path)
    arch = CARD["architecture"]
    assert (arch["layers"], arch["heads"], arch["d_model"], arch["patch"], arch["tokens_at_224"]) == (
        12,
        6,
        384,
        14,
        257,
    )


def test_the_card_holds_together():
    masks = CARD["dino_masks"]
    per_head, blocks = np.array(masks["per_head"]), np.array(masks["per_block"]["per_head"])
    assert per_head.shape == (6,) and blocks.shape == (masks["scenes"]["n"] // vit_card.BLOCK, 6)
    np.testing.assert_allclose(blocks.mean(0), per_head, atol=1e-5)  # equal blocks: the mean of means
    assert masks["best_head"] == int(per_head.argmax()) and masks["best_head_mean"] == pytest.approx(
        per_head.max()
    )
    assert masks["mean_over_heads"] == pytest.approx(per_head.mean(), abs=1e-5)
    assert (
        masks["best_head_per_scene_mean"] >= masks["best_head_mean"] - 1e-5
    )  # a per-scene best beats a fixed one
    assert masks["comparison"]["ViT-S/16 DINO"] == 45.9
    for picture in CARD["parity_vs_onnxruntime"].values():
        assert picture["maps_max_abs"] < 1e-4 and picture["saliency_max_abs"] < 1e-4
    high = CARD["high_norm_tokens"]
    assert len(high["scenes_share_per_layer"]) == 12 and len(high["scenes_cls_share_per_layer"]) == 11
    assert set(high["gallery"]) == {"china", "flower"}


def test_the_first_block_of_scenes_recomputes(model):
    held_out = scenes.generate(vit_card.BLOCK, vit_card.SCENES["seed"], vit_card.SCENES["split"])
    assert (
        held_out[0].key == scenes.generate(1, vit_card.SCENES["seed"], "test")[0].key
    )  # a prefix of the 200
    block = vit_card.scene_block(model, held_out)
    stored = CARD["dino_masks"]["per_block"]
    np.testing.assert_allclose(block["jaccard"].mean(0), stored["per_head"][0], atol=JACCARD_ATOL)
    assert block["rollout"].mean() == pytest.approx(stored["rollout"][0], abs=JACCARD_ATOL)
    assert (
        block["max_norm_ratio"]
        <= np.array(CARD["high_norm_tokens"]["scenes_max_norm_ratio_per_layer"]) + 1e-3
    ).all()
