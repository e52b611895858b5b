"""Benchmark: one GRU layer vs one self-attention layer (models.attention.MultiHeadAttention) of the
same width, timed at several sequence lengths, with the counts that explain the times.

    python benchmarks/bench_parallel.py                          # 16 … 8192, writes the shipped table
    python benchmarks/bench_parallel.py --lengths 4 8 --repeats 2 --out /tmp/tiny.json   # a CI run

Prints the table and writes it as JSON (default: assets/sequential-vs-parallel.json, which the
Seq2seq page's "Sequential vs parallel" tab draws) with the machine, torch threads, torch version
and date. Times are medians of --repeats calls after one warm-up; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from families.seq2seq.parallel import LENGTHS, TABLE_PATH, ParallelTable, measure  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_parallel.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS), help="sequence lengths")
    parser.add_argument("--width", type=int, default=64, help="d: GRU input/hidden size, attention d_model")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--batch", type=int, default=1, help="sequences per call (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", type=Path, default=TABLE_PATH, help=f"JSON file (default: {TABLE_PATH})")
    return parser


def format_table(table: ParallelTable) -> str:
    """The table as fixed-width text, then where self-attention becomes slower."""
    head = (
        f"{'n':>5} {'GRU fwd ms':>11} {'attn fwd ms':>12} {'GRU f+b ms':>11} {'attn f+b ms':>12} "
        f"{'steps':>9} {'path':>9} {'GRU MACs':>11} {'attn MACs':>11}"
    )
    lines = [
        f"d={table.width}, {table.heads} heads, batch {table.batch}, median of {table.repeats}; "
        f"{table.device}, {table.torch_threads} torch threads, torch {table.torch_version}",
        table.machine,
        head,
    ]
    for r in table.rows:
        lines.append(
            f"{r.length:5d} {r.gru_forward_ms:11.3f} {r.attention_forward_ms:12.3f} "
            f"{r.gru_forward_backward_ms:11.3f} {r.attention_forward_backward_ms:12.3f} "
            f"{f'{r.gru_sequential_steps} vs {r.attention_sequential_steps}':>9} "
            f"{f'{r.gru_longest_path} vs {r.attention_longest_path}':>9} "
            f"{r.gru_multiply_adds:11,d} {r.attention_multiply_adds:11,d}"
        )
    for mode in ("forward", "forward_backward"):
        n = table.crossover(mode)
        where = f"from n = {n} on" if n is not None else "not within the measured lengths"
        lines.append(f"self-attention slower than the GRU ({mode.replace('_', ' + ')}): {where}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> ParallelTable:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        table = measure(
            sorted(set(args.lengths)),
            width=args.width,
            heads=args.heads,
            batch=args.batch,
            repeats=args.repeats,
            device=args.device,
            progress=lambda fraction, message: print(f"  {fraction:4.0%} {message}", file=sys.stderr),
        )
    except ValueError as err:
        parser.error(str(err))
    print(format_table(table))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table.to_json(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
