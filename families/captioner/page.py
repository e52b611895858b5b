"""Captioning with attention

A small CNN turns the image into an 8×8 grid of region features; an LSTM writes the caption and, for
every word, attends over the 64 regions (additive attention, the project's shared core) — Show,
Attend and Tell. A gate β decides how much of the attended image each word uses.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from analysis.importance import CARD_KEY
from families.captioner import FAMILY
from families.captioner.runner import DEFAULT, SAMPLES, map_similarity
from families.captioner.views import weighed_words, word_view
from families.vit.inputs import hand_over
from tasks.images import ImageError, load_upload, model_input
from tasks.scenes import COLOURS, PEN_INK, SHAPES, SIZES, VOCABULARY, caption_is_defined, compose, generate
from views import attention, importance
from views.canvas import drawing_canvas
from views.inputs import md_escape, whole_number_input
from views.layout import lazy_tabs, page_header
from views.outputs import model_output
from views.serving import cached, card
from viz.heatmaps import matrix_heatmap
from viz.lines import attention_overlay

SAME_MAPS = 0.9  # mean pairwise cosine of per-word maps above this: the maps barely move
SOURCES = ("gallery", "random", "upload", "compose", "draw")
BACKGROUND = (240, 240, 240)  # the training scenes' background

page_header(__doc__)
model_card = card(DEFAULT)
if model_card is None:
    st.error(
        "No trained captioner in assets/. Train it with "
        "`python -m training --family captioner --task scenes`."
    )
    st.stop()
test = model_card["test"]
st.caption(
    f"Trained on synthetic scenes (1–3 shapes in {', '.join(COLOURS)}; {', '.join(SHAPES)} — any angle, "
    f"filled or outlined with a pen; or handwritten and pen-drawn digits). Held-out test: exact caption "
    f"{test['exact_match']:.1%}, BLEU-4 {test['bleu4']:.1f}, pointing game {test['pointing_game']:.1%} "
    f"({test['pointing_game_strict']:.1%} when a quarter of the attended cell must be on the object). "
    "Its attention was taught to point: object words were trained toward their object's regions."
)

# --- Image source ---------------------------------------------------------------------------------
source = st.radio(
    "Image: a gallery sample, a new random scene, an upload, a scene you compose, or your own drawing",
    SOURCES,
    horizontal=True,
    key="source",
    bind="query-params",
)
expected = None
if source == "gallery":
    if not SAMPLES:
        st.error("assets/samples/ is empty.")
        st.stop()
    pick = st.select_slider(
        "Sample",
        options=list(range(len(SAMPLES))),
        format_func=lambda i: SAMPLES[i].stem,
        key="sample",
        bind="query-params",
    )
    picture = Image.open(SAMPLES[pick]).convert("RGB")
elif source == "random":
    button_column, seed_column = st.columns([1, 3])
    if button_column.button("New random scene", key="cap_new"):
        st.session_state["seed"] = st.session_state.get("seed", 0) + 1
    seed = whole_number_input(seed_column, "Scene seed (reproducible)", 0, 10**9, key="seed")
    scene = generate(1, seed)[0]
    picture, expected = Image.fromarray(scene.image), " ".join(scene.caption)
elif source == "upload":
    upload = st.file_uploader(
        "PNG, JPEG, WebP, GIF (first frame) or BMP, up to 10 MB",
        key="cap_upload",  # no type= filter: Streamlit would raise on other names; the bytes are checked
    )
    if upload is None:
        st.info(
            "Upload an image: a photo or drawing of a few coloured shapes or digits on a light background "
            "works best; anything else still gets a caption and maps."
        )
        st.stop()
    try:
        picture = load_upload(upload.getvalue())
    except ImageError as err:
        st.error(md_escape(str(err)))
        st.stop()
elif source == "draw":
    st.markdown(
        "Draw a few shapes (circles, squares, triangles) in the model's colours, or digits in black; "
        "the caption and its attention update when you lift the pen."
    )
    drawn = drawing_canvas(COLOURS | {"black": PEN_INK}, BACKGROUND, key="cap_canvas")
    if drawn is None:
        st.info("Draw something on the canvas.")
        st.stop()
    try:
        picture = load_upload(drawn)
    except ImageError as err:
        st.error(md_escape(str(err)))
        st.stop()
else:
    n_objects = st.slider("Objects", 1, 3, 2, key="cap_n")
    objects = []
    for i, column in enumerate(st.columns(n_objects)):
        with column:
            shape = st.selectbox("Shape", SHAPES, index=i % 3, key=f"cap_shape_{i}")
            colour = st.selectbox("Colour", list(COLOURS), index=i % len(COLOURS), key=f"cap_colour_{i}")
            size = st.radio("Size", list(SIZES), index=i % 2, horizontal=True, key=f"cap_size_{i}")
            x = st.slider("x", 8, 56, [14, 50, 32][i], key=f"cap_x_{i}")
            y = st.slider("y", 8, 56, [20, 44, 16][i], key=f"cap_y_{i}")
            objects.append((shape, colour, size, x, y))
    scene = compose(objects)
    picture = Image.fromarray(scene.image)
    if caption_is_defined(objects):
        expected = " ".join(scene.caption)
    else:
        st.warning("Objects overlap or their order is ambiguous: this layout has no single correct caption.")

seen, _ = model_input(picture)
if max(picture.size) > 64 or picture.size[0] != picture.size[1]:
    st.caption(
        f"Your image ({picture.size[0]}×{picture.size[1]}) is letterboxed into the model's 64×64 input "
        "(scaled evenly, never stretched; the rest filled with its border colour); the view below is "
        "exactly what the model sees."
    )

# --- Caption --------------------------------------------------------------------------------------
captions = cached(FAMILY, "captions")  # (name, the 64×64 input's bytes and shape, beam[, hidden])
beam = st.slider("Beam size (1 = greedy)", 1, 5, 1, key="cap_beam")
runs = captions(DEFAULT, seen.tobytes(), seen.shape, beam)
run = runs[0]
if len(runs) > 1:
    pick_h = st.radio(
        "Beam hypotheses — each with its own attention",
        range(len(runs)),
        key="cap_hyp",
        format_func=lambda i: f"#{i + 1}: {runs[i].text}  (log p {runs[i].log_prob:.3f})",
    )
    run = runs[pick_h]
st.subheader("Caption")
model_output(run, empty="(empty caption)")
weighed_words(run)
if expected is not None:
    st.markdown(
        "Matches the scene's true caption."
        if run.text == expected
        else f"The scene's true caption is: **{md_escape(expected)}**"
    )
fit = cached(FAMILY, "familiarity")(DEFAULT)
distance = float(fit.distances(cached(FAMILY, "features")(DEFAULT, seen.tobytes(), seen.shape))[0])
if distance > fit.threshold:
    st.warning(
        f"This picture is unlike the scenes the captioner was trained on: its features lie at distance "
        f"{distance:.1f} from theirs, where 99% of held-out scenes lie within {fit.threshold:.1f}. Read the "
        "caption as a guess from the scene vocabulary."
    )
    if st.button("See what a real vision transformer makes of it", key="cap_to_vit"):
        hand_over(upload.getvalue() if source == "upload" else picture)  # opens the ViT page on this picture
else:
    st.caption(
        f"Like the training scenes: feature distance {distance:.1f} (99% of held-out scenes are within "
        f"{fit.threshold:.1f})."
    )
if source == "upload":
    st.caption(
        "Words the model knows: " + md_escape(" ".join(VOCABULARY)) + ". Images unlike its training "
        "scenes still get a caption from this vocabulary — read it as the model's best guess."
    )
similarity = map_similarity(run.alphas[: max(1, len(run.output) - 1)])
if similarity > SAME_MAPS:
    st.warning(
        f"The per-word attention maps barely differ (mean cosine similarity {similarity:.2f}): the model is "
        "not looking at different places for different words, so the maps say little here."
    )
opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key="cap_opacity")


def coverage_map(shown, title: str):
    """The run's coverage Σₜ αₜ over the region grid, exact values on hover."""
    return matrix_heatmap(
        shown.coverage, title=title, x_title="column", y_title="row", value_name="Σα", diverging=False
    )


