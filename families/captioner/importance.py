"""Attention vs importance for the captioner: does α_t say which image regions word t needed?
(Jain & Wallace 2019; Abnar & Zuidema 2020.) Numpy out, no Streamlit.

On one image and the model's own caption w_1 … w_T (teacher-forced, so the prefix stays fixed):
- **importance** of region r (one cell of the 8×8 grid, 8×8 pixels) for word t: log p(w_t) −
  log p(w_t | the region's pixels painted the image's mean colour), all 64 ablations in one batch;
- **raw attention** α_t,r: the decoder's one single-head attention over the local region features —
  one layer, so there is nothing to roll out (the encoder's self-attention feeds only the decoder's
  first state, not the features it attends over);
- **gradient × input**: Σ over the region's pixels and channels of (x − x') ∂ log p(w_t)/∂x, with x'
  the same mean-colour image: the first-order estimate of the very same ablation.
The held-out average adds the pointing game of each ranking: does its top region lie on the object a
word names?
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from analysis.family import Served
from analysis.importance import CARD_KEY, GRADIENT_X_INPUT, PerToken, card_entry, gradient_x_input
from analysis.protocol import to_numpy
from families.captioner.runner import DEFAULT, picture, region_labels
from models.captioner import Captioner, CaptionerConfig
from models.checkpoints import ASSETS, load_checkpoint, write_entry
from tasks import TEST_SEED
from tasks.batching import batch_scenes
from tasks.common import BOS_ID, EOS, Vocab, length_to_eos
from tasks.scenes import MAX_CAPTION, Scene, cell_shares, generate

ATTENTION = "raw attention α"
IMPORTANCE = "importance"  # the ablation's own ranking, in the pointing game

DEFINITION = {
    "importance": "log p(w_t) − log p(w_t | region r ablated), per caption word t (</s> included) and "
    "region r of the 8×8 grid; teacher-forced on the model's own greedy caption",
    "ablated": "one region at a time: its 8×8 pixels, all three channels",
    "replacement": "the image's mean colour (per channel, over all its pixels)",
    "quantity": "log-probability of the caption word w_t",
    "measures": {
        ATTENTION: "α_t,r, the decoder's single-head attention over the local region features at step t "
        "(no rollout: one attention layer between the regions and the word)",
        GRADIENT_X_INPUT: "Σ over the region's pixels and channels of (x − x') ∂ log p(w_t)/∂x, x' = the "
        "image in its mean colour (the ablation's replacement), in the model's normalised input space",
    },
    "comparisons": "one per (scene, caption word) pair, over the 64 regions",
}
POINTING_DEFINITION = (
    "scenes whose greedy caption is the true one; for each word that names an object, does the "
    "ranking's top region (argmax) overlap the object's mask (any pixel: the card's lenient pointing game)?"
)


def _regions(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, 3, H, W) → (B, R, 3·s·s): each grid cell's pixels (s = H / grid), regions row-major."""
    b, c, h, w = x.shape
    s = h // grid
    cells = x.reshape(b, c, grid, s, grid, s).permute(0, 2, 4, 1, 3, 5)  # (B, g, g, C, s, s)
    return cells.reshape(b, grid * grid, c * s * s)


