"""Captioner family runner: one image → numpy for the Captioning page (every array from its trace)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from analysis.family import Served
from analysis.protocol import AttentionMaps, to_numpy
from models.attention import NO_INTERVENTION, Interventions
from models.captioner import Captioner, CaptionerConfig, CaptionTrace
from models.checkpoints import ASSETS, load_checkpoint
from tasks.common import Vocab, length_to_eos, split_of
from tasks.images import model_input, to_tensor
from tasks.scenes import MAX_CAPTION, SHAPES
from tasks.scenes import generate as generate_scenes

DEFAULT = "captioner-scenes"
SAMPLES = sorted((ASSETS / "samples").glob("*.png"))
# The words that name an object, by kind: a shape noun is weighed against the other shapes, a digit
# against the other digits (`weighed`).
OBJECT_WORDS = (SHAPES, tuple(str(d) for d in range(10)))


@dataclass(frozen=True)
class CaptionRun:
    output: tuple[str, ...]  # emitted words, "</s>" included when reached
    text: str
    token_log_probs: np.ndarray  # (T,) log p of each emitted word
    alphas: np.ndarray  # (T, g, g) attention per word over the region grid
    scores: np.ndarray  # (T, g, g) e_t before the softmax
    betas: np.ndarray  # (T,) gate
    self_attention: np.ndarray  # (R, R) the encoder's region-to-region weights
    maps: dict[str, AttentionMaps]  # "words": word → region (T, R); "regions": region → region
    word_probs: np.ndarray  # (T, V) p(word | image, the words before) at each step: the model's softmax
    vocabulary: tuple[str, ...]  # (V,) the words of word_probs' columns

    @property
    def log_prob(self) -> float:
        return float(self.token_log_probs.sum())

    @property
    def coverage(self) -> np.ndarray:
        """(g, g) Σ_t α_t over the words (</s> excluded)."""
        n = len(self.output) - (self.output[-1] == "</s>")
        return self.alphas[:n].sum(0)


def region_labels(grid: int) -> tuple[str, ...]:
    """Row-major names of the grid's regions: 'r0c0', 'r0c1', …"""
    return tuple(f"r{r}c{c}" for r in range(grid) for c in range(grid))


def _run(ids: list[int], trace: CaptionTrace, v: Vocab) -> CaptionRun:
    t = length_to_eos(ids)
    g = int(round(trace.alphas.shape[-1] ** 0.5))
    log_softmax = torch.log_softmax(trace.logits[0, :t], -1)  # (T, V)
    logp = log_softmax.gather(-1, torch.tensor(ids[:t])[:, None].to(trace.logits.device))

    def grid(x: torch.Tensor) -> np.ndarray:
        return to_numpy(x[0, :t].reshape(t, g, g))

    output = tuple(v.tokens[i] for i in ids[:t])
    alphas = grid(trace.alphas)
    self_attention = to_numpy(trace.self_attention.heads.weights[0, 0])
    regions = region_labels(g)
    return CaptionRun(
        output=output,
        text=" ".join(v.decode(ids[:t])),
        token_log_probs=to_numpy(logp.squeeze(-1)),
        alphas=alphas,
        scores=grid(trace.scores),
        betas=to_numpy(trace.betas[0, :t]),
        self_attention=self_attention,
        maps={
            "words": AttentionMaps.single(
                "decoder: word → image region", alphas.reshape(t, -1), output, regions
            ),
            "regions": AttentionMaps.single(
                "encoder self-attention: region → region", self_attention, regions, regions
            ),
        },
        word_probs=to_numpy(log_softmax.exp()),
        vocabulary=tuple(v.tokens),
    )


@dataclass(frozen=True)
class Weighed:
    """What the model weighed at one word that names an object: every word of the same kind (the
    shapes, or the digits) with the probability the model's softmax gave it at that step."""

    step: int  # the word's index in the run's output
    word: str  # the word the caption has there
    rivals: tuple[tuple[str, float], ...]  # (word, p) for the word and its kind, most probable first

    @property
    def doubt(self) -> float:
        """The probability of the likeliest other word of the same kind (0: no doubt at all)."""
        return max((p for w, p in self.rivals if w != self.word), default=0.0)


def weighed(run: CaptionRun, *, at: int | None = None) -> list[Weighed]:
    """Per object-naming word of ``run`` (or only the one at step ``at``, if it names an object): the
    probabilities, from the model's own softmax at that step, of every word of its kind."""
    column = {w: i for i, w in enumerate(run.vocabulary)}
    out = []
    for t, word in enumerate(run.output):
        kind = next((words for words in OBJECT_WORDS if word in words), None)
        if kind is None or (at is not None and t != at):
            continue
        probs = [(w, float(run.word_probs[t, column[w]])) for w in kind if w in column]
        out.append(Weighed(t, word, tuple(sorted(probs, key=lambda wp: -wp[1]))))
    return out


