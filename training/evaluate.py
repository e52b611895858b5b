"""The metrics a model card reports, recomputed by the checkpoint tests the same way.

Text tasks: exact match, token accuracy, BLEU (word tasks, sacrebleu), AER of the argmax attention
against gold, and exact match by source-length bucket (the bottleneck curve).

Captions (held-out scenes, split by a hash of each scene's layout): exact caption match, BLEU-4,
and the pointing game — for each caption word that names an object, is the argmax of the
attention at that word's step inside the object's mask (its 8×8 cell overlaps the mask)?
Measured with teacher forcing on the gold caption, so every object word has a step; reported
overall and by object count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import sacrebleu
import torch

from tasks import Task, bucket_label
from tasks.batching import batch_scenes, batch_tensors
from tasks.common import Example, Vocab, argmax_links, corpus_aer
from tasks.scenes import MAX_CAPTION, Scene


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
    cell = scene.image.shape[0] // grid
    hits = []
    for t, obj in enumerate(scene.word_objects):
        if obj < 0:
            continue
        row, col = divmod(int(alphas[t].argmax()), grid)
        on_object = scene.masks[obj, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
        hits.append(bool(on_object.any()) if min_share <= 0 else bool(on_object.mean() >= min_share))
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
