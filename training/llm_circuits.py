"""The IOI circuit of SmolLM2, found without code and written to its card:

    python -m training.llm_circuits            # adds "ioi_circuit" to assets/smollm2-135m-instruct.json

Found on the preset prompts (the page's: 3 templates × their names), checked on the held-out ones
(templates and names the presets never use). Name movers are the heads whose direct effect on
logit(indirect object) − logit(subject) is large and positive on the preset prompts (a mean of at
least share_min of the mean logit difference) and which attend from the last position to the
indirect object more than to the subject. On the held-out set: each found head's mean direct effect
and attention, and the logit difference with the found heads ablated together — mean-ablated (their
context replaced by its mean over every position of the preset prompts' corrupted twins, where no name
repeats) and zero-ablated — as the share of the logit difference removed. The numbers are whatever the
model gives; nothing is tuned to them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from analysis import circuits as C
from analysis import patching as P
from models.checkpoints import update_card
from models.llama import Llama, load
from tasks import probes
from training.llm_card import CARD, IOI_HELD_OUT, word_id

SHARE_MIN = 0.1  # a name mover's mean direct effect, as a share of the mean logit difference
KEY = "ioi_circuit"
FIRST = 4  # held-out prompts whose own numbers the card keeps, for a test to recompute


def _prompt(tokenizer: Tokenizer, c: probes.Contrast) -> tuple[tuple[int, ...], C.Pair, int, int]:
    """(ids, pair, position of the indirect object's name, position of the subject's first name)."""
    ids = tuple(tokenizer.encode(c.prompt, add_special_tokens=False).ids)
    pair = C.Pair(word_id(tokenizer, c.target), word_id(tokenizer, c.rival))
    return ids, pair, ids.index(pair.target), ids.index(pair.rival)


def per_prompt(model: Llama, tokenizer: Tokenizer, contrasts: Sequence[probes.Contrast]
               ) -> dict[str, np.ndarray]:  # fmt: skip
    """Per prompt: the logit difference, every head's direct effect (P, L, h) and every head's attention
    from the last position to the indirect object and to the subject (P, L, h)."""
    diffs, effects, to_io, to_s = [], [], [], []
    for c in contrasts:
        ids, pair, io, s = _prompt(tokenizer, c)
        run = C.forward(model, ids, pair)
        diffs.append(run.value)
        effects.append(C.direct_attribution(model, run, pair).heads)
        with torch.inference_mode():
            _, trace = model(run.ids, return_trace=True, capture="weights")
        last = trace.weights[0, :, :, -1]  # (L, h, T) every head's attention from the last position
        to_io.append(last[..., io].numpy())
        to_s.append(last[..., s].numpy())
    return {"logit_diff": np.array(diffs), "direct": np.stack(effects), "to_io": np.stack(to_io),
            "to_s": np.stack(to_s)}  # fmt: skip


def name_movers(found: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """Heads with a mean direct effect ≥ SHARE_MIN of the mean logit difference that attend from the last
    position to the indirect object more than to the subject, largest effect first."""
    mean = found["direct"].mean(0)  # (L, h)
    attends = found["to_io"].mean(0) > found["to_s"].mean(0)
    heads = [(i, h) for i, h in zip(*np.nonzero((mean >= SHARE_MIN * found["logit_diff"].mean()) & attends),
                                    strict=True)]  # fmt: skip
    return sorted(((int(i), int(h)) for i, h in heads), key=lambda ih: -mean[ih])


def ablated(model: Llama, tokenizer: Tokenizer, contrasts: Sequence[probes.Contrast], heads, how: str,
            reference: Sequence[Sequence[int]]) -> np.ndarray:  # fmt: skip
    """The logit difference of each prompt with ``heads`` ablated together (``how``: zero or mean)."""
    source = P.ablation_source(model, how, 1, reference=reference)  # zeros, or one mean per head
    return np.array([
        P.head_ablation(model, ids, pair, heads, how, source=source)
        for ids, pair, _, _ in (_prompt(tokenizer, c) for c in contrasts)
    ])  # fmt: skip


def measure(model: Llama, tokenizer: Tokenizer) -> dict:
    preset = probes.ioi_set(3 * len(probes.IOI_PRESET_TEMPLATES), IOI_HELD_OUT["seed"], "preset")
    held_out = probes.ioi_set(**IOI_HELD_OUT)
    found = per_prompt(model, tokenizer, preset)
    heads = name_movers(found)
    reference = [tokenizer.encode(c.corrupt, add_special_tokens=False).ids for c in preset]
    checked = per_prompt(model, tokenizer, held_out)
    base = checked["logit_diff"]
    result = {
        "definition": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
        "share_min": SHARE_MIN,
        "found_on": {"prompts": len(preset), "mean_logit_diff": float(found["logit_diff"].mean())},
        "heads": [{"layer": i, "head": h, "preset_direct": float(found["direct"][:, i, h].mean()),
                   "held_out_direct": float(checked["direct"][:, i, h].mean()),
                   "held_out_attention_to_io": float(checked["to_io"][:, i, h].mean()),
                   "held_out_attention_to_s": float(checked["to_s"][:, i, h].mean())} for i, h in heads],
        "held_out": {"prompts": len(held_out), "seed": IOI_HELD_OUT["seed"],
                     "mean_logit_diff": float(base.mean())},
        "top_direct_heads": [[int(i), int(h)] for i, h in zip(*np.unravel_index(
            np.argsort(-checked["direct"].mean(0).ravel())[:10], checked["direct"].shape[1:]), strict=True)],
    }  # fmt: skip
    result["first"] = {"prompts": [c.prompt for c in held_out[:FIRST]],
                       "logit_diff": [round(float(v), 5) for v in base[:FIRST]]}  # fmt: skip
    for how in ("mean", "zero"):
        after = ablated(model, tokenizer, held_out, heads, how, reference) if heads else base
        result["first"][f"{how}_ablated_logit_diff"] = [round(float(v), 5) for v in after[:FIRST]]
        result["held_out"][f"{how}_ablated_logit_diff"] = float(after.mean())
        result["held_out"][f"{how}_ablated_share_removed"] = float((base.mean() - after.mean()) / base.mean())
        result["held_out"][f"{how}_ablated_target_wins"] = int((after > 0).sum())
    result["held_out"]["target_wins"] = int((base > 0).sum())
    result["reference"] = "the preset prompts' corrupted twins (no repeated name), every position"
    return result


def main(argv: Sequence[str] | None = None) -> None:
    description = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m training.llm_circuits", description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    model, tokenizer, _ = load(device=torch.device("cpu"))
    start = time.perf_counter()
    result = measure(model, tokenizer)
    result["measuring_seconds"] = round(time.perf_counter() - start, 1)
    update_card(CARD, KEY, result)
    heads = ", ".join(f"L{h['layer']}H{h['head']}" for h in result["heads"])
    held = result["held_out"]
    print(f"name movers {heads}; held-out logit diff {held['mean_logit_diff']:.2f} → "
          f"{held['mean_ablated_logit_diff']:.2f} mean-ablated "
          f"({held['mean_ablated_share_removed']:.0%} removed)")


if __name__ == "__main__":
    main()
