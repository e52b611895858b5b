"""Train and evaluate the captioner; writes assets/captioner-scenes.safetensors + .json.

    python -m training.captioner            # seeded; a tqdm bar shows the loss

Metrics on the held-out test split (fixed seed, split by a hash of each scene's layout):
exact caption match, BLEU-4 (sacrebleu), and the pointing game — for each caption word that names
an object, is the argmax of the attention at that word's step inside the object's mask (its 8×8
cell overlaps the mask)? Measured with teacher forcing on the gold caption, so every object word
has a step; reported overall and by object count.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import sacrebleu
import torch
from tqdm import tqdm

from models.captioner import Captioner, CaptionerConfig, doubly_stochastic
from models.checkpoints import ASSETS, save_checkpoint
from models.device import pick_device
from tasks.common import BOS, EOS, SPECIALS, Vocab
from tasks.images import to_tensor
from tasks.scenes import VOCABULARY, Scene, generate
from training.train import TEST_SEED

NAME = "captioner-scenes"
PRESET = dict(n_train=16000, steps=4000, batch=64, lr=2e-3, stochastic=0.01, max_len=20)


def vocab() -> Vocab:
    return Vocab(SPECIALS + tuple(VOCABULARY))


def batch(scenes: Sequence[Scene], v: Vocab, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = to_tensor(np.stack([s.image for s in scenes])).to(device)
    ids = [v.encode((BOS, *s.caption, EOS)) for s in scenes]
    t = max(map(len, ids))
    tgt = torch.tensor([x + [0] * (t - len(x)) for x in ids], device=device)
    return images, tgt[:, :-1], tgt[:, 1:]


def pointing_hits(alphas: np.ndarray, scene: Scene, grid: int = 8) -> list[bool]:
    """Per object-naming word: does the attention argmax's cell overlap that object's mask?"""
    cell = scene.image.shape[0] // grid
    hits = []
    for t, obj in enumerate(scene.word_objects):
        if obj < 0:
            continue
        r = int(alphas[t].argmax())
        row, col = divmod(r, grid)
        hits.append(
            bool(scene.masks[obj, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell].any())
        )
    return hits


@torch.inference_mode()
def evaluate(model: Captioner, scenes: Sequence[Scene], v: Vocab, chunk: int = 200) -> dict:
    device = next(model.parameters()).device
    preds, hits = [], defaultdict(list)
    for i in range(0, len(scenes), chunk):
        part = scenes[i : i + chunk]
        images, tgt_in, _ = batch(part, v, device)
        ids, _ = model.greedy(images, max_len=PRESET["max_len"])
        preds += [v.decode(row) for row in ids.tolist()]
        _, forced = model(images, tgt_in)
        for b, s in enumerate(part):
            hits[len(s.masks)] += pointing_hits(forced.alphas[b].cpu().numpy(), s)
    exact = [p == list(s.caption) for p, s in zip(preds, scenes, strict=True)]
    by_count = defaultdict(list)
    for s, ok in zip(scenes, exact, strict=True):
        by_count[len(s.masks)].append(ok)
    all_hits = [h for v_ in hits.values() for h in v_]
    return {
        "n": len(scenes),
        "exact_match": sum(exact) / len(exact),
        "bleu4": sacrebleu.corpus_bleu(
            [" ".join(p) for p in preds], [[" ".join(s.caption) for s in scenes]]
        ).score,
        "pointing_game": sum(all_hits) / len(all_hits),
        "by_object_count": {
            str(n): {
                "n": len(by_count[n]),
                "exact_match": sum(by_count[n]) / len(by_count[n]),
                "pointing_game": sum(hits[n]) / len(hits[n]),
            }
            for n in sorted(by_count)
        },
    }


def train(
    *,
    seed: int = 0,
    steps: int | None = None,
    n_train: int | None = None,
    progress: bool = True,
    evaluate_splits: bool = True,
) -> tuple[Captioner, dict]:
    steps, n_train = steps or PRESET["steps"], n_train or PRESET["n_train"]
    start = time.perf_counter()
    data_seed = 2000 + seed
    train_set = generate(n_train, data_seed, "train")
    v = vocab()
    torch.manual_seed(seed)  # CLI process only
    device = pick_device()
    model = Captioner(CaptionerConfig(vocab=len(v))).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=PRESET["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PRESET["lr"], total_steps=steps)
    rng = random.Random(seed)
    history, running = [], None
    bar = tqdm(range(steps), desc=NAME, disable=not progress)
    for step in bar:
        model.train()
        images, tgt_in, tgt_out = batch(rng.sample(train_set, PRESET["batch"]), v, device)
        logits, trace = model(images, tgt_in)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0)
        loss = ce + PRESET["stochastic"] * doubly_stochastic(trace.alphas, tgt_out)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = ce.item() if running is None else 0.95 * running + 0.05 * ce.item()
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{running:.3f}")
            history.append({"step": step, "loss": round(running, 5)})
    model.eval()
    card = {
        "kind": "captioner",
        "task": "scenes",
        "variant": "additive",
        "seed": seed,
        "data_seed": data_seed,
        "test_seed": TEST_SEED,
        "n_train": n_train,
        **{k: PRESET[k] for k in ("steps", "batch", "lr")},
        "doubly_stochastic_lambda": PRESET["stochastic"],
        "params": sum(p.numel() for p in model.parameters()),
        "training_seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
        "loss_curve": history,
        "src_vocab": [],
        "tgt_vocab": list(v.tokens),
    }
    if evaluate_splits:
        card["val"] = evaluate(model, generate(300, data_seed + 1, "val"), v)
        card["test"] = evaluate(model, generate(1000, TEST_SEED, "test"), v)
    return model, card


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, card = train(seed=args.seed, steps=args.steps)
    save_checkpoint(model, card, NAME)
    t = card["test"]
    print(
        f"{NAME}: exact {t['exact_match']:.4f}  BLEU-4 {t['bleu4']:.2f}  pointing {t['pointing_game']:.4f}  "
        f"({card['training_seconds']} s) → {ASSETS}"
    )


if __name__ == "__main__":
    main()
