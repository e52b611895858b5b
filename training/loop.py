"""The one training loop every trainable family shares; `python -m training` is its CLI.

A family is trained here when its registry entry names its network module (`Family.training`).
That module holds, as pure torch and data, everything that differs between families:
  TRAINING           task → preset: n_train, steps, batch, lr, config (widths), optional max_len
                     (decoding length for the val/test metrics; default the task's)
  VARIANTS           variant → the config fields it sets
and, only where the default does not fit:
  training_loss      (model, batch) → (loss to optimise, cross-entropy to show)
                     (default: cross-entropy of model(*batch[:-1]) against batch[-1], padding ignored)
  training_config    (task, variant, src_vocab size, tgt_vocab size) → the network's config
                     (default: config(src_vocab=…, tgt_vocab=…, **preset config, **variant fields))
  card_fields        (task, variant) → the family's own model-card fields (default: none)
so adding a family needs no edit here. A task takes part through `DATA` below: its generator, data
seed, vocabularies, batches (built in tasks/) and metrics (training/evaluate.py).

Seeded end to end (data, init, batch order); seed 0 and the data seeds are the shipped checkpoints'.
The test split (fixed seed, disjoint from training by construction) is only ever evaluated.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from analysis.family import Family
from models.checkpoints import checkpoint_name
from models.device import pick_device
from tasks import TASKS, TEST_SEED, TEST_SIZE, Task, scenes, stdlib
from tasks.batching import batch_scenes, batch_tensors, scene_vocabularies, text_vocabularies
from tasks.common import PAD_ID, Vocab
from training.evaluate import evaluate_captions, evaluate_lm, evaluate_text

VAL_SIZE = 300  # validation examples per card (the test split has tasks.TEST_SIZE)
REQUIRED = ("TRAINING", "VARIANTS")


@dataclass(frozen=True)
class Data:
    """What the loop needs from a task, whatever its items are (text examples, scenes)."""

    generate: Callable[[int, int, str], list]  # (n, seed, split) → items, the first n of a fixed stream
    seed_offset: int  # data seed = offset + training seed (the shipped checkpoints used these)
    vocabularies: Callable[[Sequence], tuple[Vocab, Vocab]]  # training items → (source, target)
    batch: Callable[[Sequence, Vocab, Vocab, torch.device], tuple[Tensor, ...]]  # → training_loss
    evaluate: Callable[[nn.Module, Sequence, Vocab, Vocab, int | None], dict]  # → card metrics


def _text(task: Task) -> Data:
    return Data(
        generate=task.generate,
        seed_offset=1000,
        vocabularies=text_vocabularies,
        batch=batch_tensors,
        evaluate=lambda model, items, sv, tv, max_len: evaluate_text(
            model, items, task, sv, tv, max_len=max_len
        ),
    )


DATA: dict[str, Data] = {
    **{name: _text(task) for name, task in TASKS.items()},
    "scenes": Data(
        generate=scenes.generate,
        seed_offset=2000,
        vocabularies=scene_vocabularies,
        batch=lambda items, _sv, tv, device: batch_scenes(items, tv, device, regions=True),
        evaluate=lambda model, items, _sv, tv, max_len: evaluate_captions(model, items, tv, max_len=max_len),
    ),
    "stdlib": Data(
        generate=stdlib.generate,
        seed_offset=3000,
        vocabularies=stdlib.vocabularies,
        batch=lambda items, _sv, _tv, device: stdlib.batch(items, device),
        evaluate=lambda model, items, _sv, _tv, _max_len: evaluate_lm(model, items),
    ),
}


def recipe(family: Family) -> ModuleType:
    """The family's training module; ValueError (with the fix) when it has none or lacks a name."""
    module = family.training
    if module is None:
        raise ValueError(
            f"{family.title} ({family.name}) is not trained here: its registry entry has no training module."
        )
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise ValueError(
            f"{module.__name__} lacks {', '.join(missing)}: add them to it (see training/loop.py) to train "
            f"the {family.name} family."
        )
    return module


