"""Write small random user models for the language-model page's soak and memory benchmarks (not a test):

    python benchmarks/make_lms.py --out /tmp/lms                  # two "small" models, 211 MiB float32 each
    python benchmarks/make_lms.py --out /tmp/lms --count 4 --shape tiny

Then offer them: ``ATTENTION_EXPLORER_LM_DIR=/tmp/lms python benchmarks/bench_soak.py --pages llm`` (the
soak's sessions switch among the shipped SmolLM2 and these), or ``python benchmarks/bench_lm_switch.py
--models /tmp/lms`` (the server's memory while models are switched).

Each is a Hugging Face folder that transformers writes from random weights (nothing is downloaded) with
tests/lm_checkpoints.py's trained 512-token tokenizer, its architecture alternating Llama and Qwen 2 — both
with RoPE, so the soak's "RoPE (rotary positions)" checkbox exists on every model it opens. "small" is big
enough for its memory to show: d 512, 8 layers, 8 query / 2 K/V heads, a 32,000-token vocabulary (the
tokenizer uses the first 512 ids), untied, saved in bfloat16 as real checkpoints ship (so the app turns it
into 211 MiB of float32 in anonymous memory; float32 files would be mapped from the page cache instead);
"tiny" is the tests' 2-layer shape (float32).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lm_checkpoints as lm  # noqa: E402

ARCHS = ("llama", "qwen2")
SMALL = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=32_000, max_position_embeddings=2048,
             tie_word_embeddings=False)  # fmt: skip


def write(folder: Path, arch: str, shape: str, seed: int, tokenizer) -> Path:
    """One model: ``arch`` at ``shape`` with random weights (seeded), saved with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if shape == "tiny":
        return lm.write_checkpoint(arch, folder, tokenizer, seed=seed)
    torch.manual_seed(seed)
    tokens = dict(bos_token_id=0 if arch in lm.BYTE_LEVEL else 1, eos_token_id=2, pad_token_id=0)
    config = AutoConfig.for_model(arch, **SMALL, **tokens)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    lm.save_tokenizer(arch, folder, tokenizer)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="ATTENTION_EXPLORER_LM_DIR to be")
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--shape", choices=("small", "tiny"), default="small")
    args = parser.parse_args()
    tokenizers = {byte_level: lm.train_tokenizer(byte_level) for byte_level in (True, False)}
    for i in range(args.count):
        arch = ARCHS[i % len(ARCHS)]
        tokenizer = tokenizers[arch in lm.BYTE_LEVEL]
        folder = write(args.out / f"{args.shape}-{arch}-{i}", arch, args.shape, i, tokenizer)
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"wrote {folder} ({size / 1e6:.1f} MB on disk)")


if __name__ == "__main__":
    main()
