"""Train and evaluate checkpoints; writes assets/<name>.safetensors + <name>.json.

    python -m training.train --task dates --scoring additive                 # seq2seq (GRU)
    python -m training.train --task translation --scoring all                # 4 scorings + the baseline
    python -m training.train --model transformer --task dates --variant h4   # h1 h2 h4 h8 h4-post, all

Seeded end to end (data, init, batch order); a tqdm bar shows loss. The test split (fixed seed,
disjoint from training by construction) is only ever evaluated, never trained on.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Sequence

import sacrebleu
import torch
from torch import Tensor
from tqdm import tqdm

from models.attention import SCORINGS
from models.checkpoints import ASSETS, KINDS, checkpoint_name, save_checkpoint
from models.device import pick_device
from models.transformer import PRESETS as TRANSFORMER_VARIANTS
from tasks import TASKS, Task, bucket_label
from tasks.common import BOS, EOS, Example, Vocab, argmax_links, corpus_aer

TEST_SEED = 20261121  # the test split is the same whatever seed trains the model
TEST_SIZE = 1000
# Per model kind and task: data size, steps, batch, learning rate, and the config widths.
# Chosen to train in minutes on 2 CPU cores.
PRESETS = {
    "seq2seq": {
        "dates": dict(n_train=20000, steps=2000, batch=64, lr=3e-3, config=dict(emb_dim=32, enc_hidden=64)),
        "translation": dict(n_train=40000, steps=4000, batch=64, lr=3e-3,
                            config=dict(emb_dim=48, enc_hidden=80)),
    },
    "transformer": {
        "dates": dict(n_train=20000, steps=3000, batch=64, lr=2e-3, config=dict(d_model=64, d_ff=128)),
        "translation": dict(n_train=40000, steps=3000, batch=64, lr=2e-3, config=dict(d_model=64, d_ff=128)),
    },
}
VARIANTS = {"seq2seq": SCORINGS + ("none",), "transformer": tuple(TRANSFORMER_VARIANTS)}


def batch_tensors(
    examples: Sequence[Example], src_vocab: Vocab, tgt_vocab: Vocab, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pad a batch: src (B, S), src_lens (B,), tgt_in (B, T) = <s> y…, tgt_out (B, T) = y… </s>."""
    src = [src_vocab.encode(ex.src) for ex in examples]
    tgt = [tgt_vocab.encode((BOS, *ex.tgt, EOS)) for ex in examples]
    s_len, t_len = max(map(len, src)), max(map(len, tgt))
    src_t = torch.tensor([s + [0] * (s_len - len(s)) for s in src], device=device)
    tgt_t = torch.tensor([t + [0] * (t_len - len(t)) for t in tgt], device=device)
    lens = torch.tensor([len(s) for s in src])
    return src_t, lens, tgt_t[:, :-1], tgt_t[:, 1:]


def loss_fn(logits: Tensor, tgt_out: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0)


def splits(task: Task, n_train: int, data_seed: int) -> dict[str, list[Example]]:
    return {
        "train": task.generate(n_train, data_seed, "train"),
        "val": task.generate(300, data_seed + 1, "val"),
        "test": task.generate(TEST_SIZE, TEST_SEED, "test"),
    }


def variant_config(kind: str, variant: str) -> dict:
    """The config fields a variant name sets: a scoring function, or a transformer preset."""
    return {"scoring": variant} if kind == "seq2seq" else dict(TRANSFORMER_VARIANTS[variant])


def grad_norms(model: torch.nn.Module) -> dict[str, float]:
    """Gradient L2 norm per layer (parameters grouped by name up to the layer index)."""
    sums: dict[str, float] = defaultdict(float)
    for name, p in model.named_parameters():
        if p.grad is not None:
            parts = name.split(".")
            group = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
            sums[group] += float(p.grad.pow(2).sum())
    return {k: round(v**0.5, 6) for k, v in sums.items()}


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, examples: Sequence[Example], task: Task, src_vocab: Vocab, tgt_vocab: Vocab,
    batch: int = 250,
) -> dict:
    """Greedy decoding on ``examples``: exact match, token accuracy, BLEU (word tasks), AER of the
    argmax attention against gold, and exact match by source-length bucket."""
    device = next(model.parameters()).device
    preds, aer_rows = [], []
    for i in range(0, len(examples), batch):
        chunk = examples[i : i + batch]
        src, lens, _, _ = batch_tensors(chunk, src_vocab, tgt_vocab, device)
        ids, trace = model.greedy(src, lens, max_len=task.max_target, return_trace=True)
        for b, ex in enumerate(chunk):
            pred = tgt_vocab.decode(ids[b].tolist())
            preds.append(pred)
            if trace.alignment is not None:
                w = trace.alignment[b, : len(pred), : len(ex.src)].tolist()
                aer_rows.append((argmax_links(w), ex.sure, ex.possible))
    pairs = list(zip(examples, preds, strict=True))
    exact = [list(ex.tgt) == p for ex, p in pairs]
    # Token accuracy: position-wise matches over the longer of gold and prediction.
    correct = sum(sum(a == b for a, b in zip(ex.tgt, p, strict=False)) for ex, p in pairs)
    total = sum(max(len(ex.tgt), len(p)) for ex, p in pairs)
    by_len: dict[str, list[bool]] = defaultdict(list)
    for ex, ok in zip(examples, exact, strict=True):
        by_len[bucket_label(len(ex.src), task.buckets)].append(ok)
    order = [bucket_label(n, task.buckets) for n in range(1, task.buckets[-1] + 2)]
    metrics = {
        "n": len(examples),
        "exact_match": sum(exact) / len(exact),
        "token_accuracy": correct / total,
        "aer": corpus_aer(aer_rows) if aer_rows else None,
        "by_length": {
            b: {"n": len(by_len[b]), "exact_match": sum(by_len[b]) / len(by_len[b])}
            for b in dict.fromkeys(order)
            if by_len[b]
        },
    }
    if task.joiner == " ":
        hyps = [" ".join(p) for p in preds]
        refs = [[" ".join(ex.tgt) for ex in examples]]
        metrics["bleu"] = sacrebleu.corpus_bleu(hyps, refs).score
    return metrics


