"""What the pages share: cached loaders and safe text. Thin: no model logic lives here."""

from __future__ import annotations

import hashlib
import re

import streamlit as st

from models.attention import Interventions
from models.bert import LoadedBert, load_bert
from models.checkpoints import load_card, load_checkpoint
from models.device import pick_device
from runners import bert as bert_runs
from runners import transformer as transformer_runs
from runners.seq2seq import InputError, Run, decode, prepare
from runners.transformer import TransformerRun
from tasks import TASKS
from tasks.common import Example
from training.train import TEST_SEED, TEST_SIZE
from viz.figures import attention_heatmap, head_grid

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_escape(text: str) -> str:
    """User text inside a Markdown string: every Markdown/HTML character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def token_key(prefix: str, tokens) -> str:
    """A widget key tied to a token sequence: a picker of positions resets when the tokens change
    (position 3 of another sentence is another token)."""
    return f"{prefix}_{hashlib.sha1(repr(tuple(tokens)).encode()).hexdigest()[:10]}"


def quoted(tokens) -> str:
    """Tokens as a readable, escaped list for messages: ‘a’, ‘b’."""
    return ", ".join(f"‘{md_escape(t)}’" for t in tokens)


@st.cache_resource(show_spinner="Loading model…")
def load_model(name: str):
    """One shared model per checkpoint (eval mode, on the picked device), its card and vocabularies."""
    return load_checkpoint(name)


@st.cache_data(show_spinner=False)
def card(name: str) -> dict | None:
    try:
        return load_card(name)
    except FileNotFoundError:
        return None


@st.cache_data(max_entries=256, show_spinner=False)
def cached_decode(
    name: str, src: tuple[str, ...], beam: int = 1, reference: tuple[str, ...] | None = None
) -> list[Run]:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task = TASKS[model_card["task"]]
    return decode(model, task, src, src_vocab, tgt_vocab, beam=beam, reference=reference)


@st.cache_data(show_spinner=False)
def held_out_examples(task_name: str, n: int = 100) -> list[Example]:
    """The first ``n`` examples of the task's fixed test split (the one the cards are scored on)."""
    return TASKS[task_name].generate(TEST_SIZE, TEST_SEED, "test")[:n]


FIXED_BATCH = 100  # held-out examples the transformer page scores interventions on


@st.cache_data(max_entries=128, show_spinner=False)
def cached_transformer_run(
    name: str,
    src: tuple[str, ...],
    iv: Interventions,
    reference: tuple[str, ...] | None = None,
    pad_to: int = 0,
) -> TransformerRun:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task = TASKS[model_card["task"]]
    return transformer_runs.run(
        model, task, src, src_vocab, tgt_vocab, iv, reference=reference, pad_to=pad_to
    )


@st.cache_data(max_entries=64, show_spinner="Scoring the fixed test batch…")
def cached_batch_accuracy(name: str, iv: Interventions) -> float:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task_name = model_card["task"]
    batch = held_out_examples(task_name, FIXED_BATCH)
    return transformer_runs.exact_match(model, TASKS[task_name], batch, src_vocab, tgt_vocab, iv)


@st.cache_data(max_entries=16, show_spinner="Ablating each head in turn on the fixed test batch…")
def cached_head_ranking(name: str, iv: Interventions) -> list[tuple[str, int, int, float]]:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    task_name = model_card["task"]
    batch = held_out_examples(task_name, FIXED_BATCH)
    return transformer_runs.head_ranking(model, TASKS[task_name], batch, src_vocab, tgt_vocab, iv)


BERT_ENV = "ATTENTION_EXPLORER_BERT"  # a folder with config.json, model.safetensors, tokenizer.json


@st.cache_resource(show_spinner="Loading BERT…", max_entries=3)
def load_bert_cached(folder: str) -> LoadedBert:
    return load_bert(folder, pick_device())


