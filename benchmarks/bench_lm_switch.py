"""Benchmark (not a test): the server's memory while visitors switch language models — the family's loader
(`families.llm.runner`: an LRU of two user models, the oldest dropped and its memory handed back before the
next loads, the shipped SmolLM2 pinned) against the same loader holding every model it ever loaded.

    python benchmarks/make_lms.py --out /tmp/lms --count 4     # four ~220 MB user models
    python benchmarks/bench_lm_switch.py --models /tmp/lms [--rounds 3]

Each variant runs in a fresh spawned process (its RSS its own), offering the shipped model and the
folder's (``ATTENTION_EXPLORER_LM_DIR``): it opens the shipped model, then visits every user model in turn,
``--rounds`` times, as a page does — the model through `views.serving.loaded_model`, one cached page run
of the default prompt — and samples the process's resident memory after each visit. Prints each variant's
RSS after the shipped model, after each round, and at most; and the float32 weights of one user model,
against which the bounded variant's growth is read (shipped + 2 user models, plus the runs' caches).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb(kind: str = "VmRSS") -> float:
    """Resident memory, MiB: all of it (VmRSS), or its anonymous part (RssAnon: what the process allocated,
    e.g. weights turned to float32), or its file-backed part (RssFile: files mapped, e.g. float32 safetensors
    read in place, which the kernel can drop and read again)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(f"{kind}:"))
    return int(line.split()[1]) / 1024


def visit(models: str, rounds: int, bounded: bool, threads: int) -> dict:
    """In a fresh process: the shipped model, then every user model ``rounds`` times; RSS after each."""
    os.environ["ATTENTION_EXPLORER_LM_DIR"] = models
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import streamlit.logger
    import torch

    streamlit.logger.set_log_level("error")  # the caches warn that no runtime is found here
    torch.set_num_threads(threads)
    from families import FAMILIES
    from families.llm import runner
    from models.attention import Interventions
    from views.serving import cached, loaded_model

    family = FAMILIES["llm"]
    if not bounded:  # the same loader, every model kept (what an unbounded cache would hold)
        runner.held.capacity = 10**6
    names = runner.catalog().names
    shipped, users = names[0], names[1:]

    def page_visit(name: str) -> None:
        loaded = loaded_model(family, name)
        prompt = runner.prepare(loaded, runner.EXAMPLE)
        cached(family, "run")(name, prompt.ids, Interventions(), None)
        gc.collect()

    start = rss_mb()
    page_visit(shipped)
    after_shipped = rss_mb()
    per_round, samples = [], []
    for _ in range(rounds):
        for name in users:
            page_visit(name)
            samples.append(rss_mb())
        per_round.append(samples[-1])
    parts = {kind: rss_mb(kind) for kind in ("RssAnon", "RssFile")}
    model = runner.open_lm(users[0]).model
    weights = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    return {"start": start, "shipped": after_shipped, "rounds": per_round, "max": max(samples),
            "users": len(users), "weights": weights, **parts}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", required=True, help="a folder of user models (benchmarks/make_lms.py)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {}
    for bounded in (True, False):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            results[bounded] = pool.apply(visit, (args.models, args.rounds, bounded, args.threads))
    first = results[True]
    print(f"{first['users']} user models of {first['weights']:.0f} MiB float32 weights each, visited "
          f"{args.rounds} times in turn after the shipped SmolLM2; the process's RSS, MiB:")  # fmt: skip
    for bounded, r in results.items():
        name = "LRU of 2 user models + shipped pinned" if bounded else "every model kept (unbounded)"
        rounds = " → ".join(f"{v:.0f}" for v in r["rounds"])
        grown = r["max"] - r["shipped"]
        print(f"  {name:<40} after shipped {r['shipped']:.0f}; after each round {rounds}; max {r['max']:.0f} "
              f"(+{grown:.0f} over the shipped model = {grown / r['weights']:.1f} × a user model's weights); "
              f"at the end anonymous {r['RssAnon']:.0f}, file-backed {r['RssFile']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
