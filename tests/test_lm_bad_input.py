"""Broken language-model checkpoints: each is one `CheckpointError` whose message names the problem and the
fix — never a raw KeyError, RuntimeError or SafetensorError, never a hang."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from models.checkpoints import CheckpointError
from models.lm_catalog import discover, open_model
from models.lm_checkpoint import open_checkpoint
from tests import lm_checkpoints as lm
from tests import lm_gguf

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    base = tmp_path_factory.mktemp("good")
    folder = lm.write_checkpoint("qwen2", base / "qwen", lm.train_tokenizer(True))
    gguf = lm_gguf.write_gguf(lm.random_model("qwen2"), lm.train_tokenizer(True), "qwen2", base / "qwen.gguf")
    return folder, gguf


@pytest.fixture
def copy(tmp_path, good):
    return shutil.copytree(good[0], tmp_path / "model")


def edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def refused(path, *patterns):
    """The CheckpointError ``path`` opens with; its text holds every pattern and a fix."""
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(path, torch.device("cpu"))
    for pattern in (*patterns, "To fix: "):
        assert pattern in str(err.value), str(err.value)
    return err.value


def test_unknown_architecture(copy):
    edit_config(copy, model_type="mamba")
    refused(copy, "architecture 'mamba' is not supported", "llama, mistral, qwen2, qwen3, gemma2, gpt2")


def test_unsupported_rope_scaling(copy):
    edit_config(copy, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4})
    refused(copy, "RoPE scaling 'yarn' is not supported")


def test_a_config_that_does_not_match_its_weights(copy):
    edit_config(copy, intermediate_size=128, num_hidden_layers=3)
    err = refused(copy, "the weights do not fit the config", "weights missing", "blocks.2.", "wrong shape")
    assert "blocks.0.down.weight is (64, 96), the config needs (64, 128)" in str(err)


def test_impossible_shapes_and_missing_sizes(copy):
    edit_config(copy, num_attention_heads=3)
    refused(copy, "describes no model we can build", "not divisible")
    edit_config(copy, num_attention_heads=4, hidden_size="sixty-four")
    refused(copy, "config.json has no whole-number ['hidden_size']")


@pytest.mark.parametrize("damage", ["cut", "garbage", "empty", "weights of another model"])
def test_cut_or_corrupt_weights(copy, damage):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    if damage == "cut":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        weights.write_bytes(bytes(range(256)) * 64)
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        from safetensors.torch import save_file

        save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, weights)
    refused(copy, "model.safetensors" if damage != "weights of another model" else "qwen2 does not have")


def test_missing_weights_and_pickles(copy):
    (copy / "model.safetensors").unlink()
    refused(copy, "no model.safetensors or model.safetensors.index.json")
    torch.save({}, copy / "pytorch_model.bin")
    refused(copy, "pickled (.bin), which we never load", "convert them to safetensors")


def test_a_shard_listed_but_missing(copy):
    (copy / "model.safetensors").rename(copy / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(copy, "model-00002-of-00002.safetensors", "missing")


def test_no_tokenizer_or_a_broken_one(copy):
    (copy / "tokenizer.json").write_text("{not json")
    refused(copy, "not a readable tokenizer.json")
    (copy / "tokenizer.json").unlink()
    refused(copy, "the model has no tokenizer.json", "put the model's tokenizer.json beside its config.json")


def test_a_config_that_is_not_json(copy):
    (copy / "config.json").write_bytes(b"\xff\xfe garbage")
    refused(copy, "config.json", "not readable JSON")


def test_unsupported_cut_or_tokenizerless_gguf(tmp_path, good):
    _, gguf = good
    bert = lm_gguf.write_gguf(
        lm.random_model("qwen2"), lm.train_tokenizer(True), "qwen2", tmp_path / "b.gguf"
    )
    data = bert.read_bytes().replace(b"qwen2", b"bert\x00", 1)  # the architecture string, same length
    (tmp_path / "bert.gguf").write_bytes(data)
    refused(tmp_path / "bert.gguf", "GGUF architecture", "not supported")
    (tmp_path / "cut.gguf").write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    refused(tmp_path / "cut.gguf", "not a readable GGUF file")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(range(200)) * 5)
    refused(tmp_path / "junk.gguf", "not a readable GGUF file")


def test_a_folder_that_vanished_or_loops(tmp_path, copy):
    catalog = discover({"HF_HUB_CACHE": str(tmp_path / "none"), "ATTENTION_EXPLORER_LM": str(copy)})
    shutil.rmtree(copy)
    with pytest.raises(CheckpointError, match="config.json: the file is missing. To fix"):
        open_model(catalog, "model")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    refused(loop, "the checkpoint folder is missing")


def test_a_model_too_big_for_the_limit(tmp_path, copy):
    catalog = discover({"HF_HUB_CACHE": str(tmp_path / "none"), "ATTENTION_EXPLORER_LM": str(copy),
                        "ATTENTION_EXPLORER_LM_MAX_GB": "1"})  # fmt: skip
    object.__setattr__(catalog, "limit_bytes", 1000)  # the limit dropped after listing (memory got scarce)
    with pytest.raises(CheckpointError, match="GB of float32 weights, over the limit. To fix: raise"):
        open_model(catalog, "model")
