"""GPT lab

A small GPT of our own — a decoder-only transformer trained here on the Python standard library's
source — run on the project's one attention core with a causal mask: each token sees only itself
and the tokens before it. Type some Python and watch it guess each next token; see which heads look
at the previous token, which copy what followed an earlier occurrence (induction), and what breaks
when you switch them off.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from analysis import lm
from analysis.projections import RawVsProjected
from families.gpt import FAMILY
from families.gpt import runner as gpt
from models.attention import Interventions
from models.gpt import BLOCK
from models.sampling import Sampling
from tasks import InputError, probes
from views import attention, importance_tabs
from views import circuits as circuit_views
from views import interventions as controls
from views import lm as lm_views
from views import projections as projection_view
from views.inputs import MAX_TEXT, md_escape, whole_number_input
from views.layout import lazy_tabs, model_or_stop, page_header
from views.outputs import model_output, next_tokens
from views.serving import cached, inference

NAME, REPEAT = gpt.DEFAULT, gpt.REPEAT
gpt_run, gpt_sample = cached(FAMILY, "run"), cached(FAMILY, "sample")

page_header(__doc__)
loaded = model_or_stop(FAMILY, NAME, "the GPT")
model, card = loaded.model, loaded.card
cfg, test = model.cfg, card["test"]
st.caption(
    f"{cfg.n_layers} layers × {cfg.n_heads} heads, d_model {cfg.d_model}, context {cfg.max_len} tokens, "
    f"{cfg.vocab} byte-level BPE tokens. Held-out files: perplexity {test['test_perplexity']:.1f} "
    f"(a bigram model on the same tokens: {test['bigram_perplexity']:.1f})."
)


# --- Input ----------------------------------------------------------------------------------------
def _new_random() -> None:
    st.session_state["gpt_input"] = "random"
    st.session_state["gpt_seed"] = float(int(st.session_state.get("gpt_seed", 0)) + 1) % 1000


mode_column, button_column = st.columns([3, 1])
mode = mode_column.radio(  # the options are their own labels: a bound radio puts the label in the URL
    f"Input: your prompt, or a random sequence of {REPEAT} tokens twice", ["prompt", "random"],
    horizontal=True, key="gpt_input", bind="query-params",
)  # fmt: skip
button_column.button("Repeat a random sequence", on_click=_new_random, key="gpt_repeat")
if mode == "random":
    seed = whole_number_input(st, "Random sequence (seed)", 0, 999, key="gpt_seed")
    prompt = gpt.random_repeat(REPEAT, seed, cfg.vocab)
    st.caption(
        f"<s>, {REPEAT} tokens drawn uniformly at random, then the same {REPEAT} again. Nothing predicts the "
        "first copy; an induction head predicts the second by looking at what followed the earlier "
        "occurrence — a stripe below the diagonal in its map (tab Induction)."
    )
else:
    text = st.text_area(
        "Prompt", gpt.EXAMPLE, max_chars=MAX_TEXT, key="gpt_prompt", bind="query-params", height=160
    )
    try:
        prompt = gpt.prepare(loaded, text)
    except InputError as err:
        st.info(str(err))
        st.stop()
    if prompt.dropped or prompt.unread:
        st.warning(
            f"The model reads <s> and {cfg.max_len - 1} tokens: the prompt was cut there "
            f"({prompt.dropped} more tokens{f' and {prompt.unread} characters' if prompt.unread else ''} "
            "not read)."
        )
    if prompt.removed:
        st.warning(f"{prompt.removed} control character(s) removed: the model reads text, newlines and tabs.")
    if prompt.non_ascii:
        st.caption(
            "Characters outside ASCII (emoji, accents) are read as several byte tokens (shown as \\x..): "
            "the standard library has few of them, so expect poor guesses there."
        )
ids = prompt.ids
plain = Interventions()
labels = gpt_run(NAME, ids, plain).inputs

# --- Interventions (sidebar) ----------------------------------------------------------------------
chosen = lm_views.sidebar(
    cfg.n_layers, cfg.n_heads, labels, key="gpt", block=BLOCK, projections=True,
    hidden_label="Hide tokens (no query may attend to them)",
    hidden_help="Their values are never read. The key of the token after one still carries part of it "
    "(smeared keys), so matching on it is weakened, not gone.",
)  # fmt: skip
interventions, unprojected = chosen.together, chosen.unprojected
run, base = gpt_run(NAME, ids, interventions), gpt_run(NAME, ids, plain)

# --- Output ---------------------------------------------------------------------------------------
lm_views.headline(run, base, bool(chosen.each), tokens_label="Tokens read (<s> included)")
if chosen.each:
    lm_views.changes(chosen, lambda iv: lm.compare(gpt_run(NAME, ids, iv), base))
    controls.deltas(run, base, True, "Per attention block")
maps = run.maps["self"]
roles = gpt.head_roles(card)


# --- Views ----------------------------------------------------------------------------------------
def attention_view() -> None:
    future = float(np.triu(maps.weights, 1).max(initial=0.0)) if len(ids) > 1 else 0.0
    st.caption(
        f"Rows are queries, columns keys. Weight on the future (above the diagonal), largest over every "
        f"head: {future:.6g}" + (" — exactly zero: the causal mask." if future == 0 else ".")
    )
    attention.model_view(maps, "gpt")
    attention.head_view(maps, "gpt")


def head_roles() -> None:
    st.markdown(
        "Roles come from the model card's measurements on random sequences repeated twice: the mean "
        "attention to the previous token, to the token after the current token's earlier occurrence "
        f"(induction), and to <s> (a sink for heads with nothing to do). A head takes its strongest "
        f"pattern from {gpt.ROLE_MIN}, marked weak from {gpt.WEAK_MIN} (uniform attention scores about "
        "0.04). Beside them, the same three measured on this input."
    )
    names = list(gpt.ROLES)
    rows = [
        {"layer": i, "head": h, "role": roles[(i, h)][0],
         **{f"{gpt.ROLES[n]} (card)": test[f"{n}_scores"][i][h] for n in names},
         **{f"{gpt.ROLES[n]} (this input)": float(run.head_scores[n][i, h]) for n in names}}
        for i in range(cfg.n_layers) for h in range(cfg.n_heads)
    ]  # fmt: skip
    st.dataframe(rows, hide_index=True)


def induction() -> None:
    layer, head = test["induction_head"]
    top = [tuple(t) for t in test["top_induction_heads"]]
    st.markdown(
        f"The best induction head, L{layer} H{head} (card: {test['induction_score']:.2f} of its attention "
        "from each second-copy token lands on the token after the earlier occurrence). On a repeated "
        "sequence its map shows a stripe below the diagonal; the card's second-copy loss is "
        f"{test['second_copy_loss']:.2f} nats vs {test['first_copy_loss']:.2f} on the first copy, and "
        f"{test['second_copy_loss_ablated']:.2f} with heads {', '.join(f'L{i} H{h}' for i, h in top)} off."
    )
    attention.heatmap(maps, layer, head, "gpt_induction", title=f"L{layer} H{head} on this input")
    if mode == "random":
        off = gpt_run(NAME, ids, replace(interventions, ablate=frozenset((BLOCK, i, h) for i, h in top)))
        n, parts = REPEAT, [("first copy", run), ("second copy", run), ("second, heads off", off)]
        for cell, (name, r) in zip(st.columns(3), parts, strict=True):
            part = r.token_log_probs[1:n] if name == "first copy" else r.token_log_probs[n + 1 : 2 * n]
            cell.metric(f"Loss on the {name} (nats)", f"{-part.mean():.3f}")
        st.caption("Tokens 2…n of each copy (a copy's first token follows nothing it could copy).")


@st.fragment
def generate() -> None:
    new_column, temp_column, k_column, seed_column = st.columns(4)
    new = new_column.slider("New tokens", 1, 64, 32, key="gpt_new")
    temp = temp_column.slider("Sampling temperature (0 = greedy)", 0.0, 2.0, 0.8, 0.1, key="gpt_sample_temp")
    top_k = k_column.slider("Top-k (0 = every token)", 0, 50, 20, key="gpt_top_k")
    seed = whole_number_input(seed_column, "Seed", 0, 10**6, key="gpt_gen_seed")
    sample = gpt_sample(NAME, ids, replace(interventions, causal=True), new,
                        Sampling(temperature=temp, top_k=top_k or None, seed=seed))  # fmt: skip
    model_output(sample, empty="(nothing sampled)")
    if len(ids) + new > cfg.max_len:
        st.caption(f"Past {cfg.max_len} tokens the model reads the last {cfg.max_len} (the window slides).")
    st.caption("Same seed, same settings, same text: sampling uses its own seeded generator.")


def projections() -> list[RawVsProjected]:  # a forward of ≤ 128 tokens and two 128 × 128 softmaxes
    with inference(NAME):
        return gpt.projections(loaded, prompt, interventions)


def model_card() -> None:
    corpus = card["corpus"]
    st.markdown(
        f"Trained on {md_escape(corpus['source'])}: {corpus['train']['files']} files, "
        f"{corpus['train']['tokens']:,} tokens; tested on {corpus['test']['files']} held-out files "
        f"({test['tokens']:,} tokens scored). {md_escape(card['repeat_note'])} "
        f"{card['steps']} steps in {card['training_seconds'] / 60:.0f} minutes, {card['threads']} CPU "
        "thread(s)."
    )
    st.dataframe(
        [{"metric": k, "value": test[k]} for k in ("test_perplexity", "bigram_perplexity", "induction_score",
         "previous_token_score", "first_copy_loss", "second_copy_loss", "second_copy_loss_ablated")],
        hide_index=True,
    )  # fmt: skip


def circuits() -> None:
    encode = lambda text: gpt.prepare(loaded, text).ids  # noqa: E731
    subject = circuit_views.Subject(
        key="gpt", name=NAME, family=FAMILY, encode=encode, label=loaded.label, word=loaded.vocabulary.word,
        presets={"a loop's variable": probes.CODE[0], "self.parent =": probes.CODE[1]},
        reference=tuple(encode(t) for c in probes.CODE for t in (c.prompt, c.corrupt)),
        reference_name="the two preset prompts and their corrupted twins (every position)",
    )  # fmt: skip
    circuit_views.tab(subject, "" if mode == "random" else text)


diagonal = card.get("diagonal_mass", {})  # weight on self, held-out means (analysis/projections.py)
# fmt: off
lazy_tabs(
    {
        "Next tokens": lambda: next_tokens(run, lm.TOP_K, key="gpt_k"),
        "Attention": attention_view,
        "Head roles": head_roles,
        "Induction": induction,
        "Generate": generate,
        "Raw vs projected": lambda: projection_view.layer_view(
            projections, cfg.n_layers, "gpt", unprojected=unprojected, held_out=diagonal.get("self")),
        **attention.statistics_tabs(run.maps, "gpt", file_stem=NAME, diagonal_mass=diagonal),
        "Model card": model_card,
        "Attention vs importance": lambda: importance_tabs.tab(FAMILY, NAME, (ids,), card, labels=labels),
        "Circuits": circuits,
    },
    key="gpt_view",
)
# fmt: on
