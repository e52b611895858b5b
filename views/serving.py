"""How the app serves models: cached loaders, cached runs, and the inference concurrency policy.

Models are `st.cache_resource`: one shared object per checkpoint, for every session and thread.
Per-input runs are `st.cache_resource` too, keyed on cheap arguments, with every array marked
read-only (`read_only`): one frozen object shared by every session, never copied or unpickled on a
rerun (a 512-token BERT run is 75 MB; `st.cache_data` would unpickle it at each access).
Runners are pure; this is the only place that decides how many runs share the CPU at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

from models.attention import Interventions
from models.bert import LoadedBert, default_folder, load_bert
from models.checkpoints import ASSETS, load_card
from models.device import pick_device
from models.transformer import BLOCKS
from runners import bert, captioner, captioner_importance, seq2seq, seq2seq_importance, transformer
from runners.importance import PerToken
from runners.registry import load
from runners.stats import rank_heads
from tasks import TASKS, held_out
from tasks.common import Example
from tasks.images import model_input

# Inference policy. "shared" (default): one run at a time in the whole process — on 2 cores,
# concurrent forwards only slow each other. "per-model": one run at a time per checkpoint.
# "free": no limit (a machine with many cores or a GPU).
POLICY_ENV = "ATTENTION_EXPLORER_INFERENCE"
POLICIES = ("shared", "per-model", "free")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def policy() -> str:
    value = os.environ.get(POLICY_ENV, "shared")
    if value not in POLICIES:
        raise ValueError(f"{POLICY_ENV}={value!r}; set it to one of {', '.join(POLICIES)}.")
    return value


@contextmanager
def inference(model_key: str) -> Iterator[None]:
    """Hold the inference slot of ``model_key`` (a checkpoint name or folder) under the policy."""
    mode = policy()
    if mode == "free":
        yield
        return
    key = model_key if mode == "per-model" else ""
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield


def read_only(value):
    """Mark every numpy array inside a run read-only and return the run: a cached run is one object
    shared by every session, so no view may write into it."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            read_only(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            read_only(item)
    elif isinstance(value, list | tuple):
        for item in value:
            read_only(item)
    return value


@st.cache_resource(show_spinner="Loading model…")
def load_model(name: str):
    """One shared model per checkpoint (eval mode, on the picked device), its card and vocabularies."""
    return load(name)


@st.cache_resource(show_spinner=False)
def card(name: str) -> dict | None:
    """A checkpoint's model card (shared by every session: read it, never write into it)."""
    try:
        return load_card(name)
    except FileNotFoundError:
        return None


@st.cache_resource(show_spinner=False)
def held_out_examples(task_name: str, n: int = 100) -> list[Example]:
    """The first ``n`` examples of the task's fixed test split (the one the cards are scored on)."""
    return held_out(task_name, n)


# --- Seq2seq --------------------------------------------------------------------------------------
@st.cache_resource(max_entries=256, show_spinner=False)
def seq2seq_runs(
    name: str, src: tuple[str, ...], beam: int = 1, reference: tuple[str, ...] | None = None
) -> list[seq2seq.Seq2SeqRun]:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    with inference(name):
        runs = seq2seq.run(
            model, TASKS[model_card["task"]], src, src_vocab, tgt_vocab, beam=beam, reference=reference
        )
    return read_only(runs)


@st.cache_resource(max_entries=64, show_spinner="Ablating each source token in turn…")
def seq2seq_importance_rows(name: str, src: tuple[str, ...], output: tuple[str, ...]) -> PerToken:
    """Importance by <unk> ablation, α and gradient × input for every token of ``output`` (the
    shown run's own, teacher-forced): picking an output token on the page is then free."""
    model, _, src_vocab, tgt_vocab = load_model(name)
    with inference(name):
        return read_only(seq2seq_importance.importance(model, src, src_vocab, tgt_vocab, output))


# --- Transformer ----------------------------------------------------------------------------------
FIXED_BATCH = 100  # held-out examples the transformer page scores interventions on


@st.cache_resource(max_entries=128, show_spinner=False)
def transformer_run(
    name: str,
    src: tuple[str, ...],
    interventions: Interventions,
    reference: tuple[str, ...] | None = None,
    pad_to: int = 0,
) -> transformer.TransformerRun:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task = TASKS[model_card["task"]]
    with inference(name):
        run = transformer.run(
            model, task, src, src_vocab, tgt_vocab, interventions, reference=reference, pad_to=pad_to
        )
    return read_only(run)


@st.cache_data(max_entries=64, show_spinner="Scoring the fixed test batch…")
def batch_accuracy(name: str, interventions: Interventions) -> float:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task_name = model_card["task"]
    batch = held_out_examples(task_name, FIXED_BATCH)
    with inference(name):
        return transformer.exact_match(model, TASKS[task_name], batch, src_vocab, tgt_vocab, interventions)


@st.cache_data(max_entries=16, show_spinner="Ablating each head in turn on the fixed test batch…")
def head_ranking(name: str, interventions: Interventions) -> list[tuple[str, int, int, float]]:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task_name = model_card["task"]
    batch = held_out_examples(task_name, FIXED_BATCH)
    cfg = model.cfg

    def accuracy(one: Interventions) -> float:
        return transformer.exact_match(model, TASKS[task_name], batch, src_vocab, tgt_vocab, one)

    with inference(name):
        return rank_heads(accuracy, BLOCKS, cfg.n_layers, cfg.n_heads, interventions)


