"""Transformer attention lab: a small trained encoder–decoder transformer, every head, live toggles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st
import torch

from models.attention import Interventions, MultiHeadAttention
from models.checkpoints import checkpoint_name
from models.transformer import BLOCKS, PRESETS, sinusoids
from runners.transformer import entropy
from tasks import TASKS
from tasks.common import BOS, EOS, PAD, Vocab
from views.serving import (
    FIXED_BATCH,
    cached_batch_accuracy,
    cached_head_ranking,
    cached_transformer_run,
    card,
    checked_source,
    from_url,
    held_out_examples,
    load_model,
    md_escape,
    model_view,
    to_url,
    token_key,
)
from viz.figures import head_grid, lines, matrix_heatmap, token_bars, vector_strips

BLOCK_LABELS = {
    "encoder": "encoder self-attention",
    "decoder_self": "decoder masked self-attention",
    "cross": "cross-attention (decoder → encoder)",
}
SPECIALS = {BOS, EOS, PAD}

st.title("Transformer attention lab")
st.markdown(
    "A small encoder–decoder transformer, trained here on the same tasks as the seq2seq page. "
    "Every attention block runs the project's one attention core: "
    "$\\mathrm{softmax}(QK^\\top/\\sqrt{d_k})\\,V$ per head, heads concatenated, mixed by $W_O$. "
    "Change masks, scaling, heads and positions in the sidebar: the output is recomputed each time."
)

# --- Model and input ------------------------------------------------------------------------------
MODES = {"example": "Example from the test split", "text": "Your own text"}
from_url("tf_task", "task", "dates", valid=lambda v: v in TASKS)
from_url("tf_mode", "input", MODES["example"], parse=MODES.__getitem__)
c1, c2, c3 = st.columns([2, 2, 2])
task_name = c1.selectbox("Task", list(TASKS), format_func=lambda n: TASKS[n].title, key="tf_task")
available = [v for v in PRESETS if card(checkpoint_name("transformer", task_name, v)) is not None]
if not available:
    st.error(
        f"No trained transformer for this task in assets/. Train one with "
        f"`python -m training.train --model transformer --task {task_name} --variant h4`."
    )
    st.stop()


def variant_label(v: str) -> str:
    c = card(checkpoint_name("transformer", task_name, v))
    cfg = c["config"]
    return (
        f"{cfg['n_heads']} head{'s' if cfg['n_heads'] > 1 else ''} (d_k={cfg['d_model'] // cfg['n_heads']}), "
        f"{cfg['norm']}-norm — test exact {c['test']['exact_match']:.1%}"
    )


from_url("tf_variant", "model", "h4" if "h4" in available else available[0], valid=lambda v: v in available)
if st.session_state["tf_variant"] not in available:  # another task may lack this variant
    st.session_state["tf_variant"] = available[0]
variant = c2.selectbox("Model (head count, norm)", available, format_func=variant_label, key="tf_variant")
name = checkpoint_name("transformer", task_name, variant)
model_card = card(name)
cfg = model_card["config"]
n_heads, n_layers, d_model = cfg["n_heads"], cfg["n_layers"], cfg["d_model"]
task = TASKS[task_name]
src_vocab = Vocab(tuple(model_card["src_vocab"]))
mode = c3.radio("Input", list(MODES.values()), key="tf_mode")
gold = None
if mode == MODES["example"]:
    examples = held_out_examples(task_name)
    from_url(f"tf_example_{task_name}", "example", 0, parse=int, valid=lambda v: 0 <= v < len(examples))
    idx = st.selectbox(
        "Example (held-out test split)",
        range(len(examples)),
        format_func=lambda i: task.joiner.join(examples[i].src),
        key=f"tf_example_{task_name}",
    )
    gold = examples[idx]
    text, reference = task.joiner.join(gold.src), gold.tgt
else:
    from_url(f"tf_text_{task_name}", "text", task.placeholder, valid=lambda v: len(v) <= 5000)
    text = st.text_input(
        f"Source text (at most {task.max_source} {task.unit})", max_chars=5000, key=f"tf_text_{task_name}"
    )
    reference = (
        task.tokenize(
            st.text_input("Reference target (optional, for teacher forcing)", key=f"tf_ref_{task_name}")
        )
        or None
    )
own = mode == MODES["text"]
to_url(
    "tf",
    task=task_name,
    model=variant,
    input="text" if own else "example",
    example=None if own else idx,
    text=text if own else None,
)
prepared, reference = checked_source(task, text, src_vocab, reference)
src = prepared.tokens

# --- Interventions (sidebar) ----------------------------------------------------------------------
with st.sidebar:
    st.header("Interventions")
    causal = st.checkbox(
        "Causal mask in decoder self-attention",
        True,
        key="tf_causal",
        help="Acts on teacher forcing: free-running decoding has no future to peek at.",
    )
    padding = st.checkbox("Padding mask", True, key="tf_padding")
    padded = st.checkbox(
        "Run the input in a padded batch",
        False,
        key="tf_padded",
        help="Pads the source to the task's longest input, as in a batch with a longer one.",
    )
    hidden = st.multiselect(
        "Hide source tokens (custom key mask)",
        range(len(src)),
        format_func=lambda j: f"{j}: {src[j]}",
        key=token_key("tf_hidden", src),
    )
    scaled = st.checkbox("Scale logits by 1/√d_k", True, key="tf_scaled")
    temperature = st.slider("Temperature on attention logits", 0.1, 5.0, 1.0, 0.1, key="tf_temp")
    positional = st.checkbox("Positional encoding", True, key="tf_pe")
    all_heads = [(b, i, h) for b in BLOCKS for i in range(n_layers) for h in range(n_heads)]
    ablate = st.multiselect(
        "Switch heads off",
        all_heads,
        key=f"tf_ablate_{variant}",
        format_func=lambda t: f"{t[0]} L{t[1]} H{t[2]}",
    )
iv = Interventions(
    causal=causal,
    padding=padding,
    hidden_keys=tuple(hidden),
    scaled=scaled,
    temperature=temperature,
    ablate=frozenset(ablate),
    positional=positional,
)
pad_to = task.max_source if padded else 0
plain = Interventions()
changed = iv != plain or padded

# --- Output ---------------------------------------------------------------------------------------
free = cached_transformer_run(name, src, iv, None, pad_to)
st.subheader("Output")
st.code(free.text or "(empty output)", language=None)
m1, m2, m3, m4 = st.columns(4)
m1.metric("log p(output)", f"{free.log_prob:.3f}")
acc = cached_batch_accuracy(name, iv)
base_acc = cached_batch_accuracy(name, plain)
m2.metric(
    f"Exact match, {FIXED_BATCH} test examples",
    f"{acc:.0%}",
    delta=f"{acc - base_acc:+.0%} vs no intervention" if changed else None,
)


def mean_entropy(r) -> float:
    return float(np.mean([entropy(b.weights).mean() for b in r.blocks["encoder"]]))


enc_h, delta_h = mean_entropy(free), None
if changed:
    base = cached_transformer_run(name, src, plain)
    m4.metric("Output without interventions", base.text or "(empty)")
    delta_h = f"{enc_h - mean_entropy(base):+.3f} vs no intervention"
m3.metric("Mean encoder attention entropy (nats)", f"{enc_h:.3f}", delta=delta_h, delta_color="off")
if reference is not None:
    forced = cached_transformer_run(name, src, iv, tuple(reference), pad_to)
    wrong = sum(p != r for p, r in zip(forced.predictions, forced.rows, strict=True))
    st.markdown(
        f"**Teacher forcing on the reference** — at each position the model's top prediction, given the "
        f"reference prefix{' and, with the causal mask off, the future too' if not causal else ''}: "
        f"{wrong} of {len(forced.rows)} positions predicted wrong; −log p(reference) = "
        f"**{-forced.log_prob:.3f}**."
    )
    st.code(" ".join(forced.predictions), language=None)

tabs = st.tabs(
    [
        "Walkthrough",
        "Heads",
        "Ablation",
        "Positional encoding",
        "Post- vs pre-norm",
        "Playground",
        "Head statistics",
    ]
)

view = forced if reference is not None else free
with tabs[0]:
    st.markdown(
        "One head's computation, step by step, with the model's own numbers "
        + ("(teacher-forced on the reference)." if reference is not None else "(free-running).")
    )
    w1, w2, w3 = st.columns(3)
    block = w1.selectbox("Block", BLOCKS, format_func=BLOCK_LABELS.get, key="tf_wt_block")
    layer = w2.selectbox("Layer", range(n_layers), key="tf_wt_layer")
    head = w3.selectbox("Head", range(n_heads), key="tf_wt_head")
    b = view.blocks[block][layer]
    q_tokens = view.src if block == "encoder" else view.inputs
    k_tokens = view.src if block != "decoder_self" else view.inputs
    qi = st.select_slider(
        "Query token",
        options=list(range(len(q_tokens))),
        format_func=lambda i: f"{i}: {q_tokens[i]}",
        key=token_key(f"tf_wt_query_{block}", q_tokens),
    )
    d_k = d_model // n_heads
    model = load_model(name)[0]
    layer_module = (model.encoder if block == "encoder" else model.decoder)[layer]
    mha = layer_module.cross_attn if block == "cross" else layer_module.self_attn
    sl = slice(head * d_k, (head + 1) * d_k)
    w_q, b_q = (mha.w_q.weight.detach().cpu().numpy()[sl], mha.w_q.bias.detach().cpu().numpy()[sl])
    q_re = b.x_query[qi] @ w_q.T + b_q  # the projection, from the shown x and W_Q rows
    st.markdown(
        f"**1 · Input row x** (after {'layer norm' if cfg['norm'] == 'pre' else 'the previous sublayer'};"
        f" d_model = {d_model}) and **2 · projections** $q = x W_Q^\\top + b_Q$, $k$, $v$ "
        f"(head {head}: rows {sl.start}–{sl.stop - 1} of each W):"
    )
    st.plotly_chart(
        vector_strips({"x (query row)": b.x_query[qi], f"q (head {head})": b.q[head, qi]}), key="tf_wt_x"
    )
    st.caption(
        f"q recomputed from x and W_Q here equals the model's q: max |diff| = "
        f"{np.abs(q_re - b.q[head, qi]).max():.2e}"
    )
    st.plotly_chart(
        matrix_heatmap(
            w_q, title=f"W_Q rows of head {head}", x_title="input dim", y_title="q dim", value_name="W_Q"
        ),
        key="tf_wt_wq",
    )
    st.plotly_chart(
        matrix_heatmap(
            b.k[head],
            title=f"3 · every key k_j (head {head})",
            x_title="k dim",
            y_title="key",
            y_labels=k_tokens,
            value_name="k",
        ),
        key="tf_wt_k",
    )
    table = {
        "j": list(range(len(k_tokens))),
        "key token": list(k_tokens),
        "q·k": b.raw_scores[head, qi],
        f"× {b.scale:.4f} ÷ T={b.temperature:g}": b.scaled_scores[head, qi],
        "masked (−inf = hidden)": b.masked_scores[head, qi],
        "softmax w": b.weights[head, qi],
    }
    st.markdown(
        f"**4–6 · Scores, scaling (1/√d_k = 1/√{d_k}{' — off' if not scaled else ''}), mask, softmax** "
        f"for query {qi} '{md_escape(q_tokens[qi])}':"
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={k: st.column_config.NumberColumn(format="%.5f") for k in list(table)[2:]},
    )
    st.plotly_chart(
        token_bars(k_tokens, b.weights[head, qi], name="w", title="softmax weights"), key="tf_wt_bars"
    )
    ctx_re = b.weights[head, qi] @ b.v[head]  # Σ_j w_j v_j from the numbers above
    st.markdown(
        f"**7 · Weighted sum of values** $\\sum_j w_j v_j$ (head {head}); recomputed here vs the "
        f"model's: max |diff| = {np.abs(ctx_re - b.head_outputs[head, qi]).max():.2e}"
    )
    w_o = mha.w_o.weight.detach().cpu().numpy()
    out_re = b.concat[qi] @ w_o.T + mha.w_o.bias.detach().cpu().numpy()
    st.markdown(
        f"**8 · Concatenate all {n_heads} heads, multiply by W_O** ({d_model}×{d_model}):"
        + (
            f" heads {sorted(int(h) for h in np.where(b.head_mask == 0)[0])} are switched off."
            if b.head_mask is not None
            else ""
        )
    )
    st.plotly_chart(
        vector_strips(
            {f"head {h} output": b.head_outputs[h, qi] for h in range(n_heads)}
            | {"concat": b.concat[qi], "W_O · concat (block output)": b.output[qi]}
        ),
        key="tf_wt_concat",
    )
    gap = np.abs(out_re - b.output[qi]).max()
    (st.success if gap < 1e-4 else st.error)(
        f"Check: concat @ W_Oᵀ + b recomputed from the numbers shown equals the model's block output "
        f"(max |diff| = {gap:.2e})."
    )

with tabs[1]:
    hb = st.radio("Block", BLOCKS, format_func=BLOCK_LABELS.get, horizontal=True, key="tf_heads_block")
    q_tokens = view.src if hb == "encoder" else view.inputs
    k_tokens = view.src if hb != "decoder_self" else view.inputs
    grid = np.stack([view.blocks[hb][i].weights for i in range(n_layers)])  # (L, h, Tq, Tk)
    model_view(grid, q_tokens, k_tokens, "tf", height_per_row=180 if n_heads > 4 else 240)

with tabs[2]:
    st.markdown(
        f"Each head switched off alone (its context zeroed before W_O), on top of the sidebar's "
        f"interventions; exact match on {FIXED_BATCH} held-out examples. Worst first."
    )
    if st.toggle("Rank all heads", key="tf_rank"):
        ranking = cached_head_ranking(name, iv)
        st.dataframe(
            [
                {"block": b_, "layer": i, "head": h, "exact match without it": a, "drop": acc - a}
                for b_, i, h, a in ranking
            ],
            hide_index=True,
            column_config={
                "exact match without it": st.column_config.ProgressColumn(
                    min_value=0.0, max_value=1.0, format="%.2f"
                )
            },
        )
    else:
        st.caption(f"Ranking runs {3 * n_layers * n_heads} batched decodes; switch it on to compute.")

with tabs[3]:
    pe = sinusoids(max(len(src), 8) + 8, d_model).numpy()
    st.latex(
        r"PE_{pos,2i} = \sin\!\left(pos / 10000^{2i/d}\right),\quad "
        r"PE_{pos,2i+1} = \cos\!\left(pos / 10000^{2i/d}\right)"
    )
    p1, p2 = st.columns(2)
    p1.plotly_chart(
        matrix_heatmap(
            pe,
            title="Sinusoidal encodings (position × dimension)",
            x_title="dimension",
            y_title="position",
            value_name="PE",
        ),
        key="tf_pe_matrix",
    )
    norms = np.linalg.norm(pe, axis=1)
    p2.plotly_chart(
        matrix_heatmap(
            (pe @ pe.T) / np.outer(norms, norms),
            title="Cosine similarity between positions",
            x_title="position",
            y_title="position",
            value_name="cos",
        ),
        key="tf_pe_sim",
    )
    no_pe = cached_transformer_run(name, src, replace(iv, positional=False), None, pad_to)
    st.markdown(
        "The same input with positional encoding removed (everything else as in the sidebar): "
        "without positions, self-attention is order-blind."
    )
    st.code(
        f"with PE   : {cached_transformer_run(name, src, replace(iv, positional=True), None, pad_to).text}\n"
        f"without PE: {no_pe.text}",
        language=None,
    )
    st.metric("Exact match without PE", f"{cached_batch_accuracy(name, replace(iv, positional=False)):.0%}")

with tabs[4]:
    pre, post = (
        card(checkpoint_name("transformer", task_name, "h4")),
        card(checkpoint_name("transformer", task_name, "h4-post")),
    )
    if pre is None or post is None:
        st.info("Both the h4 (pre-norm) and h4-post checkpoints are needed for this comparison.")
    else:
        st.markdown(
            "Post-norm (original paper): $x \\leftarrow \\mathrm{LN}(x + f(x))$. Pre-norm: "
            "$x \\leftarrow x + f(\\mathrm{LN}(x))$ — the residual path stays an identity, which keeps "
            "gradients to early layers healthy. Same data, seed and schedule:"
        )
        curves = {
            f"{k}-norm": ([p["step"] for p in c["loss_curve"]], [p["loss"] for p in c["loss_curve"]])
            for k, c in (("pre", pre), ("post", post))
        }
        st.plotly_chart(
            lines(curves, x_title="step", y_title="training loss", log_y=True), key="tf_norm_loss"
        )
        g1, g2 = st.columns(2)
        for col, (k, c) in zip((g1, g2), (("pre", pre), ("post", post)), strict=True):
            groups = [g for g in c["loss_curve"][0]["grad_norms"] if "." in g]
            col.plotly_chart(
                lines(
                    {
                        g: (
                            [p["step"] for p in c["loss_curve"]],
                            [p["grad_norms"].get(g, 0.0) for p in c["loss_curve"]],
                        )
                        for g in groups
                    },
                    x_title="step",
                    y_title="gradient norm",
                    title=f"{k}-norm, per layer",
                    log_y=True,
                ),
                key=f"tf_norm_grad_{k}",
            )
        st.dataframe(
            [
                {
                    "model": k,
                    "test exact match": c["test"]["exact_match"],
                    "AER (last cross layer)": c["test"]["aer"],
                    "training s": c["training_seconds"],
                }
                for k, c in (("pre-norm", pre), ("post-norm", post))
            ],
            hide_index=True,
        )

with tabs[5]:
    st.markdown("Random weights, your dimensions: the shape arithmetic of multi-head attention.")
    g1, g2, g3 = st.columns(3)
    pg_d = g1.number_input("d_model", 1, 512, 4, key="tf_pg_d")
    pg_h = g2.number_input("heads h", 1, 64, 2, key="tf_pg_h")
    pg_text = g3.text_input("Tokens (space-separated)", "the cat sat", max_chars=400, key="tf_pg_text")
    toks = pg_text.split()[:32]
    if not toks:
        st.info("Type at least one token.")
    else:
        try:
            pg = MultiHeadAttention(int(pg_d), int(pg_h))
        except ValueError as err:
            st.error(str(err))
        else:
            gen = torch.Generator().manual_seed(0)  # local generator: no global seeding per request
            with torch.no_grad():
                for p in pg.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
                x = torch.randn(1, len(toks), int(pg_d), generator=gen)
                _, tr = pg(query=x, key=x, value=x, return_trace=True)
            n, d, h = len(toks), int(pg_d), int(pg_h)
            st.markdown(
                f"X: {n}×{d} → Q = X W_Qᵀ: {n}×{d} → split into {h} heads of d_k = {d}/{h} = {d // h}: "
                f"{h}×{n}×{d // h} → scores QKᵀ per head: {h}×{n}×{n} → softmax → ×V: {h}×{n}×{d // h} → "
                f"concat: {n}×{d} → × W_O ({d}×{d}): {n}×{d}."
            )
            shown = min(h, 8)
            st.plotly_chart(
                head_grid(
                    tr.heads.weights.numpy()[:, :shown],
                    toks,
                    toks,
                    row_names=["random"],
                    col_names=[f"H{i}" for i in range(shown)],
                    height_per_row=260,
                ),
                key="tf_pg_grid",
            )
            if h > shown:
                st.caption(f"First {shown} of {h} heads shown.")

with tabs[6]:
    st.markdown(
        "Per head: mean entropy of its attention rows (0 = each query looks at one key; "
        "ln Tk = uniform) and the share of attention that lands on special tokens "
        f"({', '.join(sorted(SPECIALS))})."
    )
    rows = []
    for blk in BLOCKS:
        k_tokens = view.src if blk != "decoder_self" else view.inputs
        special = np.array([t in SPECIALS for t in k_tokens])
        for i in range(n_layers):
            w = view.blocks[blk][i].weights
            for h in range(n_heads):
                rows.append(
                    {
                        "block": blk,
                        "layer": i,
                        "head": h,
                        "entropy (nats)": float(entropy(w[h]).mean()),
                        "max weight (mean)": float(w[h].max(-1).mean()),
                        "mass on special tokens": float(w[h][:, special].sum(-1).mean()),
                    }
                )
    st.dataframe(rows, hide_index=True)
