"""Measurements added to the model cards after training, one subcommand each; each writes its own
top-level card key (`models.checkpoints.write_entry`), so measurements never overwrite each other.

    python -m training.measure importance --family seq2seq              # every seq2seq checkpoint
    python -m training.measure importance --family captioner --n 200    # the captioner's card
    python -m training.measure diagonal-mass --family transformer       # weight on self, every layer
    python -m training.measure gradient-distance --family seq2seq       # gradient by distance

Which families a measurement reaches is theirs to say: each family declares its card measurements
(`analysis.family.Family.measurements`, measurement name → function). Add a kind of measurement as one
`Measurement` line in MEASUREMENTS.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.importance import CARD_KEY as IMPORTANCE_KEY
from analysis.projections import CARD_KEY as DIAGONAL_KEY
from families import FAMILIES
from models.checkpoints import ASSETS


def _importance_summary(name: str, entry: dict) -> str:
    summary = {m: round(v["mean"], 3) for m, v in entry["spearman"].items()}
    comparisons = entry.get("output_tokens", entry.get("comparisons"))
    return (f"{name}: {entry['examples']} examples, {comparisons} comparisons; mean Spearman with importance "
            f"{json.dumps(summary, ensure_ascii=False)}")  # fmt: skip


def _diagonal_summary(name: str, entry: dict) -> str:
    return "\n".join(
        f"{name} {block} ({e['n']} inputs): "
        + "; ".join(f"L{i}: raw {v['raw']:.3f}, raw ÷ √d {v['raw ÷ √d']:.3f}, heads {np.mean(v['heads']):.3f}"
                    for i, v in enumerate(e["layers"]))  # fmt: skip
        for block, e in entry.items()
    )


def _distance_summary(name: str, entry: dict) -> str:
    means = entry["mean_norm"]
    return (f"{name}: {entry['n']} examples, distances 0–{len(means) - 1}; mean gradient norm at distance 0 "
            f"{means[0]:.3g}, at {len(means) - 1} {means[-1]:.3g}")  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    """One kind of card measurement: its help line, the card key it writes, its inputs, its summary."""

    help: str
    card_key: str
    default_n: int  # held-out inputs when --n is not given
    min_n: int
    summary: Callable[[str, dict], str]  # (card name, entry written) → what the CLI prints


MEASUREMENTS: dict[str, Measurement] = {
    "importance": Measurement(
        "attention vs importance by ablation (card key 'attention_vs_importance')",
        IMPORTANCE_KEY, 200, 2, _importance_summary,
    ),
    "diagonal-mass": Measurement(
        "weight on self, softmax(XXᵀ) vs the learned heads (card key 'diagonal_mass')",
        DIAGONAL_KEY, 100, 1, _diagonal_summary,
    ),
    "gradient-distance": Measurement(
        "gradient of log p(y_t) wrt input i by distance |t − i| (card key 'gradient_by_distance')",
        "gradient_by_distance", 100, 1, _distance_summary,
    ),
}  # fmt: skip
# The top-level card keys the measurements add after training: a freshly trained card lacks them.
MEASURED_KEYS = frozenset(m.card_key for m in MEASUREMENTS.values())


def measured_by(measurement: str) -> list[str]:
    """The families that declare ``measurement``."""
    return sorted(name for name, f in FAMILIES.items() if measurement in f.measurements)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.measure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--folder", type=Path, default=ASSETS, help=f"checkpoints (default: {ASSETS})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    sub = parser.add_subparsers(dest="measurement", required=True, metavar="MEASUREMENT")
    for name, m in MEASUREMENTS.items():
        command = sub.add_parser(name, help=m.help)
        command.add_argument("--family", choices=measured_by(name), required=True)
        command.add_argument("--n", type=int, default=m.default_n,
                             help=f"held-out inputs (default {m.default_n})")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    measurement = MEASUREMENTS[args.measurement]
    if args.n < measurement.min_n:
        raise SystemExit(f"--n must be at least {measurement.min_n} held-out input(s), got {args.n}")
    torch.set_num_threads(max(1, args.threads))
    start = time.time()
    written = FAMILIES[args.family].measurements[args.measurement](args.n, args.folder)
    for name, entry in written.items():
        print(measurement.summary(name, entry))
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
