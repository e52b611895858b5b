"""Where language models come from: the settings, the hub cache and the shipped SmolLM2, found by name,
checked without loading, opened by name only."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open

from models.checkpoints import CheckpointError
from models.lm_catalog import SHIPPED, discover, open_model
from tests import lm_checkpoints as lm
from tests import lm_gguf
from tests.test_lm_formats import hub_entry

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny Qwen 2 folder and one tiny Gemma 2 GGUF, made once."""
    base = tmp_path_factory.mktemp("catalog")
    tok = lm.train_tokenizer(True)
    folder = lm.write_checkpoint("qwen2", base / "tiny-qwen", tok)
    gguf = lm_gguf.write_gguf(
        lm.random_model("gemma2"), lm.train_tokenizer(False), "gemma2", base / "tiny-gemma.gguf"
    )
    return folder, gguf


def settings(tmp_path, **env) -> dict:
    return {"HF_HUB_CACHE": str(tmp_path / "empty-hub"), **env}


def test_nothing_set_offers_the_shipped_model_only(tmp_path):
    catalog = discover(settings(tmp_path))
    assert catalog.names == (SHIPPED,) and catalog.default == SHIPPED and not catalog.refused


def test_a_folder_of_models_offers_each_by_name_and_says_why_not(tmp_path, tiny):
    folder, gguf = tiny
    models = tmp_path / "models"
    shutil.copytree(folder, models / "qwen-ok")
    shutil.copy(gguf, models / "gemma.gguf")
    shutil.copytree(folder, models / "no-tokenizer")
    (models / "no-tokenizer" / "tokenizer.json").unlink()
    shutil.copytree(folder, models / "bert")
    (models / "bert" / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    (models / "notes").mkdir()  # not a checkpoint: not listed at all
    (models / "junk.gguf").write_bytes(b"GGUF" + bytes(100))
    catalog = discover(settings(tmp_path, ATTENTION_EXPLORER_LM_DIR=str(models)))
    assert catalog.names == (SHIPPED, "gemma.gguf", "qwen-ok") and catalog.default == SHIPPED
    reasons = {r.name: r.reason for r in catalog.refused}
    assert set(reasons) == {"bert", "no-tokenizer", "junk.gguf"}
    assert "architecture 'bert' is not supported" in reasons["bert"]
    assert "no tokenizer.json" in reasons["no-tokenizer"]
    assert "not a readable GGUF file" in reasons["junk.gguf"]
    assert all(str(tmp_path) not in r for r in reasons.values())  # reasons never show server paths
    offer = catalog.offer("qwen-ok")
    with safe_open(folder / "model.safetensors", "pt") as f:
        numel = sum(f.get_tensor(k).numel() for k in f.keys())
    assert offer.arch == "qwen2" and offer.weight_bytes == 4 * numel
    with pytest.raises(ValueError, match="no model is called '/etc/passwd'; choose one of"):
        catalog.offer("/etc/passwd")


def test_the_chosen_model_is_the_default_and_opens_by_name(tmp_path, tiny):
    folder, _ = tiny
    catalog = discover(settings(tmp_path, ATTENTION_EXPLORER_LM=str(folder)))
    assert catalog.default == "tiny-qwen" and catalog.names == (SHIPPED, "tiny-qwen")
    opened = open_model(catalog, "tiny-qwen", torch.device("cpu"))
    assert opened.model.cfg.arch == "qwen2" and opened.chat_template == lm.CHATML


def test_the_hub_cache_offers_org_slash_name_and_survives_a_symlink_loop(tmp_path, tiny):
    folder, gguf = tiny
    hub = tmp_path / "hub"
    hub_entry(hub, folder)
    only_gguf = tmp_path / "gguf-repo"
    only_gguf.mkdir()
    shutil.copy(gguf, only_gguf / "tiny-gemma.Q8_0.gguf")
    hub_entry(hub, only_gguf, name="models--tiny-org--tiny-gemma-GGUF")
    loop = hub / "models--evil--loop"
    loop.mkdir()
    (loop / "snapshots").mkdir()
    (loop / "snapshots" / "rev").symlink_to(loop / "snapshots" / "rev")  # points at itself
    (hub / "models--evil--self").symlink_to(hub / "models--evil--self")
    catalog = discover({"HF_HUB_CACHE": str(hub)})
    assert catalog.names == (SHIPPED, "tiny-org/tiny-gemma-GGUF/tiny-gemma.Q8_0.gguf", "tiny-org/tiny-qwen")
    assert catalog.offer("tiny-org/tiny-gemma-GGUF/tiny-gemma.Q8_0.gguf").arch == "gemma2"
    reasons = {r.name: r.reason for r in catalog.refused}
    assert reasons == {
        "evil/loop": "models--evil--loop: the hub cache entry holds no snapshot. To fix: download the model "
        "again.",
        "evil/self": "models--evil--self: a broken or looping link. To fix: check the setting.",
    }
    home = discover({"HF_HOME": str(tmp_path / "home")})  # $HF_HOME/hub when HF_HUB_CACHE is not set
    assert home.names == (SHIPPED,)


def test_a_model_over_the_size_limit_is_refused_with_its_size(tmp_path, tiny):
    folder, _ = tiny
    catalog = discover(
        settings(tmp_path, ATTENTION_EXPLORER_LM=str(folder), ATTENTION_EXPLORER_LM_MAX_GB="0.00001")
    )
    (refused,) = catalog.refused
    assert refused.name == "tiny-qwen" and refused.reason.startswith(
        "0.0 GB of float32 weights, over the 0.0 GB"
    )
    assert catalog.default == SHIPPED and "ATTENTION_EXPLORER_LM_MAX_GB" in refused.reason


def test_a_folder_that_vanished_after_listing_is_a_clear_error(tmp_path, tiny):
    folder, _ = tiny
    moved = shutil.copytree(folder, tmp_path / "soon-gone")
    catalog = discover(settings(tmp_path, ATTENTION_EXPLORER_LM=str(moved)))
    shutil.rmtree(moved)
    with pytest.raises(CheckpointError, match="missing"):
        open_model(catalog, "soon-gone")


def test_settings_that_point_at_nothing_are_listed(tmp_path):
    catalog = discover(settings(tmp_path, ATTENTION_EXPLORER_LM=str(tmp_path / "none"),
                                ATTENTION_EXPLORER_LM_DIR=str(tmp_path / "no-dir")))  # fmt: skip
    assert catalog.names == (SHIPPED,) and catalog.default == SHIPPED
    reasons = {r.name: r.reason for r in catalog.refused}
    assert reasons == {
        "none": "none: nothing is there. To fix: check the setting.",
        "no-dir": "not a readable folder (No such file or directory)",
    }
