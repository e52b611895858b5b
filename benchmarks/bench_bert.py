"""Benchmark (not a test): our BERT with the attention the views need vs transformers' eager
BertModel with output_attentions=True, in the same process, at 32, 128 and 512 tokens.

    python benchmarks/bench_bert.py

Per length: forward time without capture, with the views' capture (every layer's softmax weights),
with full capture (scores too), and HF eager with attentions; the ratio views/HF; the peak extra
memory of the views' capture (a forked child's peak RSS with capture minus without) against the
size of the attention maps themselves; and the size of a cached page run at 64 tokens.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_seq2seq import median_ms  # noqa: E402
from families.bert.runner import encode, run  # noqa: E402
from models.bert import default_folder, load_bert  # noqa: E402

LENGTHS = (32, 128, 512)


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])


def _peak_growth_mb(n: int, capture: bool) -> float:
    """In a fresh process: load the model, warm up, reset the peak-RSS mark (Linux clear_refs 5),
    run one forward (keeping its result alive) and return peak RSS minus the RSS before it, in MB."""
    loaded = load_bert(default_folder())
    ids = torch.randint(1000, 29000, (1, n))
    with torch.inference_mode():
        loaded.model(ids)  # warm up: allocator pools and kernels, as a running server has them
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kb("VmRSS:")
        out = loaded.model(ids, return_trace=capture, capture="weights")
        peak = _status_kb("VmHWM:")
    del out
    return (peak - before) / 1024


def capture_peak_mb(n: int) -> float:
    """Peak extra memory of the views' capture: peak growth with it minus without (fresh processes;
    spawned, not forked — a forked child of a threaded torch process can deadlock)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        with_capture = pool.apply(_peak_growth_mb, (n, True))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        without = pool.apply(_peak_growth_mb, (n, False))
    return with_capture - without


def main() -> None:
    from transformers import BertModel

    ours = load_bert(default_folder())
    ref = BertModel.from_pretrained(str(default_folder()), attn_implementation="eager").eval()
    cfg = ours.config
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'tokens':>6s} {'ours fwd':>9s} {'ours+maps':>10s} {'ours+all':>9s} {'HF eager+attn':>14s} "
        f"{'maps/HF':>8s} {'maps MB':>8s} {'capture peak MB':>16s} {'peak/maps':>10s}"
    )
    for n in LENGTHS:
        ids = torch.randint(1000, 29000, (1, n))
        ids[0, 0], ids[0, -1] = 101, 102

        def ours_fwd(trace: bool, capture: str = "weights", ids=ids):
            with torch.inference_mode():
                ours.model(ids, return_trace=trace, capture=capture)

        def hf(ids=ids):
            with torch.inference_mode():
                ref(input_ids=ids, output_attentions=True)

        repeat = 20 if n <= 128 else 7
        plain = median_ms(lambda: ours_fwd(False), repeat)
        maps = median_ms(lambda: ours_fwd(True), repeat)
        full = median_ms(lambda: ours_fwd(True, "full"), repeat)
        reference = median_ms(hf, repeat)
        maps_mb = cfg.num_hidden_layers * cfg.num_attention_heads * n * n * 4 / 2**20
        extra = capture_peak_mb(n)
        print(
            f"{n:6d} {plain:7.1f}ms {maps:8.1f}ms {full:7.1f}ms {reference:12.1f}ms {maps / reference:8.2f} "
            f"{maps_mb:8.1f} {extra:16.1f} {extra / maps_mb:10.2f}"
        )
    text = " ".join(["word"] * 62)  # 62 word pieces + [CLS] + [SEP] = 64 tokens
    enc = encode(ours, text)
    size = len(pickle.dumps((enc, run(ours, enc)))) / 2**20
    print(f"cached page run at {len(enc.tokens)} tokens: {size:.2f} MB (target ≤ 10 MB)")


if __name__ == "__main__":
    main()
