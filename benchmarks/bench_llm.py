"""Benchmark (not a test): SmolLM2-135M-Instruct on our core vs transformers' LlamaForCausalLM on the same
GGUF, in one process on the same threads, with ratios against the issue's goals.

    python benchmarks/bench_llm.py [--threads 2] [--repeat 5] [--parts forward,generation,rss,cached-run]

1. Forward with every layer's attention weights at 64 and 512 tokens: ours (``return_trace=True,
   capture="weights"``) vs HF eager with ``output_attentions=True`` (goal: ours ≤ 1.2× HF).
   Timed alternately (ours, HF, ours, …) so a busy machine slows both alike; medians.
2. Generation, greedy, 64 new tokens after a 32-token prompt: ours (`Llama.stream`, KV cache, each
   token's attention kept) vs HF ``generate(do_sample=False)`` with its cache (goal ≥ 1.0×).
3. RSS the model adds to a fresh process (spawned: the app's imports done, then `load`; goal ≤ 700 MB).
4. A cached run at 128 tokens: what the page's "run" cache holds for one prompt (`families.llm.runner.run`
   with every layer's maps, as `page_layers` keeps them up to 128 tokens): its numpy arrays' bytes,
   and the Python objects around them (token labels, tuples) beside them (goal ≤ 20 MB).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.lm import Prompt  # noqa: E402
from benchmarks.bench_lm import compare  # noqa: E402
from benchmarks.timing import rss_mb  # noqa: E402
from models.llama import gguf_path, load  # noqa: E402

LENGTHS = (64, 512)
NEW_TOKENS, PROMPT = 64, 32
CACHED_RUN = 128  # tokens of the cached run measured (the page keeps every layer's maps up to here)
PARTS = ("forward", "generation", "rss", "cached-run")


def _model_rss(threads: int) -> float:
    torch.set_num_threads(threads)
    import gguf  # noqa: F401  (imports are the app's, not the model's: torchvision, as app.py has it,
    import tokenizers  # noqa: F401  brings torch's meta kernels, which the model's loader uses)
    import torchvision  # noqa: F401

    gc.collect()
    before = rss_mb()
    model, _, _ = load(device=torch.device("cpu"))
    gc.collect()
    return rss_mb() - before


def held_bytes(value, seen: set[int] | None = None) -> tuple[int, int]:
    """(numpy bytes, other Python objects' bytes) reachable from a run: dataclass fields, dicts,
    tuples and lists walked, each object counted once."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0, 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes, sys.getsizeof(value) - value.nbytes * value.flags.owndata
    parts = []
    if dataclasses.is_dataclass(value):
        parts = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        parts = [*value.keys(), *value.values()]
    elif isinstance(value, tuple | list):
        parts = list(value)
    arrays, other = 0, sys.getsizeof(value)
    for part in parts:
        a, o = held_bytes(part, seen)
        arrays, other = arrays + a, other + o
    return arrays, other


def cached_run(model, tokenizer, meta, ids: list[int]) -> None:
    from families.llm import runner as llama

    loaded = llama.loaded_from(model, tokenizer, meta)
    assert llama.page_layers(model.cfg, len(ids), 0) is None  # the page keeps all 30 layers at this length
    run = llama.run(loaded, Prompt(tuple(ids)), layers=None)
    arrays, other = held_bytes(run)
    shapes = {f.name: getattr(run, f.name).shape for f in dataclasses.fields(run)
              if isinstance(getattr(run, f.name), np.ndarray)}  # fmt: skip
    print(f"\na cached run at {len(ids)} tokens, all {model.cfg.n_layers} layers' maps "
          f"{run.maps['self'].weights.shape}: numpy arrays {arrays / 2**20:.2f} MiB "
          f"({arrays / 1e6:.2f} MB), other Python objects {other / 2**20:.2f} MiB  goal ≤ 20 MB")  # fmt: skip
    print(f"  other arrays: {shapes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model, tokenizer, meta = load(device=device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    ids_all = torch.randint(1000, 40000, (1, max(LENGTHS)), generator=torch.Generator().manual_seed(0))
    if "cached-run" in parts:
        cached_run(model, tokenizer, meta, ids_all[0, :CACHED_RUN].tolist())
    if parts & {"forward", "generation"}:
        compare_with_hf(model, args.repeat, parts)
    if "rss" in parts:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            added = pool.apply(_model_rss, (args.threads,))
        weights = sum(p.numel() for p in model.parameters()) * 4 / 2**20
        print(f"\nRSS added by loading the model (fresh process): {added:.0f} MB  goal ≤ 700 "
              f"(the float32 weights alone: {weights:.0f} MB)")  # fmt: skip


def compare_with_hf(model, repeat: int, parts: set[str]) -> None:
    """Our forward with maps and our generation against transformers' on the same GGUF
    (`benchmarks.bench_lm.compare`, the same rows as for any other checkpoint)."""
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    lengths = LENGTHS if "forward" in parts else ()
    generation = (PROMPT, NEW_TOKENS) if "generation" in parts else None
    print()
    for row in compare(model, ref, model.cfg.vocab, repeat, lengths, "SmolLM2", generation):
        print(row)


if __name__ == "__main__":
    main()