def run(
    model: Captioner, v: Vocab, image: torch.Tensor, iv: Interventions = NO_INTERVENTION, *, beam: int = 1
) -> list[CaptionRun]:
    """Greedy (beam=1) or the ``beam`` best captions of one image (1, 3, H, W). Of the interventions
    the captioner reads ``hidden_keys``: regions (row-major, see `region_labels`) the decoder may not
    attend to; the others concern the text models' attention blocks and must stay at their defaults."""
    if replace(iv, hidden_keys=()) != NO_INTERVENTION:
        raise ValueError("the captioner takes only hidden_keys (regions to hide) among the interventions")
    image = image.to(next(model.parameters()).device)
    with torch.inference_mode():
        if beam <= 1:
            ids, trace = model.greedy(image, max_len=MAX_CAPTION, hidden=iv.hidden_keys)
            return [_run(ids[0].tolist(), trace, v)]
        found = model.beam(image, k=beam, max_len=MAX_CAPTION, hidden=iv.hidden_keys)
        return [_run(toks, trace, v) for toks, _, trace in found]


def map_similarity(alphas: np.ndarray) -> float:
    """Mean pairwise cosine similarity between the per-word maps (1 = every word looks alike)."""
    flat = alphas.reshape(len(alphas), -1)
    if len(flat) < 2:
        return 0.0
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(1e-12)
    sim = unit @ unit.T
    return float((sim.sum() - np.trace(sim)) / (len(flat) * (len(flat) - 1)))


def example() -> CaptionRun:
    """The captioner on the first gallery sample (tests and warm-up)."""
    model, _, _, vocab = load_checkpoint(DEFAULT, Captioner, CaptionerConfig)
    _, x = model_input(Image.open(SAMPLES[0]).convert("RGB"))
    return run(model, vocab, x)[0]


# --- How unlike the training scenes an image is ----------------------------------------------------
@dataclass(frozen=True)
class Familiarity:
    """Where the encoder puts the training scenes: the mean and inverse covariance of their pooled
    global features (C,), and the distance that 99% of held-out scenes stay under.

    ``distances(pooled_features(model, images))`` are Mahalanobis distances to the training scenes;
    above ``threshold`` an image is unlike what the captioner learned from, and its caption is a
    guess from the scene vocabulary."""

    mean: np.ndarray  # (C,)
    precision: np.ndarray  # (C, C) inverse of the shrunk covariance
    threshold: float  # the 99th percentile over held-out (validation and test split) scenes
    held_out: np.ndarray  # (N,) the held-out scenes' distances (calibration)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """features (N, C) → (N,) Mahalanobis distances to the training scenes."""
        d = features - self.mean  # (N, C)
        return np.sqrt(np.einsum("nc,cd,nd->n", d, self.precision, d))


def pooled_features(model: Captioner, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """images (N, 3, H, W) → (N, C): the encoder's global features g averaged over the regions
    (what the decoder's first state is made from)."""
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            _, global_feats, _ = model.encode(images[i : i + batch].to(device))
            out.append(to_numpy(global_feats.mean(1)))  # (b, R, C) → (b, C)
    return np.concatenate(out).astype(np.float64)


def familiarity(model: Captioner, n_scenes: int = 1500, seed: int = 0) -> Familiarity:
    """Fit the feature distribution of ``n_scenes`` generated scenes' training-split share (80%),
    and calibrate the threshold on the held-out share (validation and test splits, 20%): one batch
    of generated scenes, a few seconds on a CPU."""
    scenes = generate_scenes(n_scenes, seed)
    held = np.array([split_of(s.key) != "train" for s in scenes])
    features = pooled_features(model, to_tensor(np.stack([s.image for s in scenes])))
    train = features[~held]
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False)
    cov += 1e-3 * np.trace(cov) / len(cov) * np.eye(len(cov))  # shrink: invertible, stable
    fit = Familiarity(mean, np.linalg.inv(cov), threshold=float("inf"), held_out=np.empty(0))
    held_out = fit.distances(features[held])
    return replace(fit, threshold=float(np.quantile(held_out, 0.99)), held_out=held_out)


# --- What the app serves cached (`views.serving.cached`): (model, card, vocabularies) first --------
# A picture is passed as the page's 64×64 input pixels (bytes and shape): the cache key, so the same
# picture is captioned, and placed among the training scenes, once.
def picture(pixels: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """The page's 64×64 picture, as raw bytes, as the model's input (1, 3, H, W)."""
    return model_input(Image.fromarray(np.frombuffer(pixels, dtype=np.uint8).reshape(shape)))[1]


def _served_captions(
    loaded, pixels: bytes, shape: tuple[int, int, int], beam: int, hidden: tuple[int, ...] = ()
) -> list[CaptionRun]:
    model, _, _, vocab = loaded
    return run(model, vocab, picture(pixels, shape), Interventions(hidden_keys=hidden), beam=beam)


def _served_features(loaded, pixels: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    return pooled_features(loaded[0], picture(pixels, shape))  # (1, C)


def _served_familiarity(loaded) -> Familiarity:
    return familiarity(loaded[0])


SERVED = {
    "captions": Served(_served_captions, max_entries=64),  # per beam size and set of hidden regions
    "features": Served(_served_features, max_entries=64),
    "familiarity": Served(_served_familiarity, spinner="Measuring where the training scenes lie (once)…"),
}