def _log_p(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (T,) → (B, T) log p of each target, in float64 (see the seq2seq
    module: small ablation effects near log p = 0 survive)."""
    log_probs = torch.log_softmax(logits.double(), -1)  # (B, T, V)
    return log_probs.gather(-1, targets.expand(len(logits), -1).unsqueeze(-1)).squeeze(-1)


def ablated_images(image: torch.Tensor, grid: int) -> torch.Tensor:
    """image (1, 3, H, W) normalised → (R, 3, H, W): copy r has region r in the image's mean colour."""
    _, _, h, w = image.shape
    s = h // grid
    replacement = image.mean((2, 3), keepdim=True).expand_as(image)  # (1, 3, H, W)
    cell = torch.arange(h, device=image.device) // s  # (H,) the grid row (or column) of each pixel
    region = (cell[:, None] * grid + cell[None, :]).flatten()  # (H·W,) each pixel's region
    masks = region[None] == torch.arange(grid * grid, device=image.device)[:, None]  # (R, H·W)
    masks = masks.reshape(grid * grid, 1, h, w)  # (R, 1, H, W)
    return torch.where(masks, replacement, image)  # (R, 3, H, W)


def importance(model: Captioner, vocab: Vocab, image: torch.Tensor, output: Sequence[str]) -> PerToken:
    """Importance by region ablation, α and gradient × input of every region for every word of
    ``output`` (the model's own caption, "</s>" included when reached), teacher-forced; image
    (1, 3, H, W) normalised as `tasks.images.model_input` makes it. Rows are words (T), columns regions."""
    if not output:
        raise ValueError("importance needs a caption: pass a run's output.")
    device = next(model.parameters()).device
    image = image.to(device)
    grid, n_out = model.grid, len(output)
    # 1) The forced decoder input <s> w_1 … w_{T-1} (1, T) and the targets (T,).
    out_ids = torch.tensor(vocab.encode(output), device=device)  # (T,)
    tgt_in = torch.cat([torch.tensor([BOS_ID], device=device), out_ids[:-1]])[None]  # (1, T)
    # 2) Row 0: the image; row 1 + r: region r in the mean colour. One batched forward.
    copies = torch.cat([image, ablated_images(image, grid)])  # (R+1, 3, H, W)
    with torch.inference_mode():
        logits, trace = model(copies, tgt_in.expand(len(copies), -1))  # (R+1, T, V)
        log_p = _log_p(logits, out_ids)  # (R+1, T)
    # 3) Gradient × input: T copies of the image; copy t differentiated for log p(w_t), one backward.
    # autograd.grad writes no .grad onto the shared model.
    leaves = image.expand(n_out, -1, -1, -1).clone().requires_grad_()  # (T, 3, H, W)
    with torch.inference_mode(False), torch.enable_grad():
        grad_logits, _ = model(leaves, tgt_in.expand(n_out, -1))  # (T, T, V)
        own = _log_p(grad_logits, out_ids).diagonal()  # (T,) copy t's log p(w_t)
        (grad,) = torch.autograd.grad(own.sum(), leaves)  # (T, 3, H, W)
    replacement = image.mean((2, 3), keepdim=True).expand_as(image)  # (1, 3, H, W)
    gxi = gradient_x_input(
        to_numpy(_regions(grad, grid)), to_numpy(_regions(image, grid)), to_numpy(_regions(replacement, grid))
    )  # (T, R)
    # A region already in the mean colour is a no-op: importance and gradient × input exactly 0.
    measures = {ATTENTION: to_numpy(trace.alphas[0]), GRADIENT_X_INPUT: gxi}
    labels = region_labels(grid)
    return PerToken.from_batch(output, labels, log_p.cpu().numpy(), copies.cpu().numpy(), measures)


def pointing(per_token: PerToken, scene: Scene) -> dict[str, list[bool]] | None:
    """Per ranking (importance and each measure), for each word naming an object: does its top
    region overlap the object? None when the caption is not the scene's true one."""
    if per_token.output != (*scene.caption, EOS):
        return None
    grid = int(round(len(per_token.positions) ** 0.5))
    shares = cell_shares(scene.masks, grid)  # (n_objects, R)
    rankings = {IMPORTANCE: per_token.importance, **per_token.measures}
    named = [(t, obj) for t, obj in enumerate(scene.word_objects) if obj >= 0]
    return {
        name: [bool(shares[obj, int(ranking[t].argmax())] > 0) for t, obj in named]
        for name, ranking in rankings.items()
    }


def held_out(model: Captioner, vocab: Vocab, scenes: Sequence[Scene], chunk: int = 100) -> dict:
    """The card's `CARD_KEY` entry (`analysis.importance.card_entry`): per measure the mean Spearman
    with importance over every caption word of ``scenes`` (each captioned greedily first), and the
    pointing game."""
    device = next(model.parameters()).device
    per_input, hits, pointed = [], {}, 0
    for start in range(0, len(scenes), chunk):
        part = scenes[start : start + chunk]
        images, _, _ = batch_scenes(part, vocab, device)  # (B, 3, H, W)
        with torch.inference_mode():
            ids, _ = model.greedy(images, max_len=MAX_CAPTION)  # (B, T)
        for b, scene in enumerate(part):
            row = ids[b].tolist()
            output = tuple(vocab.tokens[i] for i in row[: length_to_eos(row)])
            per_token = importance(model, vocab, images[b : b + 1], output)
            per_input.append(per_token.comparisons())
            found = pointing(per_token, scene)
            if found is not None:
                pointed += 1
                for name, h in found.items():
                    hits.setdefault(name, []).extend(h)
    split = "test (tasks.scenes.generate(n, tasks.TEST_SEED, 'test'): the card's test scenes)"
    return {
        **card_entry(per_input, split=split, definition=DEFINITION),
        "pointing_game": {
            "definition": POINTING_DEFINITION,
            "scenes": pointed,
            "words": len(next(iter(hits.values()), [])),
            "hit_rate": {name: float(np.mean(h)) if h else float("nan") for name, h in hits.items()},
        },
    }


def _served_measure(loaded, pixels: bytes, shape: tuple[int, int, int], output: tuple[str, ...]) -> PerToken:
    """`importance` on the page's picture (its 64×64 input pixels) and shown caption, teacher-forced."""
    model, _, _, vocab = loaded
    return importance(model, vocab, picture(pixels, shape), output)


SERVED = {"importance": Served(_served_measure, max_entries=32, spinner="Ablating each image region…")}


def measure_cards(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The captioner's card: its held-out entry over the first ``n`` test scenes."""
    model, _, _, vocab = load_checkpoint(DEFAULT, Captioner, CaptionerConfig, folder)
    entry = held_out(model, vocab, generate(n, TEST_SEED, "test"))
    return write_entry(DEFAULT, CARD_KEY, entry, folder)