def cross_entropy(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """The default loss: teacher-forced cross-entropy of ``model(*batch[:-1])`` against ``batch[-1]``
    over the real target tokens (padding ignored) — both what is optimised and what is shown."""
    *inputs, targets = batch
    logits, _ = model(*inputs)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
    return ce, ce


def _config(family: Family, module: ModuleType, task: str, variant: str, n_src: int, n_tgt: int):
    """The network's config for a preset: the module's own `training_config`, else the default."""
    if hasattr(module, "training_config"):
        return module.training_config(task, variant, n_src, n_tgt)
    return family.config(
        src_vocab=n_src, tgt_vocab=n_tgt, **module.TRAINING[task]["config"], **module.VARIANTS[variant]
    )


def check(family: Family, task: str, variant: str) -> ModuleType:
    """``recipe`` plus the task and variant; ValueError listing the valid ones."""
    module = recipe(family)
    if task not in module.TRAINING:
        raise ValueError(f"{family.name} trains on task {', '.join(module.TRAINING)}; got {task!r}.")
    if task not in DATA:
        raise ValueError(f"task {task!r} has no data for training: add it to DATA in training/loop.py.")
    if variant not in module.VARIANTS:
        raise ValueError(f"{family.name} variants are {', '.join(module.VARIANTS)}; got {variant!r}.")
    return module


def name_of(family: Family, task: str, variant: str) -> str:
    """The checkpoint name: a family's only variant is left out of it (captioner-scenes)."""
    return checkpoint_name(family.name, task, variant if len(recipe(family).VARIANTS) > 1 else None)


def grad_norms(model: nn.Module) -> dict[str, float]:
    """Gradient L2 norm per layer (parameters grouped by name up to the layer index)."""
    sums: dict[str, float] = defaultdict(float)
    for name, p in model.named_parameters():
        if p.grad is not None:
            parts = name.split(".")
            group = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
            sums[group] += float(p.grad.pow(2).sum())
    return {k: round(v**0.5, 6) for k, v in sums.items()}


def train(
    family: Family,
    task: str,
    variant: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    n_train: int | None = None,
    n_eval: int | None = None,
    progress: bool = True,
    evaluate_splits: bool = True,
    lr: float | None = None,
    schedule: Callable[[int], float] | None = None,
    log_every: int = 50,
    config_overrides: Mapping[str, object] | None = None,
) -> tuple[nn.Module, dict]:
    """Train one checkpoint; returns the model (eval mode) and its card, with val/test metrics if
    asked (on the first ``n_eval`` examples of each split when given: a smoke run, not a card).

    For experiments (training/warmup.py): ``lr`` replaces the preset's peak learning rate,
    ``schedule`` (step → multiplier of that peak) replaces the default one-cycle schedule,
    ``log_every`` sets the loss-curve spacing and ``config_overrides`` changes config fields (e.g.
    ``n_layers``). Left out, the shipped checkpoints' recipe is unchanged."""
    # 1) The family's recipe, the task's data, the preset (steps and n_train may be overridden).
    module = check(family, task, variant)
    preset, data = module.TRAINING[task], DATA[task]
    steps, n_train = steps or preset["steps"], n_train or preset["n_train"]
    peak_lr = lr or preset["lr"]
    if n_train < preset["batch"]:
        raise ValueError(f"n_train ({n_train}) is below the batch size ({preset['batch']}): raise it.")
    data_seed = data.seed_offset + seed
    train_set = data.generate(n_train, data_seed, "train")
    src_vocab, tgt_vocab = data.vocabularies(train_set)
    # 2) The seeded model (CLI process only: the app never reseeds torch).
    torch.manual_seed(seed)
    device = pick_device()
    config = _config(family, module, task, variant, len(src_vocab), len(tgt_vocab))
    config = replace(config, **config_overrides) if config_overrides else config
    model = family.network(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=peak_lr)
    if schedule is None:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak_lr, total_steps=steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    # 3) The loop: seeded batch order, per-layer gradient norms before clipping (what each layer
    #    really got), the running cross-entropy on the bar and in the curve every ``log_every`` steps.
    rng = random.Random(seed)
    history: list[dict] = []
    start, running = time.perf_counter(), None
    bar = tqdm(range(steps), desc=name_of(family, task, variant), disable=not progress)
    for step in bar:
        model.train()
        batch = data.batch(rng.sample(train_set, preset["batch"]), src_vocab, tgt_vocab, device)
        loss, ce = getattr(module, "training_loss", cross_entropy)(model, batch)
        opt.zero_grad()
        loss.backward()
        log = step % log_every == 0 or step == steps - 1
        norms = grad_norms(model) if log else None
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = ce.item() if running is None else 0.95 * running + 0.05 * ce.item()
        if log:
            bar.set_postfix(loss=f"{running:.3f}")
            history.append({"step": step, "loss": round(running, 5), "grad_norms": norms})
    model.eval()
    # 4) The card: what was trained, how, and on what (save_checkpoint adds name and config).
    card = {
        "kind": family.name,
        "task": task,
        "variant": variant,
        **(module.card_fields(task, variant) if hasattr(module, "card_fields") else {}),
        "seed": seed,
        "data_seed": data_seed,
        "test_seed": TEST_SEED,
        "n_train": n_train,
        "steps": steps,
        "batch": preset["batch"],
        "lr": peak_lr,
        "params": sum(p.numel() for p in model.parameters()),
        "training_seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
        "loss_curve": history,
        "src_vocab": list(src_vocab.tokens),
        "tgt_vocab": list(tgt_vocab.tokens),
    }
    # 5) Validation and the held-out test split, decoded greedily.
    if evaluate_splits:
        max_len = preset.get("max_len")
        val = data.generate(min(VAL_SIZE, n_eval or VAL_SIZE), data_seed + 1, "val")
        test = data.generate(min(TEST_SIZE, n_eval or TEST_SIZE), TEST_SEED, "test")
        card["val"] = data.evaluate(model, val, src_vocab, tgt_vocab, max_len)
        card["test"] = data.evaluate(model, test, src_vocab, tgt_vocab, max_len)
    return model, card