@st.fragment
def regions_view() -> None:
    """Coverage Σₜ αₜ over the caption, and where one region looks in the encoder's self-attention."""
    coverage_column, self_attention_column = st.columns(2)
    coverage = coverage_map(run, "Coverage Σₜ αₜ (1 = looked at once in total)")
    coverage_column.plotly_chart(coverage, key="cap_coverage")
    coverage_column.caption(
        f"Training pushed coverage towards 1 with the doubly stochastic penalty "
        f"λ Σᵢ (1 − Σₜ αₜ,ᵢ)², λ = {model_card['doubly_stochastic_lambda']:g} (Xu et al. 2015, from the "
        f"model's card); its attention was also supervised on object words with weight "
        f"{model_card['attention_supervision']['weight']:g}."
    )
    with self_attention_column:
        st.markdown(
            "**CNN self-attention** — pick a region; where does it look in the encoder's non-local block?"
        )
        row_column, col_column = st.columns(2)
        row = row_column.slider("row", 0, 7, 3, key="cap_sa_row")
        col = col_column.slider("column", 0, 7, 3, key="cap_sa_col")
        looks = run.self_attention[row * 8 + col].reshape(8, 8)
        overlay = attention_overlay(seen, looks[None], [f"region ({row}, {col})"], opacity=opacity, side=300)
        st.plotly_chart(overlay, key="cap_self_attention")


