"""The metrics a model card reports, recomputed by the checkpoint tests the same way.

Text tasks: exact match, token accuracy, BLEU (word tasks, sacrebleu), AER of the argmax attention
against gold, and exact match by source-length bucket (the bottleneck curve).

Captions (held-out scenes, split by a hash of each scene's layout): exact caption match, BLEU-4,
and the pointing game — for each caption word that names an object, is the argmax of the
attention at that word's step inside the object's mask (its 8×8 cell overlaps the mask)?
Measured with teacher forcing on the gold caption, so every object word has a step; reported
overall and by object count.

Language model (the GPT on the standard library, held out by file): perplexity on the split's
windows, the same for a count-based bigram on the same tokens (add-k smoothed), and on repeated
random-token sequences the per-head induction, previous-token and first-token scores, the loss on
the first vs the second copy, and the second copy's loss with the top induction heads switched off.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import sacrebleu
import torch

from models.attention import NO_INTERVENTION, Interventions
from models.gpt import BLOCK
from tasks import Task, bucket_label, stdlib
from tasks.batching import batch_scenes, batch_tensors
from tasks.common import Example, Vocab, argmax_links, corpus_aer
from tasks.scenes import MAX_CAPTION, Scene, cell_shares


@torch.inference_mode()
def evaluate_text(
    model: torch.nn.Module,
    examples: Sequence[Example],
    task: Task,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    batch: int = 250,
    max_len: int | None = None,
) -> dict:
    """Greedy decoding on ``examples`` (up to ``max_len`` tokens, default the task's): exact match,
    token accuracy, BLEU (word tasks), AER of the argmax attention against gold, and exact match by
    source-length bucket."""
    device = next(model.parameters()).device
    preds, aer_rows = [], []
    for i in range(0, len(examples), batch):
        chunk = examples[i : i + batch]
        src, lens, _, _ = batch_tensors(chunk, src_vocab, tgt_vocab, device)
        ids, trace = model.greedy(src, lens, max_len=max_len or task.max_target, return_trace=True)
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


STRICT_SHARE = 0.25  # the strict pointing rule: this share of the argmax cell on the object


def pointing_hits(alphas: np.ndarray, scene: Scene, grid: int = 8, *, min_share: float = 0.0) -> list[bool]:
    """Per object-naming word: does the attention argmax's cell land on that object? Lenient
    (``min_share`` 0): any pixel of the cell on its mask; strict (`STRICT_SHARE`): at least that
    share of the cell's pixels."""
    shares = cell_shares(scene.masks, grid)  # (n_objects, grid²)
    hits = []
    for t, obj in enumerate(scene.word_objects):
        if obj >= 0:
            share = shares[obj, int(alphas[t].argmax())]
            hits.append(bool(share > 0) if min_share <= 0 else bool(share >= min_share))
    return hits


@torch.inference_mode()
def evaluate_captions(
    model: torch.nn.Module, scenes: Sequence[Scene], v: Vocab, chunk: int = 200, max_len: int | None = None
) -> dict:
    """Greedy captions (up to ``max_len`` words, default the task's): exact match and BLEU-4; the
    pointing game under teacher forcing; both by object count."""
    device = next(model.parameters()).device
    preds, hits, strict = [], defaultdict(list), []
    for i in range(0, len(scenes), chunk):
        part = scenes[i : i + chunk]
        images, tgt_in, _ = batch_scenes(part, v, device)
        ids, _ = model.greedy(images, max_len=max_len or MAX_CAPTION)
        preds += [v.decode(row) for row in ids.tolist()]
        _, forced = model(images, tgt_in)
        for b, s in enumerate(part):
            alphas = forced.alphas[b].cpu().numpy()
            hits[len(s.masks)] += pointing_hits(alphas, s)
            strict += pointing_hits(alphas, s, min_share=STRICT_SHARE)
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
        "pointing_game_strict": sum(strict) / len(strict),
        "by_object_count": {
            str(n): {
                "n": len(by_count[n]),
                "exact_match": sum(by_count[n]) / len(by_count[n]),
                "pointing_game": sum(hits[n]) / len(hits[n]),
            }
            for n in sorted(by_count)
        },
    }


# --- Language model -------------------------------------------------------------------------------
ADD_K = 0.03  # bigram add-k smoothing: the best of k ∈ {1, 0.3, 0.1, 0.03, 0.01, 0.003} on validation
PROBE = dict(sequences=64, length=50, seed=20261122)  # <s> + 50 random tokens + the same 50 again
TOP_INDUCTION = 0.5  # the "top induction heads": those scoring at least this share of the best's


@torch.inference_mode()
def window_nll(model: torch.nn.Module, windows: Sequence[stdlib.Window], batch: int = 50) -> float:
    """Mean cross-entropy (nats) of every token of every window given <s> and the tokens before it."""
    device = next(model.parameters()).device
    total = count = 0.0
    for i in range(0, len(windows), batch):
        x, y = stdlib.batch(windows[i : i + batch], device)
        logits, _ = model(x)  # (B, T, V)
        total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
        count += y.numel()
    return total / count


