"""Examples → padded tensors, the one place a batch is built (training, evaluation, the pages), and
the vocabularies a task's training examples define."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tasks import scenes
from tasks.common import BOS, EOS, Example, Vocab
from tasks.images import to_tensor


def text_vocabularies(examples: Sequence[Example]) -> tuple[Vocab, Vocab]:
    """Source and target vocabularies of a text task: every token the *training* examples use, so
    nothing leaks from the test split (a token only it has reads as <unk>)."""
    return Vocab.build(ex.src for ex in examples), Vocab.build(ex.tgt for ex in examples)


def scene_vocabularies(_scenes: Sequence[scenes.Scene]) -> tuple[Vocab, Vocab]:
    """No source vocabulary (the source is pixels); the target is the caption grammar's words."""
    return Vocab(()), scenes.vocab()


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


def batch_scenes(
    batch: Sequence[scenes.Scene], vocab: Vocab, device: torch.device, *, regions: bool = False
) -> tuple[Tensor, ...]:
    """Images (B, 3, H, W) normalised, tgt_in (B, T) = <s> w…, tgt_out (B, T) = w… </s> (padded);
    with ``regions``, also each word's `region_targets` (B, T, R) for training."""
    images = to_tensor(np.stack([s.image for s in batch])).to(device)
    ids = [vocab.encode((BOS, *s.caption, EOS)) for s in batch]
    t = max(map(len, ids))
    tgt = torch.tensor([x + [0] * (t - len(x)) for x in ids], device=device)
    if not regions:
        return images, tgt[:, :-1], tgt[:, 1:]
    return images, tgt[:, :-1], tgt[:, 1:], region_targets(batch, t - 1).to(device)


def region_targets(batch: Sequence[scenes.Scene], steps: int, grid: int = 8) -> Tensor:
    """(B, steps, grid²): for each caption word that names an object, its object's `cell_shares`
    normalised to sum to 1; zero rows for other words."""
    out = np.zeros((len(batch), steps, grid * grid), dtype=np.float32)
    for b, s in enumerate(batch):
        cells = scenes.cell_shares(s.masks, grid)  # (n_objects, R)
        for t, obj in enumerate(s.word_objects):
            if obj >= 0 and cells[obj].sum() > 0:
                out[b, t] = cells[obj] / cells[obj].sum()
    return torch.from_numpy(out)