def _hide(regions: list[int]) -> None:
    st.session_state["cap_hidden"] = regions


@st.fragment
def hide_view() -> None:
    """Hide regions from the decoder's attention (weight exactly 0 there) and caption again."""
    (before,) = captions(DEFAULT, seen.tobytes(), seen.shape, 1)  # greedy, nothing hidden
    grid = before.coverage.shape[0]
    st.markdown(
        "Pick regions the decoder may **not** attend to (its softmax gets −∞ there, so their weight is "
        "exactly 0); the image and the encoder are unchanged. The caption is decoded again, greedily."
    )
    most = np.argsort(-before.coverage.ravel(), kind="stable")[:8]  # regions by Σ_t α_t, most first
    st.button(
        "Hide the 8 regions the caption looked at most",
        on_click=_hide,
        args=(sorted(int(r) for r in most),),
        key="cap_hide_top",
    )
    hidden = st.multiselect(
        "Hidden regions",
        range(grid * grid),
        format_func=lambda r: f"row {r // grid}, column {r % grid}",
        max_selections=grid * grid - 1,
        key="cap_hidden",
    )
    if not hidden:
        st.info("No region hidden yet: pick some above, or use the button.")
        return
    (after,) = captions(DEFAULT, seen.tobytes(), seen.shape, 1, tuple(sorted(hidden)))
    sides = (("Nothing hidden", before, "before"), (f"{len(hidden)} regions hidden", after, "after"))
    for column, (title, shown, name) in zip(st.columns(2), sides, strict=True):
        with column:
            st.markdown(f"**{title}**")
            model_output(shown, empty="(empty caption)")
            st.plotly_chart(coverage_map(shown, "Coverage Σₜ αₜ"), key=f"cap_hide_{name}")
    changed = "The caption changed: those regions carried the words."
    st.caption("Same caption." if after.text == before.text else changed)


@st.fragment
def importance_view() -> None:
    """Importance of each region by ablation vs α_t and gradient × input, per word, also as maps."""
    st.caption("Ablated: one 8×8-pixel region, painted the image's mean colour. α: one head, one layer.")
    per_token = cached(FAMILY, "importance")(DEFAULT, seen.tobytes(), seen.shape, run.output)
    t = importance.per_output_token(per_token, "cap", held_out=model_card.get(CARD_KEY, {}).get("spearman"))
    importance.grid_maps(per_token, t, run.alphas.shape[-1], "cap")


def statistics_and_export() -> None:
    attention.statistics(run.maps, "cap")
    attention.export(run.maps, "cap", file_stem=DEFAULT)


lazy_tabs(
    {
        "Where each word looks": lambda: word_view(run, seen, opacity),
        "Coverage and CNN self-attention": regions_view,
        "Hide regions": hide_view,
        "Attention vs importance": importance_view,
        "Statistics & export": statistics_and_export,
    },
    key="cap_view",
)