def bigram_nll(windows: Sequence[stdlib.Window], k: float = ADD_K) -> float:
    """Mean cross-entropy of the same predictions under the training stream's bigram counts,
    p(b | a) = (count(a b) + k) / (count(a) + k V)."""
    counts = stdlib.bigram_counts()
    ids = np.stack([w.ids for w in windows])  # (N, W + 1)
    a, b = ids[:, :-1], ids[:, 1:]
    p = (counts[a, b] + k) / (counts[a].sum(-1) + k * counts.shape[1])
    return float(-np.log(p).mean())


def _table(scores: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in scores]


@torch.inference_mode()
def repeat_probe(
    model: torch.nn.Module, iv: Interventions = NO_INTERVENTION, ids: np.ndarray | None = None
) -> dict:
    """On sequences <s> r_1…r_n r_1…r_n of uniformly random tokens (``ids`` (B, 1 + 2n); by default
    `PROBE`'s, drawn from the GPT's vocabulary): per head (layers × heads) the mean attention from
    each second-copy token r_i to the token right after its earlier occurrence (induction), to the
    token before it (previous-token, every position after <s>) and to <s> (first-token); and the
    mean loss on the first copy's tokens r_2…r_n vs the second's (r_1 of the second copy follows r_n
    and is predictable from nothing, so it is left out of both)."""
    if ids is None:
        ids = stdlib.repeated_random(PROBE["sequences"], PROBE["length"], PROBE["seed"], model.cfg.vocab)
    n = (ids.shape[1] - 1) // 2
    ids = torch.from_numpy(ids)
    device = next(model.parameters()).device
    logits, trace = model(ids.to(device), iv=iv, return_trace=True, capture="weights")
    w = trace.weights.float().cpu()  # (B, L, h, T, T)
    second = torch.arange(n + 1, 2 * n + 1)  # query positions of the second copy
    after_all = torch.arange(1, 2 * n + 1)
    nll = -torch.log_softmax(logits.float().cpu(), -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    # nll[:, p − 1] is the loss of the token at position p; r_2…r_n sit at 2…n and n+2…2n.
    return {
        "induction": w[..., second, second - n + 1].mean((0, -1)),  # (L, h)
        "previous_token": w[..., after_all, after_all - 1].mean((0, -1)),
        "first_token": w[..., after_all, 0].mean((0, -1)),
        "first_copy_loss": float(nll[:, 1:n].mean()),
        "second_copy_loss": float(nll[:, n + 1 : 2 * n].mean()),
    }


def top_induction_heads(induction: torch.Tensor) -> list[tuple[int, int]]:
    """(layer, head) of every head scoring at least `TOP_INDUCTION` × the best head's induction."""
    best = float(induction.max())
    return [(int(i), int(h)) for i, h in torch.nonzero(induction >= TOP_INDUCTION * best).tolist()]


def in_context_metrics(model: torch.nn.Module, ids: np.ndarray | None = None) -> dict:
    """The card's induction metrics on `repeat_probe`'s sequences (``ids``, by default `PROBE`'s):
    best-head scores, per-head tables, the in-context loss on each copy, and the second copy's loss
    with the top induction heads switched off."""
    probe = repeat_probe(model, ids=ids)
    top = top_induction_heads(probe["induction"])
    ablated = repeat_probe(model, Interventions(ablate=frozenset((BLOCK, i, h) for i, h in top)), ids=ids)
    n_heads = probe["induction"].shape[1]
    best = {name: divmod(int(probe[name].argmax()), n_heads) for name in ("induction", "previous_token")}
    return {
        "induction_score": float(probe["induction"].max()),
        "induction_head": list(best["induction"]),
        "previous_token_score": float(probe["previous_token"].max()),
        "previous_token_head": list(best["previous_token"]),
        "induction_scores": _table(probe["induction"]),
        "previous_token_scores": _table(probe["previous_token"]),
        "first_token_scores": _table(probe["first_token"]),
        "first_copy_loss": probe["first_copy_loss"],
        "second_copy_loss": probe["second_copy_loss"],
        "top_induction_heads": [list(t) for t in top],
        "second_copy_loss_ablated": ablated["second_copy_loss"],
        "probe": {**PROBE, "tokens": "uniform, non-special ids", "top_induction_share": TOP_INDUCTION},
    }


def evaluate_lm(model: torch.nn.Module, windows: Sequence[stdlib.Window]) -> dict:
    """Perplexity of the model and of the bigram baseline on the windows (``<split>_perplexity``);
    on the test split also `in_context_metrics`."""
    split = windows[0].split
    metrics = {
        "n": len(windows),
        "tokens": sum(len(w.ids) - 1 for w in windows),
        f"{split}_perplexity": math.exp(window_nll(model, windows)),
        "bigram_perplexity": math.exp(bigram_nll(windows)),
        "bigram_add_k": ADD_K,
    }
    return metrics | (in_context_metrics(model) if split == "test" else {})
