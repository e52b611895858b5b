"""The transformer lab's Circuits tab: one output step of the encoder–decoder explained — the logit lens
over the decoder's stream, each head's direct effect, and which source positions and heads carry the
answer when a clean source is patched into a corrupted one (`families.transformer.circuits`, served
cached by the transformer runner). The lens and attribution views are the decoder tab's
(`views.circuits`).

Like the decoders' tab, it measures the model as it is: the sidebar's interventions are not applied.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.circuits import Pair
from families.transformer import FAMILY
from models.attention import NO_INTERVENTION
from tasks import InputError, Task, prepare
from tasks.common import BOS
from views.circuits import AS_IS, CANDIDATES, direct_view, lens_view
from views.inputs import nearest_source, token_key
from views.patching import restored_grids
from views.serving import cached, loaded_model

SECTIONS = ("Logit lens", "Direct attribution", "Patching")
BLOCK_ROWS = {"encoder": "encoder self", "decoder_self": "decoder self", "cross": "cross"}


def tab(name: str, task: Task, src: tuple[str, ...], *, key: str = "tf") -> None:
    """The whole tab for the checkpoint ``name`` on the source tokens ``src``."""
    model, card, src_vocab, tgt_vocab = loaded_model(FAMILY, name)
    run = cached(FAMILY, "run")
    st.caption(AS_IS)
    clean = run(name, src, NO_INTERVENTION)
    default = nearest_source(task, src)
    corrupt_text = st.text_input(
        "Corrupted source (the same token count: patching swaps activations position by position)",
        task.joiner.join(default or src),
        key=token_key(f"{key}_circ_corrupt", src),
    )
    try:
        corrupt = prepare(task, corrupt_text, src_vocab).tokens
        corrupt_out = run(name, corrupt, NO_INTERVENTION).output
    except InputError as err:
        st.info(str(err))
        corrupt, corrupt_out = None, ()
    st.markdown(f"Clean output: `{' '.join(clean.output)}` · corrupted output: `{' '.join(corrupt_out)}`")
    differs = [t for t, (a, b) in enumerate(zip(clean.output, corrupt_out, strict=False)) if a != b]
    step = st.selectbox(
        "Output step to explain (the decoder reads the clean output before it)",
        range(len(clean.output)),
        index=differs[0] if differs else 0,
        format_func=lambda t: f"{t}: {clean.output[t]}",
        key=token_key(f"{key}_circ_step", (*src, "|", *(corrupt or ()))),
    )
    ids = tuple(src_vocab.encode(src))
    decoder_in = tuple(tgt_vocab.encode((BOS, *clean.output[:step])))
    label = tgt_vocab.tokens.__getitem__
    logits = cached(FAMILY, "step_logits")(name, ids, decoder_in)
    options = [int(i) for i in np.argsort(-logits, kind="stable")[:CANDIDATES]]
    rival = tgt_vocab.index.get(corrupt_out[step]) if step in differs else options[1]
    rival = rival if rival in options else options[1]
    target, rival = (
        column.selectbox(f"{role} token", options, index=options.index(default), format_func=label,
                         key=token_key(f"{key}_circ_{role.lower()}", (*decoder_in, *ids)))
        for column, role, default in zip(st.columns(2), ("Target", "Rival"), (options[0], rival), strict=True)
    )  # fmt: skip
    if target == rival:
        st.info("Pick a rival other than the target: the metric is logit(target) − logit(rival).")
        return
    pair = Pair(target, rival)
    section = st.radio("Look at", SECTIONS, horizontal=True, key=f"{key}_circ_section")
    if section == "Logit lens":
        lens = cached(FAMILY, "lens")(name, ids, decoder_in, pair)
        columns = [f"{t}: {tgt_vocab.tokens[i]}" for t, i in enumerate(decoder_in)]
        lens_view(lens, pair, label, columns, key=f"{key}_circ")
    elif section == "Direct attribution":
        if card["config"]["norm"] != "pre":
            st.info(
                "Direct attribution needs a pre-norm model: a post-norm stream is re-normalised after every "
                "sublayer, so the output is no sum of the sublayers' terms. Pick a pre-norm model above; "
                "the logit lens and patching work on this one."
            )
            return
        direct = cached(FAMILY, "direct")(name, ids, decoder_in, pair)
        rows = [f"L{i} {block}" for i in range(model.cfg.n_layers) for block in ("self", "cross")]
        direct_view(direct, rows, key=f"{key}_circ")
    elif corrupt is None or len(corrupt) != len(src):
        st.info(
            f"Patching needs a corrupted source of the same token count: the clean one has {len(src)} "
            f"{task.unit}, the corrupted one {len(corrupt or ())}. Change only the clue."
        )
    else:
        _patching(name, src, corrupt, ids, tuple(src_vocab.encode(corrupt)), decoder_in, pair, model.cfg, key)


def _patching(name: str, src, corrupt, ids, corrupt_ids, decoder_in, pair: Pair, cfg, key: str) -> None:
    sources = cached(FAMILY, "source_sweep")(name, ids, corrupt_ids, decoder_in, pair)
    heads = cached(FAMILY, "head_sweep")(name, ids, corrupt_ids, decoder_in, pair)
    head_rows = [f"{BLOCK_ROWS[b]} L{i}" for b in BLOCK_ROWS for i in range(cfg.n_layers)]
    restored_grids(sources, heads, metric="Logit difference", value_format="+.3f", inputs="source",
                   clean=src, corrupt=corrupt, head_rows=head_rows, unit="source position",
                   key=f"{key}_circ")  # fmt: skip
