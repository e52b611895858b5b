"""Show, attend and tell: a CNN+attention captioner trained here; where it looks for every word."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from models.checkpoints import ASSETS
from runners.captioner import SAME_MAPS, CaptionRun, caption, map_similarity
from tasks.images import ImageError, load_upload, model_input
from tasks.scenes import COLOURS, SHAPES, SIZES, VOCABULARY, caption_is_defined, compose, generate
from views.serving import card, from_url, load_model, md_escape, to_url
from viz.figures import attention_overlay, matrix_heatmap, token_bars

NAME = "captioner-scenes"
SAMPLES = sorted((ASSETS / "samples").glob("*.png"))

st.title("Captioning with attention")
st.markdown(
    "A small CNN turns the image into an 8×8 grid of region features; an LSTM writes the caption and, "
    "for every word, attends over the 64 regions (additive attention, the project's shared core) — "
    "Show, Attend and Tell. A gate β decides how much of the attended image each word uses."
)
model_card = card(NAME)
if model_card is None:
    st.error("No trained captioner in assets/. Train it with `python -m training.captioner`.")
    st.stop()
model, _, _, vocab = load_model(NAME)
test = model_card["test"]
st.caption(
    f"Trained on synthetic scenes (1–3 shapes in {', '.join(COLOURS)}; {', '.join(SHAPES)}; or handwritten "
    f"digits). Held-out test: exact caption {test['exact_match']:.1%}, BLEU-4 {test['bleu4']:.1f}, "
    f"pointing game {test['pointing_game']:.1%}."
)


@st.cache_data(max_entries=64, show_spinner=False)
def captions_of(pixels: bytes, shape: tuple[int, int, int], beam: int) -> list[CaptionRun]:
    """Keyed on the model's 64×64 input pixels: the same picture is captioned once."""
    arr = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    _, x = model_input(Image.fromarray(arr))
    return caption(model, vocab, x, beam=beam)


# --- Image source ---------------------------------------------------------------------------------
SOURCES = {
    "gallery": "Sample gallery",
    "random": "New random scene",
    "upload": "Upload",
    "compose": "Compose a scene",
}
from_url("cap_source", "source", SOURCES["gallery"], parse=SOURCES.__getitem__)
from_url("cap_sample", "sample", 0, parse=int, valid=lambda v: 0 <= v < len(SAMPLES))
from_url("cap_seed", "seed", 0, parse=int, valid=lambda v: 0 <= v <= 10**9)
source = st.radio(
    "Image",
    list(SOURCES.values()),
    horizontal=True,
    key="cap_source",
)
expected = None
if source == "Sample gallery":
    if not SAMPLES:
        st.error("assets/samples/ is empty.")
        st.stop()
    pick = st.select_slider(
        "Sample", options=list(range(len(SAMPLES))), key="cap_sample", format_func=lambda i: SAMPLES[i].stem
    )
    picture = Image.open(SAMPLES[pick]).convert("RGB")
elif source == "New random scene":
    c1, c2 = st.columns([1, 3])
    if c1.button("New random scene", key="cap_new"):
        st.session_state["cap_seed"] = st.session_state.get("cap_seed", 0) + 1
    seed = c2.number_input("Scene seed (reproducible)", 0, 10**9, key="cap_seed")
    scene = generate(1, int(seed))[0]
    picture, expected = Image.fromarray(scene.image), " ".join(scene.caption)
elif source == "Upload":
    up = st.file_uploader(
        "PNG, JPEG, WebP, GIF (first frame) or BMP, up to 10 MB",
        key="cap_upload",  # no type= filter: Streamlit would raise on other names; the bytes are checked
    )
    if up is None:
        st.info(
            "Upload an image: a photo or drawing of a few coloured shapes or digits on a light background "
            "works best; anything else still gets a caption and maps."
        )
        st.stop()
    try:
        picture = load_upload(up.getvalue())
    except ImageError as err:
        st.error(md_escape(str(err)))
        st.stop()
else:
    n = st.slider("Objects", 1, 3, 2, key="cap_n")
    objects = []
    cols = st.columns(n)
    for i, col in enumerate(cols):
        with col:
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
        f"Your image ({picture.size[0]}×{picture.size[1]}) is padded to a square and resized to the "
        "model's 64×64 input; the view below is exactly what the model sees."
    )

beam = st.slider("Beam size (1 = greedy)", 1, 5, 1, key="cap_beam")
to_url(
    "cap",
    source=next(k for k, v in SOURCES.items() if v == source),
    sample=st.session_state["cap_sample"] if source == SOURCES["gallery"] else None,
    seed=st.session_state["cap_seed"] if source == SOURCES["random"] else None,
)
runs = captions_of(seen.tobytes(), seen.shape, beam)
if len(runs) > 1:
    pick_h = st.radio(
        "Beam hypotheses — each with its own attention",
        range(len(runs)),
        key="cap_hyp",
        format_func=lambda i: f"#{i + 1}: {runs[i].text}  (log p {runs[i].log_prob:.3f})",
    )
    run = runs[pick_h]
else:
    run = runs[0]
st.subheader("Caption")
st.code(run.text or "(empty caption)", language=None)
if expected is not None:
    st.markdown(
        "Matches the scene's true caption."
        if run.text == expected
        else f"The scene's true caption is: **{md_escape(expected)}**"
    )
if source == "Upload":
    st.caption(
        "Words the model knows: " + md_escape(" ".join(VOCABULARY)) + ". Images unlike its training "
        "scenes still get a caption from this vocabulary — read it as the model's best guess."
    )
similarity = map_similarity(run.alphas[: max(1, len(run.words) - 1)])
if similarity > SAME_MAPS:
    st.warning(
        f"The per-word attention maps barely differ (mean cosine similarity {similarity:.2f}): the model is "
        "not looking at different places for different words, so the maps say little here."
    )

a, b = st.columns([3, 2])
with a:
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key="cap_opacity")
    word = st.select_slider(
        "Word",
        options=list(range(len(run.words))),
        key="cap_word",
        format_func=lambda t: f"{t + 1}: {run.words[t]}",
    )
    st.plotly_chart(
        attention_overlay(seen, run.alphas, run.words, active=word, opacity=opacity), key="cap_overlay"
    )
with b:
    st.plotly_chart(
        matrix_heatmap(
            run.alphas[word],
            title=f"α for “{run.words[word]}” (exact, 8×8)",
            x_title="column",
            y_title="row",
            value_name="α",
            diverging=False,
        ),
        key="cap_grid",
    )
    st.plotly_chart(token_bars(run.words, run.betas, name="β", title="Gate β per word"), key="cap_beta")

c, d = st.columns(2)
with c:
    st.plotly_chart(
        matrix_heatmap(
            run.coverage,
            title="Coverage Σₜ αₜ (1 = looked at once in total)",
            x_title="column",
            y_title="row",
            value_name="Σα",
            diverging=False,
        ),
        key="cap_coverage",
    )
with d:
    st.markdown(
        "**CNN self-attention** — pick a region; where does it look in the encoder's non-local block?"
    )
    r1, r2 = st.columns(2)
    row = r1.slider("row", 0, 7, 3, key="cap_sa_row")
    col_ = r2.slider("column", 0, 7, 3, key="cap_sa_col")
    sa = run.self_attention[row * 8 + col_].reshape(8, 8)
    st.plotly_chart(
        attention_overlay(seen, sa[None], [f"region ({row}, {col_})"], opacity=opacity, side=300),
        key="cap_self_attention",
    )
