"""SmolLM2 (a real LLM)

SmolLM2-135M-Instruct — a real, modern small language model: 30 layers, 9 query heads sharing 3
key/value heads, rotary positions — run on the project's own attention core, so every weight shown
is one the model computed. Type a prompt or a chat message: see its guess for each next token and any
head's attention; switch heads off, hide tokens or take the positions away and see what changes;
generate a continuation and see what each new token looked at.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import streamlit as st

from analysis import lm
from analysis.protocol import AttentionMaps
from families.llm import FAMILY
from families.llm import runner as llama
from families.llm import views as llm
from families.llm.runner import NAME, WINDOW
from models.attention import Interventions
from models.checkpoints import CheckpointError
from models.llama import BLOCK
from tasks import InputError
from views import attention
from views import interventions as controls
from views import lm as lm_views
from views.inputs import md_escape, token_key
from views.layout import lazy_tabs, page_header
from views.outputs import model_output, next_tokens
from views.serving import cached, inference, loaded_model, measurements

UP_TO = llama.ALL_LAYERS_UP_TO  # prompt tokens up to which runs keep every layer; the head view is drawn
MAP_ROWS = 128  # query rows a heatmap draws at once beyond this many tokens (the hover text is per cell)
PRESETS = {  # button → (input mode, text)
    "Eiffel Tower": ("prompt", llama.EXAMPLE),
    "Names (IOI)": ("prompt", "When Mary and John went to the store, John gave a drink to"),
    "Repeated words": ("prompt", "violet anchor 47 drum quiet lemon tiger 19 cloud paper. " * 2),
    "Python": ("prompt", "def fibonacci(n):\n    "),
    "Chat": ("chat", "What is the capital of France?"),
}
llm_run, llm_scores = cached(FAMILY, "run"), cached(FAMILY, "scores")

page_header(__doc__)
try:
    loaded = loaded_model(FAMILY, NAME)
except CheckpointError as err:  # `brief` names the file only: no server path reaches the visitor
    st.error(f"Cannot load SmolLM2: {md_escape(err.brief)}")
    st.stop()
cfg, card = loaded.model.cfg, measurements(NAME) or {}
english, groups = card.get("english", {}), cfg.n_heads // cfg.n_kv_heads
st.caption(
    f"It runs {llama.QUANTISATION}: every number on this page is that file's. {cfg.n_layers} layers × "
    f"{cfg.n_heads} query heads (each group of {groups} shares one of {cfg.n_kv_heads} key/value heads), "
    f"d_model {cfg.d_model}, RoPE, {cfg.vocab:,} byte-level BPE tokens; the page reads up to {WINDOW:,}."
    + (f" Held-out English perplexity {english['perplexity']:.1f} "
       f"(unigram {english['unigram_perplexity']:.0f})." if english else ""))  # fmt: skip


# --- Input ----------------------------------------------------------------------------------------
def _preset(name: str) -> None:
    st.session_state["llm_mode"], st.session_state["llm_prompt"] = PRESETS[name]


mode = st.radio(  # the options are their own labels: a bound radio puts the label in the URL
    "Input: a prompt the model continues, or a chat message (the file's chat template around it)",
    ["prompt", "chat"], horizontal=True, key="llm_mode", bind="query-params",
)  # fmt: skip
text = st.text_area("Prompt" if mode == "prompt" else "Your message", llama.EXAMPLE, key="llm_prompt",
                    bind="query-params", height=110)  # fmt: skip
for i, (column, name) in enumerate(zip(st.columns(len(PRESETS)), PRESETS, strict=True)):
    column.button(name, on_click=_preset, args=(name,), key=f"llm_preset_{i}", help="Try this example")
try:
    prompt = llama.prepare(loaded, text, chat=mode == "chat")
except InputError as err:
    st.info(str(err))
    st.stop()
ids = prompt.ids
if prompt.dropped or prompt.unread:
    unread = f"; {prompt.unread:,} characters past the first {lm.MAX_CHARS:,} were never read"
    st.warning(f"The page reads {WINDOW:,} tokens: the first {WINDOW:,} tokens were read, "
               f"{prompt.dropped:,} more were not{unread if prompt.unread else ''}.")  # fmt: skip
if prompt.removed:
    st.warning(f"{prompt.removed} control character(s) removed: the model reads text, newlines and tabs.")
if mode == "chat":
    st.caption("What the model reads: the chat template around your message, the assistant's turn opened:")
    st.code(loaded.vocabulary.tokenizer.decode(list(ids), skip_special_tokens=False), language=None)

layer_column, head_column, _ = st.columns([1, 1, 2])
default_layer, default_head = card.get("in_context", {}).get("induction_head", (0, 0))
layer = layer_column.selectbox(
    "Layer", range(cfg.n_layers), index=default_layer, format_func=lambda i: f"L{i}", key="llm_layer",
    bind="query-params", help=f"Up to {UP_TO} tokens the run keeps every layer's maps; "
    "beyond, only this layer's (all 30 at 2,048 tokens would be 4.5 GB).",
)  # fmt: skip
head = head_column.selectbox("Head", range(cfg.n_heads), index=default_head, format_func=lambda h: f"H{h}",
                             key="llm_head", bind="query-params")  # fmt: skip
layers = llama.page_layers(len(ids), layer)
plain = Interventions()
base = llm_run(NAME, ids, plain, layers)

# --- Interventions (sidebar) ----------------------------------------------------------------------
chosen = lm_views.sidebar(cfg.n_layers, cfg.n_heads, base.inputs, key="llm", block=BLOCK, rope=True,
                          hidden_label="Hide tokens (no query attends to them)")  # fmt: skip
interventions = chosen.together
run = llm_run(NAME, ids, interventions, layers) if chosen.each else base

# --- Output ---------------------------------------------------------------------------------------
lm_views.headline(run, base, bool(chosen.each))
if chosen.each:
    # Both runs untraced (no maps): the losses, next tokens and the distribution after the prompt.
    lm_views.changes(chosen, lambda iv: lm.compare(llm_scores(NAME, ids, iv), llm_scores(NAME, ids, plain)))
    controls.deltas(run, base, True, "Per attention block (the layers the run keeps)")
maps, at = run.maps["self"], run.layers.index(layer)
names = [f"L{i}" for i in run.layers]


# --- Views ----------------------------------------------------------------------------------------
def attention_view() -> None:
    kv = run.kv_heads[head]
    sharing = ", ".join(f"H{h}" for h in range(cfg.n_heads) if run.kv_heads[h] == kv)
    st.markdown(f"**L{layer} H{head}** reads key/value head **{kv}** (shared by {sharing}: grouped-query "
                "attention). Rows are queries, columns keys; above the diagonal is the future, exactly 0. "
                "The view's own layer and head pickers (and the arrow keys) look around without a rerun.")
    rows, last = range(len(ids)), len(ids) - MAP_ROWS
    if len(ids) > 2 * MAP_ROWS:  # a slider picks MAP_ROWS query rows to draw
        first = st.slider(f"Query rows drawn ({MAP_ROWS} at a time) from position", 0, last, last,
                          key=token_key("llm_rows", run.inputs))  # fmt: skip
        rows = range(first, first + MAP_ROWS)
    shown = maps.take(rows, range(rows[-1] + 1)) if len(rows) < len(ids) else maps
    views = ("map", "lines") if len(ids) <= UP_TO else ("map",)
    attention.explorer(shown, "llm_map", views, layer=at, head=head, layer_names=names)
    if len(ids) > UP_TO:
        st.caption(f"The head view (a line per query–key pair) is drawn up to {UP_TO} tokens.")


def model_view() -> None:
    if len(ids) > UP_TO:
        return st.info(f"The model view (all {cfg.n_layers} × {cfg.n_heads} maps) is drawn up to {UP_TO} "
                       "tokens, where the run keeps every layer. Pick a layer and head: the Attention tab "
                       "shows that map.")  # fmt: skip
    attention.model_view(maps, "llm", layer=at, head=head, layer_names=names)


def _generate(settings: tuple, stop_column) -> dict:
    """Stream a continuation onto the page, one token at a time, kept in session_state as it grows: a
    click on Stop (or any widget) reruns the page, which ends this run at its next token."""
    _, gen_iv, new, temp, top_k, top_p, seed = settings
    done = {"settings": settings, "layers": layers, "tokens": [], "rows": [], "text": "", "done": False}
    st.session_state["llm_generated"] = done
    stop = stop_column.empty()
    stop.button("Stop", key="llm_stop", help="Ends the generation after the token being computed.")
    shown = st.empty()
    with inference(NAME):
        for g in llama.generate(loaded, prompt, gen_iv, new_tokens=new, temperature=temp, top_k=top_k or None,
                                top_p=top_p if top_p < 1 else None, seed=seed, layers=layers):  # fmt: skip
            done["tokens"].append((g.id, g.token, g.log_prob))
            done["rows"].append(g.weights[:, :, -1].copy())  # (L, 9, keys): the row that chose this token
            done["text"] = g.text
            shown.code(g.text + "▌", language=None)  # a rerun request ends this run here
    done["done"] = True
    stop.empty()
    shown.empty()
    return done


def generate_view() -> None:
    new_column, temp_column, k_column, p_column, seed_column = st.columns(5)
    new = new_column.slider("New tokens", 1, 128, 32, key="llm_new")
    temp = temp_column.slider("Sampling temperature (0 = greedy)", 0.0, 2.0, 0.0, 0.1, key="llm_sample_temp")
    top_k = k_column.slider("Top-k (0 = every token)", 0, 200, 50, key="llm_top_k")
    top_p = p_column.slider("Top-p (1 = every token)", 0.05, 1.0, 0.95, 0.05, key="llm_top_p")
    seed = int(seed_column.number_input("Seed", 0, 10**6, 0, key="llm_gen_seed"))
    gen_iv = replace(interventions, causal=True)
    settings = (ids, gen_iv, new, temp, top_k, top_p, seed)
    go_column, stop_column = st.columns([1, 4])
    done = st.session_state.get("llm_generated")
    if go_column.button("Generate", type="primary", key="llm_go"):
        done = _generate(settings, stop_column)
    if done is None or done["settings"] != settings:
        st.caption("Press Generate: tokens appear as the model picks them (greedy at temperature 0, else "
                   "from its own seeded generator), under the sidebar's interventions but the causal mask.")
        return
    labels, n = [t[1] for t in done["tokens"]], len(done["tokens"])
    if not done["done"]:
        st.warning(f"Stopped after {n} of {new} tokens.")
    log_p = np.array([t[2] for t in done["tokens"]])
    model_output(SimpleNamespace(text=done["text"], output=tuple(labels), token_log_probs=log_p), empty="")
    if n and done["layers"] is not None and layer not in done["layers"]:
        return st.info(f"This continuation kept layer {done['layers'][0]}'s attention (a prompt over {UP_TO} "
                       f"tokens keeps one layer): press Generate again for layer {layer}.")
    if not n:
        return
    keys = [*run.inputs, *labels[:-1]]
    grid = lm.generated_attention(done["rows"], layer if done["layers"] is None else 0, head)
    st.markdown(f"**What each generated token looked at**, L{layer} H{head}: row j is the attention of the "
                "position before token j — the row that chose it — over the prompt and the tokens before it.")
    attention.heatmap(AttentionMaps.single("generated", grid, labels, keys), 0, 0, "llm_gen_map",
                      axes=("generated token", "key"))  # fmt: skip
    j = st.selectbox("Generated token", range(n), format_func=lambda j: f"{j}: {labels[j]}",
                     key=token_key("llm_gen_token", labels))  # fmt: skip
    top = np.argsort(-grid[j])[:5]
    st.caption(f"Token {j} ‘{md_escape(labels[j])}’ looked most at: "
               + " · ".join(f"{k}: ‘{md_escape(keys[k])}’ {grid[j, k]:.2f}" for k in top))  # fmt: skip


def model_card() -> None:
    if not card:
        return st.info(f"No card: assets/{NAME}.json is missing (`python -m training.llm_card` writes it).")
    f, ic, ioi, facts = card["file"], card["in_context"], card["ioi"], card["facts"]
    st.markdown(f"{md_escape(card['model'])}; {md_escape(card['package'])}. File {md_escape(f['name'])} "
                f"({f['bytes']:,} bytes), sha256 `{f['sha256']}`. {md_escape(card['quantisation'])}")
    st.dataframe([{"measurement": m, "value": v} for m, v in [
        ("perplexity, held-out English", f"{english['perplexity']:.2f}"),
        ("perplexity of a unigram model, same tokens", f"{english['unigram_perplexity']:.0f}"),
        ("loss on a random sequence's first copy (nats)", f"{ic['first_copy_loss']:.2f}"),
        ("… on its second copy", f"{ic['second_copy_loss']:.2f}"),
        ("… second copy, top induction heads off", f"{ic['second_copy_loss_ablated']:.2f}"),
        *((f"{name}: right / prompts, mean logit difference",
           f"{s['target_wins']} / {len(s['prompts'])}, {s['mean_logit_diff']:.2f}")
          for name, s in [("IOI, preset", ioi["preset"]), ("IOI, held-out", ioi["held_out"]),
                          ("landmarks", facts["landmarks"]), ("capitals", facts["capitals"])]),
    ]], hide_index=True)  # fmt: skip
    st.caption(md_escape(english["definition"]) + ". IOI: " + md_escape(ioi["definition"]) + ".")
    st.markdown("**Top heads by score** (on random sequences repeated twice):")
    kinds = {k: lm.top_heads(ic[f"{k}_scores"], 8) for k in ("induction", "previous_token", "first_token")}
    st.dataframe([{kind: f"L{i} H{h}  {v:.2f}" for kind, (i, h, v) in zip(kinds, row, strict=True)}
                  for row in zip(*kinds.values(), strict=True)], hide_index=True)  # fmt: skip


# fmt: off
lazy_tabs(
    {
        "Next tokens": lambda: next_tokens(run, lm.TOP_K, key="llm_k"),
        "Attention": attention_view,
        "Model view": model_view,
        "Generate": generate_view,
        "GQA": lambda: llm.gqa_view(loaded, run, layer, head),
        "RoPE": lambda: llm.rope_view(loaded, prompt, layer, head, interventions),
        "Attention sinks": lambda: llm.sinks_view(loaded, prompt, card, layer, head),
        "Raw vs projected": lambda: llm.projections_view(loaded, prompt, interventions),
        "Attention vs importance": lambda: llm.importance_view(loaded, prompt, card),
        "Circuits": lambda: llm.circuits_view(loaded, text, card),
        **attention.statistics_tabs(run.maps if layers is None else {"self": replace(
            maps, title=f"layer {layer} only (listed as 0)")}, "llm", file_stem=NAME),
        "Model card": model_card,
    },
    key="llm_view",
)
# fmt: on
