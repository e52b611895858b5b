"""Warm-up, measured: the pre-norm and post-norm twins trained with and without learning-rate
warm-up over a sweep of peak learning rates. The output is one JSON card, no weights.

    python -m training --experiment warmup --threads 1     # writes assets/warmup-dates.json

Every run is the shipped recipe (training/loop.py's `train`: Adam, gradient clipping at norm 1, the
same seed, the same training examples in the same batch order, the same initial weights for one
config) with only the peak learning rate and the schedule changed. For step t of T, peak η and
W warm-up steps:

    warm-up   η · (t + 1) / W                         for t < W   (linear, reaches η at t = W − 1)
              η · ½ (1 + cos(π (t − W) / (T − W)))    for t ≥ W   (cosine decay towards 0)
    none      the same with W = 0: starts at η, the same cosine decay over all T steps

A run *diverged* when its loss went non-finite or its final running loss ended above its first
one; it *learned nothing from the input* when its final loss is no better than the unigram
baseline (the cross-entropy of always predicting the training targets' token frequencies).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from families import FAMILIES
from tasks import TEST_SEED
from tasks.common import PAD_ID, Vocab
from training.loop import DATA, check, train

FAMILY = "transformer"
TWINS = {"h4": "pre", "h4-post": "post"}  # variant → norm placement: the dates transformer's twins
UNIGRAM_MARGIN = 0.05  # nats: a final loss within this of the unigram baseline learned nothing


@dataclass(frozen=True)
class WarmupExperiment:
    """The sweep: every twin × with/without warm-up × peak learning rate (× depth)."""

    task: str = "dates"  # one of the transformer's training tasks
    peak_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # Adam peaks, brackets the failures
    steps: int = 300  # per run: short runs, the first few hundred steps are where warm-up matters
    warmup_steps: int = 50  # W: linear ramp to the peak over the first W steps
    depths: tuple[int, ...] = (2, 6)  # n_layers per twin: 2 is the shipped size, 6 the original paper's
    deep_lrs: tuple[float, ...] = (3e-3, 1e-2)  # peaks for the depths beyond the first (3× the cost)
    seed: int = 0  # init and batch order (data seed = the task's offset + seed)
    n_train: int | None = None  # training examples (default: the preset's)
    n_test: int = 300  # held-out test examples scored per run (exact match, greedy decoding)
    log_every: int = 10  # loss-curve spacing in steps

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"warmup_steps must be in [0, steps): got {self.warmup_steps} with steps {self.steps}; "
                "lower --warmup-steps or raise --steps."
            )
        if not self.peak_lrs or min(self.peak_lrs) <= 0:
            raise ValueError(f"peak learning rates must be positive, got {self.peak_lrs}.")
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be at least 1 layer, got {self.depths}.")


def lr_multiplier(step: int, *, steps: int, warmup: int) -> float:
    """The schedule as a multiplier of the peak at ``step`` (0-based) of ``steps``: a linear ramp
    over ``warmup`` steps (none when 0), then cosine decay from the peak towards 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def schedule(steps: int, warmup: int):
    """``lr_multiplier`` as the step → multiplier function `train` hands to `LambdaLR`."""
    return partial(lr_multiplier, steps=steps, warmup=warmup)


def card_name(task: str) -> str:
    return f"warmup-{task}"


