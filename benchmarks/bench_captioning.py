"""Benchmark (not a test): caption + attention latency per image, greedy and beam.

python benchmarks/bench_captioning.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_seq2seq import median_ms  # noqa: E402
from families import load  # noqa: E402
from families.captioner.runner import run as run_captioner  # noqa: E402
from models.checkpoints import ASSETS  # noqa: E402
from tasks.images import load_upload, model_input  # noqa: E402


def main() -> None:
    model, card, _, v = load("captioner-scenes")
    sample = sorted((ASSETS / "samples").glob("*.png"))[0]
    data = sample.read_bytes()
    _, x = model_input(load_upload(data))
    print(f"upload decode + resize: {median_ms(lambda: model_input(load_upload(data))):.2f} ms")
    print(f"greedy caption + attention: {median_ms(lambda: run_captioner(model, v, x)):.2f} ms")
    print(f"beam 3 caption + attention: {median_ms(lambda: run_captioner(model, v, x, beam=3), 10):.2f} ms")
    print(
        f"training time (model card): {card['training_seconds']:.0f} s; test metrics: "
        f"{json.dumps({k: card['test'][k] for k in ('exact_match', 'bleu4', 'pointing_game')})}"
    )


if __name__ == "__main__":
    main()
