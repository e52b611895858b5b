"""The captioner on one image → numpy for the Captioning page (every array from its own trace)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.captioner import Captioner, CaptionTrace
from runners.seq2seq import INFERENCE_LOCK
from tasks.common import EOS_ID, Vocab

MAX_WORDS = 20
SAME_MAPS = 0.9  # mean pairwise cosine of per-word maps above this: the maps barely move


@dataclass(frozen=True)
class CaptionRun:
    words: tuple[str, ...]  # emitted tokens, "</s>" included when reached
    text: str
    log_prob: float
    alphas: np.ndarray  # (T, g, g) attention per word over the region grid
    scores: np.ndarray  # (T, g, g) e_t before the softmax
    betas: np.ndarray  # (T,) gate
    self_attention: np.ndarray  # (R, R) the encoder's region-to-region weights

    @property
    def coverage(self) -> np.ndarray:
        """(g, g) Σ_t α_t over the words (</s> excluded)."""
        n = len(self.words) - (self.words[-1] == "</s>")
        return self.alphas[:n].sum(0)


def _run(ids: list[int], log_prob: float, trace: CaptionTrace, v: Vocab) -> CaptionRun:
    t = ids.index(EOS_ID) + 1 if EOS_ID in ids else len(ids)
    g = int(round(trace.alphas.shape[-1] ** 0.5))

    def grid(x: torch.Tensor) -> np.ndarray:
        return x[0, :t].reshape(t, g, g).float().cpu().numpy()

    return CaptionRun(
        words=tuple(v.tokens[i] for i in ids[:t]), text=" ".join(v.decode(ids[:t])), log_prob=log_prob,
        alphas=grid(trace.alphas), scores=grid(trace.scores), betas=trace.betas[0, :t].float().cpu().numpy(),
        self_attention=trace.self_attention.heads.weights[0, 0].float().cpu().numpy(),
    )


def caption(model: Captioner, v: Vocab, image: torch.Tensor, *, beam: int = 1) -> list[CaptionRun]:
    """Greedy (beam=1) or the ``beam`` best captions of one image (1, 3, H, W)."""
    image = image.to(next(model.parameters()).device)
    with INFERENCE_LOCK, torch.inference_mode():
        if beam <= 1:
            ids, trace = model.greedy(image, max_len=MAX_WORDS)
            logp = torch.log_softmax(trace.logits[0], -1).gather(-1, ids[0][:, None]).squeeze(-1)
            ids_l = ids[0].tolist()
            t = ids_l.index(EOS_ID) + 1 if EOS_ID in ids_l else len(ids_l)
            return [_run(ids_l, float(logp[:t].sum()), trace, v)]
        return [_run(toks, lp, trace, v) for toks, lp, trace in model.beam(image, k=beam, max_len=MAX_WORDS)]


def map_similarity(alphas: np.ndarray) -> float:
    """Mean pairwise cosine similarity between the per-word maps (1 = every word looks alike)."""
    flat = alphas.reshape(len(alphas), -1)
    if len(flat) < 2:
        return 0.0
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(1e-12)
    sim = unit @ unit.T
    return float((sim.sum() - np.trace(sim)) / (len(flat) * (len(flat) - 1)))
