"""Benchmark (not a test): the circuit tools of issue 26 on a 20-token IOI pair, on the real LLM and on
our GPT, against the issue's goals, with a plain forward of the same prompt timed in the same run.

    python benchmarks/bench_circuits.py [--threads 2] [--repeat 3]

Goals (2 cores): the LLM — residual patching over all layers × positions ≤ 10 s, every head (270)
≤ 15 s, attribution patching ≤ 1 s, logit lens and direct attribution ≤ 0.5 s; the GPT — each ≤ 1 s.
Medians of ``--repeat`` runs (the sweeps: of ``min(repeat, 2)``); the machine's load average is printed,
since a shared machine's absolute times drift: the ratio to a traced forward is the steadier number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import circuits as C  # noqa: E402
from analysis import patching as P  # noqa: E402
from families.gpt import runner as gpt  # noqa: E402
from tasks import probes  # noqa: E402

GOALS = {"llm": {"forward (traced)": None, "logit lens": 0.5, "direct attribution": 0.5,
                 "attribution patching": 1.0, "residual patching (layers × positions)": 10.0,
                 "every head patched": 15.0},
         "gpt": {"forward (traced)": None, "logit lens": 1.0, "direct attribution": 1.0,
                 "attribution patching": 1.0, "residual patching (layers × positions)": 1.0,
                 "every head patched": 1.0}}  # fmt: skip


# The first held-out IOI template with "all day" added: 20 tokens for SmolLM2 (the templates have 13–18).
TWENTY_TOKENS = "Then, {io} and {s} were working at the office all day. {s} decided to give a file to"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, clean_ids, corrupt_ids, pair: C.Pair, repeat: int) -> dict[str, float]:
    clean, corrupt = C.forward(model, clean_ids, pair), C.forward(model, corrupt_ids, pair)
    sweeps = max(1, min(repeat, 2))
    return {
        "forward (traced)": median_time(lambda: C.forward(model, clean_ids, pair), repeat),
        "logit lens": median_time(lambda: C.logit_lens(model, clean, pair), repeat),
        "direct attribution": median_time(lambda: C.direct_attribution(model, clean, pair), repeat),
        "attribution patching": median_time(
            lambda: P.attribution_patching(model, clean, corrupt, pair), repeat),
        "residual patching (layers × positions)": median_time(
            lambda: P.residual_sweep(model, clean, corrupt, pair), sweeps),
        "every head patched": median_time(lambda: P.head_sweep(model, clean, corrupt, pair), sweeps),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from models.llama import load

    llm, tokenizer, _ = load(device=torch.device("cpu"))
    c = probes.ioi(TWENTY_TOKENS, "David", "Michael", "Emma")
    ids, corrupt = (tokenizer.encode(t).ids for t in (c.prompt, c.corrupt))
    assert len(ids) == len(corrupt) == 20, "the goals are for a 20-token pair: mend TWENTY_TOKENS"
    word = {w: tokenizer.encode(" " + w).ids[0] for w in (c.target, c.rival)}
    pair = C.Pair(word[c.target], word[c.rival])
    results = {"llm": (len(ids), measure(llm, ids, corrupt, pair, args.repeat))}
    loaded = gpt.load()
    small, bpe = loaded.model, loaded.vocabulary.tokenizer
    code = probes.CODE[0]
    g_ids, g_corrupt = (gpt.prepare(loaded, t).ids for t in (code.prompt, code.corrupt))
    g_pair = C.Pair(bpe.encode(code.target).ids[0], bpe.encode(code.rival).ids[0])
    results["gpt"] = (len(g_ids), measure(small, g_ids, g_corrupt, g_pair, args.repeat))
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f} (1 min)")
    for family, (tokens, times) in results.items():
        base = times["forward (traced)"]
        print(f"\n{family}: {tokens}-token pair")
        print(f"{'measure':42} {'seconds':>8} {'× forward':>10} {'goal':>8}")
        for name, seconds in times.items():
            goal = GOALS[family][name]
            verdict = "" if goal is None else ("  met" if seconds <= goal else "  missed")
            print(f"{name:42} {seconds:8.3f} {seconds / base:10.1f} {goal or '':>8}{verdict}")


if __name__ == "__main__":
    main()
