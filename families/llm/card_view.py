"""The language-model page's "Model card" tab: the shipped model's stored card (assets/, measured by
python -m training.llm_card), and for any model "Measure this model" — its time said before it runs, a
progress bar while it runs, the result shown and offered as a JSON download (`families.llm.card`: nothing is
written on the server)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import streamlit as st

from analysis import lm
from families.llm import FAMILY
from families.llm.picker import file_stem
from views.inputs import md_escape
from views.serving import cached, unrecorded

MEASURED = "llm_measured"  # session state: model name → the card this session measured (a few kB of JSON)


def _heads_table(in_context: Mapping, n: int = 8) -> None:
    names = ("induction", "previous_token", "first_token")
    kinds = {k: lm.top_heads(in_context[f"{k}_scores"], n) for k in names}
    st.dataframe([{kind: f"L{i} H{h}  {v:.2f}" for kind, (i, h, v) in zip(kinds, row, strict=True)}
                  for row in zip(*kinds.values(), strict=True)], hide_index=True)  # fmt: skip


def stored_card(card: Mapping) -> None:
    """The shipped model's card: its file, perplexity, in-context losses, IOI and facts, top heads."""
    english, f, ic, ioi, facts = card["english"], card["file"], card["in_context"], card["ioi"], card["facts"]
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
    _heads_table(ic)


def measured(name: str) -> dict | None:
    """The card this session measured for model ``name``, or None."""
    return st.session_state.get(MEASURED, {}).get(name)


def measured_card(name: str, card: Mapping) -> None:
    """A card measured on request: its numbers, its top heads and the JSON download."""
    english, ic = card["english"], card["in_context"]
    cells = st.columns(4)
    cells[0].metric("Perplexity, held-out English", f"{english['perplexity']:.2f}")
    cells[1].metric("Unigram perplexity, same tokens", f"{english['unigram_perplexity']:.1f}")
    cells[2].metric("Random tokens: loss on the first copy", f"{ic['first_copy_loss']:.2f} nats")
    cells[3].metric("… on the second copy", f"{ic['second_copy_loss']:.2f} nats",
                    f"{ic['second_copy_loss_ablated']:.2f} with the top induction heads off",
                    delta_color="off", delta_arrow="off")  # fmt: skip
    st.caption(f"{md_escape(english['definition'])}; {english['windows']} windows, {english['tokens']:,} "
               f"predicted tokens. Measured in {card['measuring_seconds']:.1f} s on {card['threads']} "
               "thread(s).")  # fmt: skip
    st.markdown("**Top heads by score** (random ordinary tokens repeated twice; "
                f"{ic['probe']['sequences']} sequences of {ic['probe']['length']} tokens):")  # fmt: skip
    _heads_table(ic, min(8, len(ic["induction_scores"]) * len(ic["induction_scores"][0])))
    st.download_button("Download this card (JSON)", json.dumps({"model": name, **card}, indent=1),
                       file_name=f"{file_stem(name)}-card.json", mime="application/json",
                       key="llm_card_download", on_click="ignore")  # fmt: skip


def measure_view(name: str) -> None:
    """The estimate, the button, the progress bar and the result (`families.llm.card`)."""
    plan = cached(FAMILY, "card_plan")(name)
    st.markdown(
        f"**Measure this model**: held-out English perplexity against a unigram baseline "
        f"({plan.windows} windows of {plan.window} tokens of Python's help texts) and every head's "
        f"induction, previous-token and first-token score on random tokens repeated — {plan.tokens:,} "
        f"tokens through the model in {plan.forwards} forwards. **About {plan.seconds:,.0f} s here** "
        f"({plan.parameters:,} parameters; one {plan.window}-token window's forward just took "
        f"{plan.forward_seconds * 1e3:,.0f} ms on this server). The card is shown and offered as a "
        "download; nothing is written on the server."
    )
    cards = st.session_state.setdefault(MEASURED, {})
    if st.button("Measure this model", key="llm_measure", type="primary"):
        bar = st.progress(0.0, text="Measuring…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Measuring: forward {done} of {total}")

        cards[name] = cached(FAMILY, "card")(name, _progress=unrecorded(progress))  # computed once, shared
        bar.empty()
    if name in cards:
        measured_card(name, cards[name])
        st.caption("The other tabs now read this card where they read one (default layer and head: its best "
                   "induction head; the sinks tab: its first-token scores).")  # fmt: skip


def card_view(name: str, card: Mapping | None) -> None:
    """The tab: the stored card where the model has one, then measuring on demand."""
    if card:
        stored_card(card)
        st.divider()
    measure_view(name)
