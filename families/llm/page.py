"""Language models

Real language models run on the project's own attention core, so every weight shown is one the model
computed: SmolLM2-135M-Instruct ships with the app (30 layers, 9 query heads sharing 3 key/value heads,
rotary positions), and any Llama, Mistral, Qwen 2/3, Gemma 2 or GPT-2 checkpoint this server offers can be
picked by name. Type a prompt or a chat message: see its guess for each next token and any head's attention;
switch heads off, hide tokens or take the positions away and see what changes; generate a continuation and
see what each new token looked at; measure the model, or take a circuit apart.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from analysis import lm
from families.llm import FAMILY, runner
from families.llm import views as lm_tabs
from families.llm.card_view import card_view, measured
from families.llm.circuits_view import circuits_view
from families.llm.generation import generate_view
from families.llm.picker import file_stem, pick
from families.llm.shipped import SMOLLM2
from models.attention import Interventions
from models.decoder import BLOCK
from tasks import InputError
from views import attention
from views import interventions as controls
from views import lm as lm_views
from views.inputs import assign, token_key
from views.layout import lazy_tabs, page_header
from views.outputs import next_tokens, text_block
from views.serving import cached, measurements

HEAD_VIEW_UP_TO = 128  # prompt tokens up to which the head view (a line per query–key pair) is drawn
MAP_ROWS = 128  # query rows a heatmap draws at once beyond this many tokens (the hover text is per cell)
PRESETS = {  # button → (input mode, text)
    "Eiffel Tower": ("prompt", runner.EXAMPLE),
    "Names (IOI)": ("prompt", "When Mary and John went to the store, John gave a drink to"),
    "Repeated words": ("prompt", "violet anchor 47 drum quiet lemon tiger 19 cloud paper. " * 2),
    "Python": ("prompt", "def fibonacci(n):\n    "),
    "Chat": ("chat", "What is the capital of France?"),
}
llm_run, llm_scores = cached(FAMILY, "run"), cached(FAMILY, "scores")

page_header(__doc__)
name, loaded, catalog = pick()
cfg = loaded.model.cfg
card = (measurements(SMOLLM2.card) or {}) if name == SMOLLM2.name else {}  # the shipped model's, stored
measures = card or measured(name) or {}  # … else the card this session measured ("Model card" tab)
english, groups = measures.get("english", {}), cfg.n_heads // cfg.n_kv_heads
up_to = runner.all_layers_up_to(cfg)
weights = SMOLLM2.weights if name == SMOLLM2.name else f"{name}'s own weights, in float32"
sharing = {1: "each its own key/value head", cfg.n_heads: "all sharing one key/value head"}.get(
    groups, f"each group of {groups} sharing one of {cfg.n_kv_heads} key/value heads")  # fmt: skip
positions = "RoPE" if cfg.positions == "rope" else "learned position vectors"
st.caption(
    f"It runs {weights}: every number on this page is that file's. A {cfg.arch} decoder: {cfg.n_layers} "
    f"layers × {cfg.n_heads} query heads ({sharing}), d_model {cfg.d_model}, {positions}, {cfg.vocab:,} "
    f"tokens; the page reads up to {loaded.vocabulary.window:,}."
    + (f" Held-out English perplexity {english['perplexity']:.1f} "
       f"(unigram {english['unigram_perplexity']:.0f})." if english else ""))  # fmt: skip


# --- Input ----------------------------------------------------------------------------------------
mode = st.radio(  # the options are their own labels: a bound radio puts the label in the URL
    "Input: a prompt the model continues, or a chat message (the model's chat template around it)",
    ["prompt", "chat"], horizontal=True, key="llm_mode", bind="query-params",
)  # fmt: skip
text = st.text_area("Prompt" if mode == "prompt" else "Your message", runner.EXAMPLE, key="llm_prompt",
                    bind="query-params", height=110)  # fmt: skip
for i, (column, preset) in enumerate(zip(st.columns(len(PRESETS)), PRESETS, strict=True)):
    preset_mode, preset_text = PRESETS[preset]  # a module's callback: see views.inputs.assign
    column.button(preset, on_click=assign, kwargs={"llm_mode": preset_mode, "llm_prompt": preset_text},
                  key=f"llm_preset_{i}", help="Try this example")  # fmt: skip
try:
    prompt = runner.prepare(loaded, text, chat=mode == "chat")
except InputError as err:
    st.info(str(err))
    st.stop()
ids, window = prompt.ids, loaded.vocabulary.window
if prompt.dropped or prompt.unread:
    unread = f"; {prompt.unread:,} characters past the first {lm.MAX_CHARS:,} were never read"
    st.warning(f"The page reads {window:,} tokens: the first {window:,} tokens were read, "
               f"{prompt.dropped:,} more were not{unread if prompt.unread else ''}.")  # fmt: skip
if prompt.removed:
    st.warning(f"{prompt.removed} control character(s) removed: the model reads text, newlines and tabs.")
if mode == "chat":
    st.caption("What the model reads: the chat template around your message, the assistant's turn opened:")
    text_block(loaded.vocabulary.tokenizer.decode(list(ids), skip_special_tokens=False), wrap=True)

layer_column, head_column, _ = st.columns([1, 1, 2])
default_layer, default_head = measures.get("in_context", {}).get("induction_head", (0, 0))
layer = layer_column.selectbox(
    "Layer", range(cfg.n_layers), index=default_layer, format_func="L{}".format, key="llm_layer",
    bind="query-params", help=f"Up to {up_to} tokens the run keeps every layer's maps; beyond, only this "
    "layer's (every layer of a long prompt would take gigabytes).",
)  # fmt: skip
head = head_column.selectbox("Head", range(cfg.n_heads), index=default_head, format_func="H{}".format,
                             key="llm_head", bind="query-params")  # fmt: skip
layers = runner.page_layers(cfg, len(ids), layer)
plain = Interventions()
base = llm_run(name, ids, plain, layers)

# --- Interventions (sidebar): reset when the model changes (another model's heads and tokens) ----------
rope = cfg.positions == "rope"
sidebar_key = "llm" if name == SMOLLM2.name else token_key("llm", [name])
chosen = lm_views.sidebar(cfg.n_layers, cfg.n_heads, base.inputs, key=sidebar_key, block=BLOCK, rope=rope,
                          hidden_label="Hide tokens (no query attends to them)")  # fmt: skip
interventions = chosen.together
run = llm_run(name, ids, interventions, layers) if chosen.each else base

# --- Output ---------------------------------------------------------------------------------------
lm_views.headline(run, base, bool(chosen.each))
if chosen.each:
    # Both runs untraced (no maps): the losses, next tokens and the distribution after the prompt.
    lm_views.changes(chosen, lambda iv: lm.compare(llm_scores(name, ids, iv), llm_scores(name, ids, plain)))
    controls.deltas(run, base, True, "Per attention block (the layers the run keeps)")
maps, at = run.maps["self"], run.layers.index(layer)
names = [f"L{i}" for i in run.layers]


# --- Views ----------------------------------------------------------------------------------------
def attention_view() -> None:
    g = lm_tabs.lm_analysis.gqa(loaded, len(ids))
    window = g.windows[layer]
    hidden = f"; its sliding window hides each key {window} or more before the query, 0 too" if window else ""
    st.markdown(f"**L{layer} H{head}** {lm_tabs.reads(g, head)}. Rows are queries, columns keys; above the "
                f"diagonal is the future, exactly 0{hidden}. The view's own layer and head pickers (and the "
                "arrow keys) look around without a rerun.")  # fmt: skip
    rows, last = range(len(ids)), len(ids) - MAP_ROWS
    if len(ids) > 2 * MAP_ROWS:  # a slider picks MAP_ROWS query rows to draw
        first = st.slider(f"Query rows drawn ({MAP_ROWS} at a time) from position", 0, last, last,
                          key=token_key("llm_rows", run.inputs))  # fmt: skip
        rows = range(first, first + MAP_ROWS)
    shown = maps.take(rows, range(rows[-1] + 1)) if len(rows) < len(ids) else maps
    views = ("map", "lines") if len(ids) <= min(HEAD_VIEW_UP_TO, up_to) else ("map",)
    attention.explorer(shown, "llm_map", views, layer=at, head=head, layer_names=names)
    if len(ids) > min(HEAD_VIEW_UP_TO, up_to):
        st.caption(f"The head view (a line per query–key pair) is drawn up to {min(HEAD_VIEW_UP_TO, up_to)} "
                   "tokens.")  # fmt: skip


def model_view() -> None:
    if layers is not None:
        return st.info(f"The model view (all {cfg.n_layers} × {cfg.n_heads} maps) is drawn up to {up_to} "
                       "tokens, where the run keeps every layer. Pick a layer and head: the Attention tab "
                       "shows that map.")  # fmt: skip
    attention.model_view(maps, "llm", layer=at, head=head, layer_names=names)


# fmt: off
lazy_tabs(
    {
        "Next tokens": lambda: next_tokens(run, lm.TOP_K, key="llm_k"),
        "Attention": attention_view,
        "Model view": model_view,
        "Generate": lambda: generate_view(loaded, name, prompt, run, interventions, layers, layer, head),
        "GQA": lambda: lm_tabs.gqa_view(name, run, layer, head),
        "RoPE": lambda: lm_tabs.rope_view(name, prompt, layer, head, interventions),
        "Attention sinks": lambda: lm_tabs.sinks_view(loaded, name, prompt, measures, layer, head),
        "Raw vs projected": lambda: lm_tabs.projections_view(loaded, name, prompt, interventions),
        "Attention vs importance": lambda: lm_tabs.importance_view(loaded, name, prompt, card),
        "Circuits": lambda: circuits_view(loaded, name, text, card),
        **attention.statistics_tabs(run.maps if layers is None else {"self": replace(
            maps, title=f"layer {layer} only (listed as 0)")}, "llm", file_stem=file_stem(name)),
        "Model card": lambda: card_view(name, card),
    },
    key="llm_view",
)
# fmt: on