# --- BERT -----------------------------------------------------------------------------------------
BERT_ENV = "ATTENTION_EXPLORER_BERT"  # a folder with config.json, model.safetensors, tokenizer.json
BERT_DIR_ENV = "ATTENTION_EXPLORER_BERT_DIR"  # a folder whose subfolders are BERT-family checkpoints


def bert_folders() -> dict[str, str]:
    """The BERT checkpoints the operator offers, folder → label; the first is the default.

    Visitors pick from these and never type a path: a typed path would let any visitor make the
    server read its own folders, into a cache every session shares.
    """
    folders = {}
    if os.environ.get(BERT_ENV):
        folders[os.environ[BERT_ENV]] = f"{Path(os.environ[BERT_ENV]).name} ({BERT_ENV})"
    folders[str(default_folder())] = "all-MiniLM-L6-v2 (packaged)"
    root = Path(os.environ.get(BERT_DIR_ENV, ""))
    if os.environ.get(BERT_DIR_ENV) and root.is_dir():
        folders |= {str(sub): sub.name for sub in sorted(root.iterdir()) if sub.is_dir()}
    return folders


@st.cache_resource(show_spinner="Loading BERT…", max_entries=3)
def load_bert_cached(folder: str) -> LoadedBert:
    """Raises `CheckpointError` for a broken folder. A failed load is not cached, so it never evicts
    a loaded model (the default stays cached for every other session) and is retried on a rerun."""
    return load_bert(folder, pick_device())


@st.cache_resource(max_entries=4, show_spinner="Running BERT…")
def bert_run(folder: str, text_a: str, text_b: str | None, interventions: Interventions):
    loaded = load_bert_cached(folder)
    enc = bert.encode(loaded, text_a, text_b)
    with inference(folder):
        return enc, read_only(bert.run(loaded, enc, interventions))


@st.cache_resource(max_entries=4, show_spinner="Capturing every intermediate of this layer…")
def bert_neuron_layer(folder: str, text_a: str, text_b: str | None, interventions: Interventions, layer: int):
    """One layer's q, k, scores and weights for every head: picking a head or a query is then free."""
    loaded = load_bert_cached(folder)
    with inference(folder):
        return read_only(bert.neuron_layer(loaded, bert.encode(loaded, text_a, text_b), interventions, layer))


@st.cache_resource(max_entries=2, show_spinner="Computing softmax(XXᵀ) for every layer…")
def bert_projections(folder: str, text_a: str, text_b: str | None, interventions: Interventions):
    """Every layer's raw vs projected self-attention (about 18 MB at 512 tokens: two kept)."""
    loaded = load_bert_cached(folder)
    with inference(folder):
        return read_only(bert.projections(loaded, bert.encode(loaded, text_a, text_b), interventions))


@st.cache_resource(show_spinner=False)
def measurements(name: str) -> dict | None:
    """A measurement card in assets/ (e.g. of a pretrained model we did not train), or None."""
    path = ASSETS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@st.cache_data(max_entries=32, show_spinner=False)
def bert_pair_similarity(folder: str, text_a: str, text_b: str, interventions: Interventions) -> float:
    loaded = load_bert_cached(folder)
    with inference(folder):
        return bert.pair_similarity(
            loaded, bert.encode(loaded, text_a, text_b), text_a, text_b, interventions
        )


# --- Captioner ------------------------------------------------------------------------------------
def _image(pixels: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """The page's 64×64 picture (its raw bytes: the cache key) as the model's input (1, 3, H, W)."""
    return model_input(Image.fromarray(np.frombuffer(pixels, dtype=np.uint8).reshape(shape)))[1]


@st.cache_resource(max_entries=64, show_spinner=False)
def captions(
    name: str, pixels: bytes, shape: tuple[int, int, int], beam: int, hidden: tuple[int, ...] = ()
) -> list[captioner.CaptionRun]:
    """Keyed on the model's 64×64 input pixels: the same picture is captioned once (per beam size
    and set of ``hidden`` regions)."""
    model, _, _, vocab = load_model(name)
    hide = Interventions(hidden_keys=hidden)
    with inference(name):
        return read_only(captioner.run(model, vocab, _image(pixels, shape), hide, beam=beam))


@st.cache_resource(max_entries=32, show_spinner="Ablating each image region in turn…")
def caption_importance_rows(
    name: str, pixels: bytes, shape: tuple[int, int, int], output: tuple[str, ...]
) -> PerToken:
    """Importance by region ablation, α and gradient × input for every word of ``output`` (the
    shown caption, teacher-forced), keyed on the model's 64×64 input pixels."""
    model, _, _, vocab = load_model(name)
    with inference(name):
        return read_only(captioner_importance.importance(model, vocab, _image(pixels, shape), output))


@st.cache_resource(show_spinner="Measuring where the training scenes sit in feature space (once)…")
def captioner_familiarity(name: str) -> captioner.Familiarity:
    model = load_model(name)[0]
    with inference(name):
        return read_only(captioner.familiarity(model))


@st.cache_resource(max_entries=64, show_spinner=False)
def unfamiliarity(name: str, pixels: bytes, shape: tuple[int, int, int]) -> float:
    """How unlike the training scenes the picture is: its distance under `captioner_familiarity`."""
    model = load_model(name)[0]
    with inference(name):
        features = captioner.pooled_features(model, _image(pixels, shape))  # (1, C)
    return float(captioner_familiarity(name).distances(features)[0])
