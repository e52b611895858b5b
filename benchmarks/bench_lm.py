"""Benchmark (not a test): "bring your own language model" — our decoder vs transformers' eager model on the
same checkpoint folder, in one process on the same threads, ratios against the issue's goals.

    python benchmarks/bench_lm.py [--threads 2] [--repeat 5] [--parts big,tiny] [--keep FOLDER]

Nothing is downloaded: the benchmark writes its own random-weight checkpoints (bfloat16 safetensors, as
the real ones ship) into a temporary folder.

1. ``big``: Qwen2.5-0.5B's shape (24 layers, d 896, 14 query / 2 K/V heads, vocabulary 151,936, tied):
   - load time: `open_checkpoint` vs transformers' ``from_pretrained`` (same folder, float32), and the RSS
     each adds to a fresh spawned process;
   - forward with every layer's attention maps at 64 and 512 tokens: ours (``return_trace=True,
     capture="weights"``) vs eager with ``output_attentions=True`` (goal: ours ≤ 1.2× theirs);
   - greedy generation, 32 new tokens after 64: ours (`Decoder.stream`, KV cache, each token's attention
     kept) vs ``generate(do_sample=False)`` (goal: ≥ 1.0× their tokens/s).
2. ``tiny``: every architecture at tests/lm_checkpoints.py's tiny shapes, the same two ratios (the forward at
   256 tokens).

Timed alternately (ours, theirs, ours, …) so a busy machine slows both alike; medians. On a shared,
oversubscribed machine give the tiny models ``--threads 1``: with 2 threads their milliseconds-long steps are
dominated by each op waiting at a thread barrier for a descheduled thread, on both sides, and the ratios swing
from 0.4 to 1.7 between runs; with 1 thread they repeat.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import alternate, rss_mb  # noqa: E402
from models.lm_checkpoint import open_checkpoint  # noqa: E402

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=32_768, rope_theta=1e6,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)  # fmt: skip
LENGTHS = (64, 512)
PROMPT, NEW_TOKENS = 64, 32
TINY_LENGTH = 256  # the tiny models' forward: long enough to be more than a few milliseconds
PARTS = ("big", "tiny")


def reference(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    ).eval()


def _load(which: str, folder: str, threads: int) -> tuple[float, float]:
    """(seconds, RSS MB added) of one load in this (fresh) process."""
    torch.set_num_threads(threads)
    import tokenizers  # noqa: F401  (imports are not the model's)
    import transformers  # noqa: F401

    before = rss_mb()
    start = time.perf_counter()
    model = (
        open_checkpoint(Path(folder), torch.device("cpu")).model
        if which == "ours"
        else reference(Path(folder))
    )
    seconds = time.perf_counter() - start
    assert model is not None
    return seconds, rss_mb() - before


def write_big(folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests import lm_checkpoints as lm

    torch.manual_seed(0)
    config = AutoConfig.for_model("qwen2", **QWEN25_05B)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    lm.save_tokenizer("qwen2", folder, lm.train_tokenizer(True))


def compare(ours, theirs, vocab: int, repeat: int, lengths=LENGTHS, label: str = "",
            generation: tuple[int, int] | None = (PROMPT, NEW_TOKENS)) -> list[str]:  # fmt: skip
    """Rows of forward-with-maps timings at each of ``lengths`` and of greedy generation (``generation``:
    (prompt tokens, new tokens); None: none), ours against theirs, timed alternately on random ids."""
    rows = []
    prompt_length, new_tokens = generation or (0, 0)
    longest = max((*lengths, prompt_length))
    ids_all = torch.randint(3, vocab, (1, longest), generator=torch.Generator().manual_seed(0))
    for n in lengths:
        ids = ids_all[:, :n]

        def a(ids=ids):
            with torch.inference_mode():
                ours(ids, return_trace=True, capture="weights")

        def b(ids=ids):
            with torch.inference_mode():
                theirs(ids, output_attentions=True)

        t_a, t_b = alternate(a, b, repeat)
        rows.append(f"{label:>8s} forward+maps {n:4d} tokens: ours {t_a:7.3f} s, theirs {t_b:7.3f} s, "
                    f"ratio {t_a / t_b:5.2f} (goal ≤ 1.2)")  # fmt: skip
    if generation is None:
        return rows
    prompt = ids_all[0, :prompt_length].tolist()

    def gen_a():
        assert len(list(ours.stream(prompt, new_tokens=new_tokens))) == new_tokens

    def gen_b():
        with torch.inference_mode():
            theirs.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            do_sample=False, eos_token_id=None, pad_token_id=0)  # fmt: skip

    t_a, t_b = alternate(gen_a, gen_b, max(2, repeat // 2))
    ours_rate, theirs_rate = new_tokens / t_a, new_tokens / t_b
    rows.append(f"{label:>8s} generation {new_tokens} after {prompt_length}: ours {ours_rate:6.1f} tok/s, "
                f"theirs {theirs_rate:6.1f} tok/s, ratio {t_b / t_a:5.2f} (goal ≥ 1.0)")  # fmt: skip
    return rows


def big(folder: Path, threads: int, repeat: int) -> None:
    if not (folder / "config.json").exists():
        start = time.perf_counter()
        write_big(folder)
        print(f"wrote a random Qwen2.5-0.5B-shaped checkpoint in {time.perf_counter() - start:.0f} s")
    ctx = multiprocessing.get_context("spawn")
    loads = {}
    for which in ("ours", "transformers", "ours", "transformers", "ours", "transformers"):
        with ctx.Pool(1) as pool:
            loads.setdefault(which, []).append(pool.apply(_load, (which, str(folder), threads)))
    for which, runs in loads.items():
        seconds = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        print(f"load {which:>12s}: {seconds:6.2f} s, RSS added {rss:6.0f} MB (median, {len(runs)} processes)")
    ours = open_checkpoint(folder, torch.device("cpu")).model
    theirs = reference(folder)
    weights = sum(p.numel() for p in ours.parameters()) * 4 / 2**20
    print(f"float32 weights: {weights:.0f} MiB")
    for row in compare(ours, theirs, ours.cfg.vocab, repeat, label="0.5B"):
        print(row)


def tiny(repeat: int) -> None:
    from tests import lm_checkpoints as lm

    tokenizers = {b: lm.train_tokenizer(b) for b in (True, False)}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in lm.TINY:
            folder = lm.write_checkpoint(arch, Path(tmp) / arch, tokenizers[arch in lm.BYTE_LEVEL])
            ours, theirs = open_checkpoint(folder, torch.device("cpu")).model, lm.reference(folder)
            for row in compare(ours, theirs, lm.VOCAB, repeat, lengths=(TINY_LENGTH,), label=arch):
                print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the 0.5B checkpoint here")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    if "big" in parts:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            big(args.keep, args.threads, args.repeat)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                big(Path(tmp), args.threads, args.repeat)
    if "tiny" in parts:
        tiny(args.repeat)


if __name__ == "__main__":
    main()
