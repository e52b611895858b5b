"""The "Attention vs importance" tab of the seq2seq, transformer, BERT and GPT pages.

Each tab measures the model as it is (the sidebar's interventions are not applied: the question is
whether the trained model's attention explains its own output), through the family's runner
(`runners.seq2seq_importance`, `runners.transformer_importance`, `runners.bert_importance`,
`runners.gpt_importance`), cached per input like the pages' other runs, and draws it with the shared
`views.importance` views beside the held-out mean from the model's card.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from models.bert import default_folder
from runners import bert, bert_importance, gpt_importance, transformer_importance
from runners.importance import CARD_KEY, Comparison, compare
from runners.seq2seq_importance import gold_agreement
from tasks import TASKS
from tasks.common import Example
from views.importance import comparison, per_output_token
from views.inputs import md_escape
from views.serving import (
    inference,
    load_bert_cached,
    load_model,
    measurements,
    read_only,
    seq2seq_importance_rows,
)

BERT_CARD = "bert-minilm"  # assets/bert-minilm.json: held-out measurements of the packaged MiniLM
ALL = "all"
MEAN = "mean"
AS_IS = "Measured on the model as it is: the sidebar's interventions are not applied here."


# --- Cached runs ----------------------------------------------------------------------------------
@st.cache_resource(max_entries=64, show_spinner="Ablating each source token…")
def transformer_measure(name: str, src: tuple[str, ...]) -> transformer_importance.TransformerImportance:
    model, model_card, src_vocab, tgt_vocab = load_model(name)
    with inference(name):
        result = transformer_importance.measure(model, TASKS[model_card["task"]], src, src_vocab, tgt_vocab)
    return read_only(result)


@st.cache_resource(max_entries=8, show_spinner="Ablating each word piece…")
def bert_measure(folder: str, text_a: str, text_b: str | None) -> bert_importance.BertImportance:
    loaded = load_bert_cached(folder)
    with inference(folder):
        return read_only(bert_importance.measure(loaded, bert.encode(loaded, text_a, text_b)))


@st.cache_resource(max_entries=64, show_spinner="Ablating each earlier token…")
def gpt_measure(
    name: str, ids: tuple[int, ...], position: int, target: int | None, _model, _tokenizer
) -> gpt_importance.GPTImportance:
    """Keyed on the checkpoint's name; ``_model`` and ``_tokenizer`` are the page's loaded ones."""
    with inference(name):
        return read_only(gpt_importance.measure(_model, _tokenizer, ids, position, target))


# --- Shared pieces --------------------------------------------------------------------------------
def _pickers(key: str, n_layers: int, n_heads: int) -> tuple[int | None, int | None]:
    """Layer (all, or one: the table and scatter keep that layer's raw and rollout rows) and head
    (mean over heads, or one, for raw attention; rollout is always over the head mean)."""
    layer_column, head_column = st.columns(2)
    layer = layer_column.selectbox(
        "Layers", [ALL, *range(n_layers)], format_func=lambda v: "every layer" if v == ALL else f"layer {v}",
        key=f"{key}_imp_layer",
    )  # fmt: skip
    head = head_column.selectbox(
        "Raw attention of", [MEAN, *range(n_heads)], format_func=lambda v: "the mean over heads" if v == MEAN
        else f"head {v}", key=f"{key}_imp_head",
    )  # fmt: skip
    return (None if layer == ALL else int(layer)), (None if head == MEAN else int(head))


def _of_layer(comp: Comparison, layer: int | None) -> Comparison:
    """The comparison with only ``layer``'s raw and rollout measures (and gradient × input)."""
    if layer is None:
        return comp
    kept = {
        name: values
        for name, values in comp.measures.items()
        if not name.startswith(("raw L", "rollout L")) or name.split()[1] == f"L{layer}"
    }
    return compare(comp.positions, comp.importance, kept, quantity=comp.quantity)


def _held_out(card: Mapping | None) -> Mapping | None:
    entry = (card or {}).get(CARD_KEY)
    return entry.get("spearman") if isinstance(entry, Mapping) else None


def _card_note(card: Mapping | None) -> None:
    entry = (card or {}).get(CARD_KEY)
    if isinstance(entry, Mapping):
        st.caption(
            f"Held-out mean: {entry.get('comparisons', '?')} comparisons over {entry.get('examples', '?')} "
            f"inputs — {entry.get('split', '')}."
        )
    else:
        st.caption(
            "The card has no held-out mean yet: `python -m training.measure importance --family …` adds it."
        )


# --- The tabs -------------------------------------------------------------------------------------
@st.fragment
def seq2seq_tab(
    name: str, src: tuple[str, ...], output: tuple[str, ...], gold: Example | None, card: Mapping
) -> None:
    """Importance of each source token by <unk> ablation vs α_t and gradient × input, per output token;
    with a gold example, whether each measure's top source token is a gold link."""
    st.markdown(
        "Each source token in turn is replaced by `<unk>`, teacher-forcing the output shown above. α here "
        "is one single-head, single-layer map per output token: there is no stack of layers to roll out."
    )
    per_token = seq2seq_importance_rows(name, src, output)
    held_out = card.get(CARD_KEY, {})
    t = per_output_token(per_token, "s2s", held_out=held_out.get("spearman"))
    agreement = gold_agreement(per_token, gold) if gold is not None else None
    if agreement is not None and agreement.scored[t]:
        linked = {m: "a gold link" if hit[t] else "not linked" for m, hit in agreement.top_is_gold.items()}
        tops = "; ".join(f"{m}: “{md_escape(src[top[t]])}” ({linked[m]})" for m, top in agreement.top.items())
        st.markdown(f"**Against the gold alignment**, the top source token by {tops}.")
    if "gold" in held_out:
        gold_card = held_out["gold"]
        shares = ", ".join(f"{m} {v:.1%}" for m, v in gold_card["top_is_gold_link"].items())
        st.caption(f"Held out ({gold_card['tokens']} output tokens): the top is a gold link for {shares}.")


@st.fragment
def transformer_tab(name: str, src: tuple[str, ...], card: Mapping | None) -> None:
    """One output token's importance over the source, against cross-attention, rollout, grad × input."""
    result = transformer_measure(name, src)
    n_layers, n_heads = result.cross.shape[:2]
    st.markdown(
        "Importance of a source token = the drop in log p of one output token (the model's own greedy "
        "output, teacher-forced so the prefix stays fixed) when that source token alone becomes `<unk>`. "
        "Raw = cross-attention from that output token's query; rollout composes the encoder's rollout with "
        "the decoder's layers (cross-attention × encoder rollout, self-attention and residuals mixed in). "
        + AS_IS
    )
    token_column, _ = st.columns(2)
    t = token_column.selectbox(
        "Output token", range(len(result.output)), format_func=lambda i: f"{i + 1}: {result.output[i]}",
        key="tf_imp_token",
    )  # fmt: skip
    layer, head = _pickers("tf", n_layers, n_heads)
    comparison(_of_layer(result.comparison(t, head), layer), "tf", held_out=_held_out(card))
    _card_note(card)


@st.fragment
def bert_tab(folder: str, text_a: str, text_b: str | None) -> None:
    """Each word piece's importance to the sentence embedding, against the attention it receives."""
    is_default = folder == str(default_folder())  # the card measures the packaged MiniLM only
    result = bert_measure(folder, text_a, text_b)
    n_layers, n_heads = result.received.shape[:2]
    pair = " of the joint [CLS] A [SEP] B [SEP] encoding the other tabs draw" if text_b else ""
    st.markdown(
        f"Importance of a word piece = 1 − cos(sentence embedding{pair} with that piece alone replaced by "
        "`[MASK]`, the embedding as it is). [CLS] and [SEP] are left out. The embedding averages every "
        "token's row, so the attention a piece *receives* is the mean over all query rows of its column. "
        + AS_IS
    )
    if result.capped:
        st.warning(
            f"Long input: ablating every piece would take one forward of the whole input per piece, so runs "
            f"of consecutive pieces are ablated together — {len(result.spans)} spans (at most "
            f"{bert_importance.COPY_TOKENS} ablated tokens in all, at least {bert_importance.MIN_COPIES} "
            "spans); each measure is summed over its span."
        )
    layer, head = _pickers("bert", n_layers, n_heads)
    card = measurements(BERT_CARD) if is_default else None
    comparison(_of_layer(result.comparison(head), layer), "bert", held_out=_held_out(card))
    if is_default:
        _card_note(card)
    else:
        st.caption(
            "The held-out means in assets/bert-minilm.json are of the packaged MiniLM, not this checkpoint."
        )


@st.fragment
def gpt_tab(
    name: str, ids: tuple[int, ...], labels: tuple[str, ...], card: Mapping, model, tokenizer
) -> None:
    """The next-token prediction at one position against the attention from that position."""
    if len(ids) < 2:
        st.info("The prompt needs at least one token after <s> to ablate.")
        return
    position_column, target_column = st.columns(2)
    t = position_column.selectbox(
        "Predict after position", range(len(ids) - 1, 0, -1), format_func=lambda i: f"{i}: {labels[i]}",
        key="gpt_imp_position",
    )  # fmt: skip
    targets = ["the model's top prediction", "the prompt's next token"] if t < len(ids) - 1 else None
    choice = target_column.radio(
        "Target token", targets or ["the model's top prediction"], horizontal=True, key="gpt_imp_target"
    )
    target = ids[t + 1] if targets and choice == targets[1] else None
    result = gpt_measure(name, ids, t, target, model, tokenizer)
    blank = gpt_importance.blank_id(tokenizer)
    st.markdown(
        f"Importance of token j = the drop in log p({result.target!r} after position {t}) when token j alone "
        f"becomes a blank — the single-space token (id {blank}). Tokens 1…{t} are ranked (<s> left out, the "
        f"token at {t} itself in); raw = attention from query {t}. " + AS_IS
    )
    n_layers, n_heads = result.weights.shape[:2]
    layer, head = _pickers("gpt", n_layers, n_heads)
    comparison(_of_layer(result.comparison(head), layer), "gpt", held_out=_held_out(card))
    _card_note(card)