@st.cache_data(max_entries=8, show_spinner="Running BERT…")
def cached_bert_run(folder: str, text_a: str, text_b: str | None, iv: Interventions):
    loaded = load_bert_cached(folder)
    enc = bert_runs.encode(loaded, text_a, text_b)
    return enc, bert_runs.run(loaded, enc, iv)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_neuron(
    folder: str, text_a: str, text_b: str | None, iv: Interventions, layer: int, head: int, query: int
):
    loaded = load_bert_cached(folder)
    return bert_runs.neuron(loaded, bert_runs.encode(loaded, text_a, text_b), iv, layer, head, query)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_pair_similarity(folder: str, text_a: str, text_b: str, iv: Interventions) -> float:
    loaded = load_bert_cached(folder)
    return bert_runs.pair_similarity(loaded, bert_runs.encode(loaded, text_a, text_b), text_a, text_b, iv)


def from_url(key: str, param: str, default, parse=str, valid=lambda v: True) -> None:
    """Before a widget is created: give its session-state ``key`` the value of ``?param=`` from the
    URL (parsed and validated; anything else is ignored), or ``default``, once per session.
    Widgets then take their value from session state, so a shared URL restores the view."""
    if key in st.session_state:
        return
    value = default
    if param in st.query_params and not st.session_state.get(_loaded_flag(key)):
        try:
            candidate = parse(st.query_params[param])
            if valid(candidate):
                value = candidate
        except (ValueError, TypeError):
            pass
    st.session_state[key] = value


def _loaded_flag(key: str) -> str:
    """Session flag of the page a widget key belongs to (keys are page-prefixed: "s2s_task")."""
    return f"_url_loaded_{key.split('_')[0]}"


def to_url(page: str, **params) -> None:
    """Write the page's main state into the URL (values as strings), replacing what was there.
    From now on this session's widgets of ``page`` (its key prefix) ignore the URL: a link seeds
    the view it opens, and later choices are the user's."""
    st.session_state[f"_url_loaded_{page}"] = True
    st.query_params.from_dict({k: str(v) for k, v in params.items() if v is not None})


def checked_source(task, text: str, src_vocab, reference):
    """Validate user text for a seq2seq-style task: show the message and stop on empty or too long
    input; name unknown tokens; drop a reference longer than the model outputs. Returns the
    prepared source and the reference to use."""
    try:
        prepared = prepare(task, text, src_vocab)
    except InputError as err:
        (st.info if not text.strip() else st.error)(str(err))
        st.stop()
    if prepared.unknown:
        st.warning(
            f"Not in the model's vocabulary, read as <unk>: {quoted(prepared.unknown)}. "
            f"The model knows {len(src_vocab) - 4} source {task.unit}; expect a poor output."
        )
    if reference is not None and len(reference) + 1 > task.max_target:
        st.warning(
            f"The reference is longer than this model ever outputs ({task.max_target - 1} tokens); "
            "teacher forcing is skipped."
        )
        reference = None
    return prepared, reference


def model_view(weights, q_tokens, k_tokens, prefix: str, *, height_per_row: int = 200, plot_config=None):
    """Layers × heads thumbnails (weights (L, h, Tq, Tk)) and one zoomed head, chosen by select boxes."""
    n_layers, n_heads = weights.shape[:2]
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Zoom: layer", range(n_layers), key=f"{prefix}_mv_layer")
    head = c2.selectbox("Zoom: head", range(n_heads), key=f"{prefix}_mv_head")
    st.markdown("**Model view** — every layer × head (hover for exact weights); the zoomed head is outlined:")
    grid = head_grid(
        weights,
        q_tokens,
        k_tokens,
        row_names=[f"L{i}" for i in range(n_layers)],
        col_names=[f"H{h}" for h in range(n_heads)],
        focus=(layer, head),
        height_per_row=height_per_row,
    )
    st.plotly_chart(grid, key=f"{prefix}_model_view", config=plot_config)
    zoom = attention_heatmap(
        weights[layer, head],
        q_tokens,
        k_tokens,
        title=f"layer {layer} · head {head}",
        row_title="query",
        col_title="key",
        value_name="w",
    )
    st.plotly_chart(zoom, key=f"{prefix}_zoom", config=plot_config)