def train(
    task_name: str, variant: str, *, kind: str = "seq2seq", seed: int = 0, steps: int | None = None,
    n_train: int | None = None, progress: bool = True, evaluate_splits: bool = True,
) -> tuple[torch.nn.Module, dict]:
    """Train one model; returns it (eval mode) and its card (with val/test metrics if asked)."""
    task, preset = TASKS[task_name], PRESETS[kind][task_name]
    steps = steps or preset["steps"]
    n_train = n_train or preset["n_train"]
    data_seed = 1000 + seed
    data = splits(task, n_train, data_seed) if evaluate_splits else {
        "train": task.generate(n_train, data_seed, "train")}
    src_vocab = Vocab.build(ex.src for ex in data["train"])
    tgt_vocab = Vocab.build(ex.tgt for ex in data["train"])
    torch.manual_seed(seed)  # CLI process only: never called from the app
    device = pick_device()
    model_cls, config_cls = KINDS[kind]
    cfg = config_cls(src_vocab=len(src_vocab), tgt_vocab=len(tgt_vocab), **preset["config"],
                     **variant_config(kind, variant))
    model = model_cls(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=preset["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=preset["lr"], total_steps=steps)
    rng = random.Random(seed)
    history: list[dict] = []
    start, running = time.perf_counter(), None
    bar = tqdm(range(steps), desc=checkpoint_name(kind, task_name, variant), disable=not progress)
    for step in bar:
        model.train()
        src, lens, tgt_in, tgt_out = batch_tensors(
            rng.sample(data["train"], preset["batch"]), src_vocab, tgt_vocab, device
        )
        logits, _ = model(src, lens, tgt_in)
        loss = loss_fn(logits, tgt_out)
        opt.zero_grad()
        loss.backward()
        log = step % 50 == 0 or step == steps - 1
        norms = grad_norms(model) if log else None  # before clipping: what the layer really got
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if log:
            bar.set_postfix(loss=f"{running:.3f}")
            history.append({"step": step, "loss": round(running, 5), "grad_norms": norms})
    model.eval()
    card = {
        "kind": kind,
        "task": task_name,
        "variant": variant,
        **({"scoring": variant} if kind == "seq2seq" else {}),
        "seed": seed,
        "data_seed": data_seed,
        "test_seed": TEST_SEED,
        "n_train": n_train,
        "steps": steps,
        "batch": preset["batch"],
        "lr": preset["lr"],
        "params": sum(p.numel() for p in model.parameters()),
        "training_seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
        "loss_curve": history,
        "src_vocab": list(src_vocab.tokens),
        "tgt_vocab": list(tgt_vocab.tokens),
    }
    if evaluate_splits:
        card["val"] = evaluate(model, data["val"], task, src_vocab, tgt_vocab)
        card["test"] = evaluate(model, data["test"], task, src_vocab, tgt_vocab)
    return model, card


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(KINDS), default="seq2seq")
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--variant", "--scoring", required=True,
                        help="seq2seq: a scoring function or 'none' (no attention); transformer: "
                             f"one of {', '.join(TRANSFORMER_VARIANTS)}; 'all' trains every variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    known = VARIANTS[args.model]
    if args.variant not in known + ("all",):
        parser.error(f"--variant for {args.model} must be one of {', '.join(known)} or all")
    if args.threads:
        torch.set_num_threads(args.threads)
    for variant in known if args.variant == "all" else (args.variant,):
        model, card = train(args.task, variant, kind=args.model, seed=args.seed, steps=args.steps)
        name = checkpoint_name(args.model, args.task, variant)
        save_checkpoint(model, card, name)
        t = card["test"]
        print(f"{name}: test exact {t['exact_match']:.4f}  token acc {t['token_accuracy']:.4f}  "
              f"AER {t['aer']}  BLEU {t.get('bleu')}  ({card['training_seconds']} s) → {ASSETS}")


if __name__ == "__main__":
    main()
