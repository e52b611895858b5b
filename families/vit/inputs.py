"""The ViT page's pictures: real photos that installed packages ship (nothing downloaded), the captioner's
generated scenes with their exact object masks, an upload, a drawing, or the picture the Captioning page
handed over (`HANDOFF`).

URL parameters: ``vit_source`` (the radio), ``vit_photo`` (the gallery's photo), ``vit_seed`` (a scene's
seed). An upload, a drawing and a handed-over picture cannot travel in a URL.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from tasks.images import MAX_PIXELS, ImageError, load_upload
from tasks.scenes import COLOURS, PEN_INK
from tasks.scenes import generate as generate_scenes
from views.canvas import drawing_canvas
from views.inputs import md_escape, whole_number_input

# name → (package, file inside it, what it is). Found with find_spec: the package is not imported.
GALLERY = {
    "flower": ("sklearn", "datasets/images/flower.jpg", "a flower (scikit-learn's sample image)"),
    "china": ("sklearn", "datasets/images/china.jpg", "a temple in China (scikit-learn's sample image)"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                     "Grace Hopper (matplotlib's sample photo; matplotlib comes with mlxtend)"),
}  # fmt: skip
SOURCES = ("gallery", "scene", "upload", "draw")
HANDED = "captioning"  # the source of a picture the Captioning page handed over
HANDOFF = "vit_handoff"  # session_state key no widget owns: that picture's PNG bytes
BACKGROUND = (240, 240, 240)  # the drawing canvas's paper: the captioner's scenes' background


@dataclass(frozen=True)
class Picture:
    image: Image.Image  # RGB, at its own size (the model's preprocessing is the one resampling)
    name: str  # what it is, for captions and file names
    target: np.ndarray | None = None  # (H, W) bool: the picture's exact object mask (a generated scene)


def gallery_path(name: str) -> Path | None:
    """The gallery photo's file inside its installed package; None when the package is not installed."""
    package, inside, _ = GALLERY[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    return path if path.is_file() else None


def gallery_names() -> list[str]:
    return [name for name in GALLERY if gallery_path(name) is not None]


def gallery_picture(name: str) -> Image.Image:
    """A shipped photo as RGB (a package's own file: trusted, read as it is)."""
    with Image.open(gallery_path(name)) as img:
        return img.convert("RGB")


def scene_picture(seed: int) -> Picture:
    """The captioner's generated scene ``seed`` (64×64) with the union of its objects' exact masks."""
    scene = generate_scenes(1, seed)[0]
    name = f"scene {seed}: “{' '.join(scene.caption)}”"
    return Picture(Image.fromarray(scene.image), name, scene.masks.any(0))


def _read(data: bytes | None, name: str) -> Picture:
    """Bytes from the browser → a picture at its own size, or the loader's message and a stop."""
    try:
        return Picture(load_upload(data or b"", max_side=MAX_PIXELS), name)
    except ImageError as err:
        st.error(md_escape(str(err)))
        st.stop()


def choose() -> Picture:
    """The picture picker: its radio, then what the source needs. Stops the page (with a message) while
    there is no picture yet or the file is refused."""
    handed = HANDOFF in st.session_state
    source = st.radio(
        "Picture: a real photo, a generated scene (with its exact object mask), your upload or your drawing",
        (*SOURCES, HANDED) if handed else SOURCES, horizontal=True, key="vit_source", bind="query-params",
    )  # fmt: skip
    if source == "gallery":
        names = gallery_names()
        if not names:
            st.error("No gallery photo is installed: `pip install -r requirements.txt` installs two.")
            st.stop()
        name = st.selectbox("Photo", names, key="vit_photo", bind="query-params")  # its name is in the URL
        st.caption(f"{name}: {GALLERY[name][2]}.")
        return Picture(gallery_picture(name), name)
    if source == "scene":
        seed = whole_number_input(st, "Scene seed (the captioner's generator; reproducible)", 0, 10**9,
                                  key="vit_seed")  # fmt: skip
        return scene_picture(seed)
    if source == "upload":
        upload = st.file_uploader("A photo: PNG, JPEG, WebP, GIF (first frame) or BMP", key="vit_upload")
        if upload is None:
            st.info("Upload a photo: any size and shape (a phone's EXIF orientation is applied).")
            st.stop()
        return _read(upload.getvalue(), Path(upload.name).stem or "upload")
    if source == "draw":
        st.markdown("Draw anything; the model reads it when you lift the pen.")
        drawn = drawing_canvas(COLOURS | {"black": PEN_INK}, BACKGROUND, key="vit_canvas")
        if drawn is None:
            st.info("Draw something on the canvas.")
            st.stop()
        return _read(drawn, "drawing")
    return _read(st.session_state[HANDOFF], "the captioning page's picture")


def hand_over(picture: Image.Image | bytes) -> None:
    """Open this page on ``picture`` (another page's: an upload's bytes, or the image it read): kept in
    `HANDOFF`, a session key no widget owns (a URL cannot carry an upload), with the source in the URL."""
    from families import FAMILIES

    if isinstance(picture, Image.Image):
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        picture = buffer.getvalue()
    st.session_state[HANDOFF] = picture
    st.session_state["vit_source"] = HANDED  # the radio's value on arrival (its URL parameter says the same)
    st.switch_page(FAMILIES["vit"].page, query_params={"vit_source": HANDED})
