"""Benchmark (not a test): our BERT (forward + full attention capture) vs transformers' eager
BertModel with output_attentions=True, at 32 and 512 tokens, in the same run.

    python benchmarks/bench_bert.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_seq2seq import median_ms  # noqa: E402
from models.bert import default_folder, load_bert  # noqa: E402


def main() -> None:
    from transformers import BertModel

    ours = load_bert(default_folder())
    ref = BertModel.from_pretrained(str(default_folder()), attn_implementation="eager").eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'tokens':>6s} {'ours fwd':>10s} {'ours+trace':>11s} {'HF eager+attn':>14s} {'HF sdpa':>9s}")
    for n in (32, 512):
        ids = torch.randint(1000, 29000, (1, n))
        ids[0, 0], ids[0, -1] = 101, 102

        def ours_fwd(trace: bool, ids=ids):
            with torch.inference_mode():
                ours.model(ids, return_trace=trace)

        def hf(attn: bool, ids=ids):
            with torch.inference_mode():
                ref(input_ids=ids, output_attentions=attn)

        repeat = 20 if n == 32 else 5
        cols = [
            median_ms(lambda: ours_fwd(False), repeat),
            median_ms(lambda: ours_fwd(True), repeat),
            median_ms(lambda: hf(True), repeat),
            median_ms(lambda: hf(False), repeat),
        ]
        print(f"{n:6d} " + " ".join(f"{ms:9.1f}ms" for ms in cols))


if __name__ == "__main__":
    main()