def unigram_loss(task: str, seed: int, n_train: int | None) -> float:
    """Cross-entropy (nats) of predicting every target token by its training frequency: the loss of
    a model that ignores its input. The targets are the loop's own (``batch[-1]``, padding left out)."""
    data = DATA[task]
    items = data.generate(n_train or _preset(task)["n_train"], data.seed_offset + seed, "train")
    src_vocab, tgt_vocab = data.vocabularies(items)
    targets = data.batch(items, src_vocab, tgt_vocab, torch.device("cpu"))[-1]  # (N, T)
    counts = torch.bincount(targets[targets != PAD_ID]).double()  # (V,)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _preset(task: str) -> dict:
    return check(FAMILIES[FAMILY], task, "h4").TRAINING[task]


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN or inf: a non-finite loss is written as null."""
    return x if math.isfinite(x) else None


def run_one(
    exp: WarmupExperiment, variant: str, peak: float, warmup: bool, layers: int, test: list, unigram: float
) -> dict:
    """One run of the sweep: train, score the first ``exp.n_test`` test examples, flag failures."""
    # 1) Train with the shipped recipe, this peak and this schedule (no val/test inside `train`).
    warmup_steps = exp.warmup_steps if warmup else 0
    cpu_start = time.process_time()
    model, card = train(
        FAMILIES[FAMILY],
        exp.task,
        variant,
        seed=exp.seed,
        steps=exp.steps,
        n_train=exp.n_train,
        progress=False,
        evaluate_splits=False,
        lr=peak,
        schedule=schedule(exp.steps, warmup_steps),
        log_every=exp.log_every,
        config_overrides={"n_layers": layers},
    )
    # 2) Held-out exact match through the task's own Data line (greedy decoding).
    data, preset = DATA[exp.task], _preset(exp.task)
    src_vocab, tgt_vocab = Vocab(tuple(card["src_vocab"])), Vocab(tuple(card["tgt_vocab"]))
    scores = data.evaluate(model, test, src_vocab, tgt_vocab, preset.get("max_len"))
    cpu_seconds = time.process_time() - cpu_start
    # 3) The curve (with the learning rate each logged step used) and the failure flags.
    steps = [p["step"] for p in card["loss_curve"]]
    losses = [p["loss"] for p in card["loss_curve"]]
    final = losses[-1]
    diverged = not all(math.isfinite(x) for x in losses) or final > losses[0]
    return {
        "variant": variant,
        "norm": TWINS[variant],
        "n_layers": layers,
        "warmup": warmup,
        "warmup_steps": warmup_steps,
        "peak_lr": peak,
        "config": asdict(model.cfg),
        "params": card["params"],
        "curve": {
            "step": steps,
            "loss": [_finite_or_none(x) for x in losses],
            "lr": [peak * lr_multiplier(s, steps=exp.steps, warmup=warmup_steps) for s in steps],
        },
        "final_loss": _finite_or_none(final),
        "test": {k: scores[k] for k in ("n", "exact_match", "token_accuracy")},
        "diverged": diverged,
        "no_better_than_unigram": diverged or final >= unigram - UNIGRAM_MARGIN,
        "training_seconds": card["training_seconds"],
        "device": card["device"],
        "cpu_seconds": round(cpu_seconds, 1),
    }


def plan_runs(exp: WarmupExperiment) -> list[tuple[str, float, bool, int]]:
    """(variant, peak, warm-up?, layers) for every run: all peaks at the first depth, ``deep_lrs``
    at the others."""
    runs = []
    for i, layers in enumerate(exp.depths):
        for peak in exp.peak_lrs if i == 0 else exp.deep_lrs:
            for variant in TWINS:
                for warmup in (True, False):
                    runs.append((variant, peak, warmup, layers))
    return runs


def run(exp: WarmupExperiment, *, progress: bool = True, command: str = "") -> dict:
    """Every run of the sweep, in one card (curves, final losses, exact match, flags, timing)."""
    # 1) What every run shares: the data, the held-out examples, the baseline, the schedules.
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    preset, data = _preset(exp.task), DATA[exp.task]
    test = data.generate(exp.n_test, TEST_SEED, "test")
    unigram = unigram_loss(exp.task, exp.seed, exp.n_train)
    # 2) The sweep, one progress bar over the runs.
    runs = []
    bar = tqdm(plan_runs(exp), desc=f"warm-up sweep ({exp.task})", disable=not progress)
    for variant, peak, warmup, layers in bar:
        bar.set_postfix_str(f"{TWINS[variant]}-norm L{layers} lr {peak:g} {'warm-up' if warmup else 'none'}")
        runs.append(run_one(exp, variant, peak, warmup, layers, test, unigram))
    # 3) The card.
    return {
        "kind": "warmup-experiment",
        "name": card_name(exp.task),
        "family": FAMILY,
        "task": exp.task,
        "twins": TWINS,
        "seed": exp.seed,
        "data_seed": data.seed_offset + exp.seed,
        "test_seed": TEST_SEED,
        "n_train": exp.n_train or preset["n_train"],
        "n_test": exp.n_test,
        "steps": exp.steps,
        "batch": preset["batch"],
        "optimizer": "Adam (betas 0.9, 0.999), gradient clipping at norm 1.0, as in training/loop.py",
        "schedule": {
            "warmup_steps": exp.warmup_steps,
            "definition": (
                "warm-up: peak·(t+1)/W for t < W, then peak·½(1+cos(π(t−W)/(T−W))); "
                "none: the same with W = 0 (starts at the peak, the same cosine decay)"
            ),
            "multiplier": {
                label: [lr_multiplier(t, steps=exp.steps, warmup=w) for t in range(exp.steps)]
                for label, w in (("warmup", exp.warmup_steps), ("none", 0))
            },
        },
        "peak_lrs": list(exp.peak_lrs),
        "depths": list(exp.depths),
        "deep_lrs": list(exp.deep_lrs),
        "unigram_loss": unigram,
        "failure_rules": {
            "diverged": "a non-finite loss, or a final running loss above the first one",
            "no_better_than_unigram": f"final running loss ≥ the unigram baseline − {UNIGRAM_MARGIN} nats",
            "final_loss": "the running mean (EMA, 0.95) of the training cross-entropy at the last step",
        },
        "runs": runs,
        "training_seconds": round(sum(r["training_seconds"] for r in runs), 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": runs[0]["device"],
        },
        "command": command,
    }


def write_card(card: dict, folder: Path) -> Path:
    """The card as ``<folder>/warmup-<task>.json``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{card['name']}.json"
    path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
