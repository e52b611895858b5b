"""Sequential vs parallel, measured: one GRU layer and one self-attention layer of the same width,
timed on this machine at several sequence lengths, next to the counts that explain the times.

A GRU must take its n steps one after another (step i needs h_{i−1}); self-attention computes every
position at once (a few matrix products over the whole sequence). So the GRU's time grows with n
steps of small work each, attention's with n² work in few steps. The counts say why:

| count | GRU | self-attention |
|---|---|---|
| sequential steps | n | 1 |
| longest path between two positions (layer applications from position 0 to n−1) | n − 1 | 1 |
| multiply-adds | n · (numel W_ih + numel W_hh) = 6 n d² | n · 4 d² (Q, K, V, O) + 2 n² d (QKᵀ, αV) |

Multiply-adds are read off the layers' own weight shapes; elementwise work (gates, softmax) is left
out. No Streamlit: `measure` takes an optional progress callback; the benchmark script
(`benchmarks/bench_parallel.py`) and the page both call it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from models.attention import MultiHeadAttention
from models.checkpoints import ASSETS

TABLE_PATH = ASSETS / "sequential-vs-parallel.json"
# 16 … 512 as the material discusses, then on to where self-attention's n² overtakes the GRU's n
# sequential steps on this machine (forward: between 4096 and 8192 at d = 64 on 2 cores).
LENGTHS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
MODES = ("forward", "forward_backward")  # the two timings of each layer
LAYERS = ("gru", "attention")


@dataclass(frozen=True)
class Row:
    """One sequence length: median times (ms) and the counts, per sequence of the batch."""

    length: int
    gru_forward_ms: float
    attention_forward_ms: float
    gru_forward_backward_ms: float
    attention_forward_backward_ms: float
    gru_sequential_steps: int
    attention_sequential_steps: int
    gru_longest_path: int
    attention_longest_path: int
    gru_multiply_adds: int
    attention_multiply_adds: int


@dataclass(frozen=True)
class ParallelTable:
    """The measured table and the conditions it was measured under."""

    rows: tuple[Row, ...]
    width: int  # d: the GRU's input and hidden size, attention's d_model
    heads: int  # attention heads (the counts do not depend on them)
    batch: int  # sequences per call
    repeats: int  # timed calls per cell; each cell is their median
    device: str
    machine: str
    torch_threads: int
    torch_version: str
    date: str  # ISO date and time of the measurement (UTC)

    def times(self, layer: str, mode: str) -> list[float]:
        """Median ms per length of ``layer`` ("gru" or "attention") in ``mode`` (one of MODES)."""
        return [getattr(row, f"{layer}_{mode}_ms") for row in self.rows]

    @property
    def lengths(self) -> list[int]:
        return [row.length for row in self.rows]

    def crossover(self, mode: str) -> int | None:
        """The shortest measured length from which on self-attention is slower than the GRU (at it
        and every longer length measured); None when it is not, within the measured lengths."""
        slower = [a > g for a, g in zip(self.times("attention", mode), self.times("gru", mode), strict=True)]
        for i in range(len(slower)):
            if all(slower[i:]):
                return self.rows[i].length
        return None

    def to_json(self) -> dict:
        return {**asdict(self), "rows": [asdict(row) for row in self.rows]}

    @classmethod
    def from_json(cls, raw: dict) -> ParallelTable:
        """Raises ValueError naming what is missing (e.g. a file from an older script)."""
        try:
            rows = tuple(Row(**{f.name: r[f.name] for f in fields(Row)}) for r in raw["rows"])
            return cls(rows=rows, **{f.name: raw[f.name] for f in fields(cls) if f.name != "rows"})
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"not a sequential-vs-parallel table (missing {err}); re-create it with "
                "`python benchmarks/bench_parallel.py`"
            ) from err


def layers(width: int, heads: int, device: torch.device) -> tuple[nn.GRU, MultiHeadAttention]:
    """A fresh GRU layer and self-attention layer of the same width (the call's own modules)."""
    gru = nn.GRU(width, width, batch_first=True).to(device)
    return gru, MultiHeadAttention(width, heads).to(device)


def counts(length: int, gru: nn.GRU, attention: MultiHeadAttention) -> dict[str, int]:
    """The counts of one sequence of ``length`` through each layer, from the layers' own shapes."""
    # 1) GRU: both weight matrices are applied once per step, to x_i and to h_{i−1}.
    gru_per_step = gru.weight_ih_l0.numel() + gru.weight_hh_l0.numel()  # 3d·d + 3d·d
    # 2) Attention: four projections per position, then n × n scores and weighted sums per head.
    projections = sum(m.weight.numel() for m in (attention.w_q, attention.w_k, attention.w_v, attention.w_o))
    pairwise = 2 * attention.n_heads * attention.d_head  # QKᵀ and αV: d each per (query, key) pair
    return {
        "gru_sequential_steps": length,
        "attention_sequential_steps": 1,
        "gru_longest_path": length - 1,
        "attention_longest_path": 1,
        "gru_multiply_adds": length * gru_per_step,
        "attention_multiply_adds": length * projections + length * length * pairwise,
    }


def _median_ms(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    def timed() -> float:
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000

    timed()  # warm-up: allocations, kernel selection
    return statistics.median(timed() for _ in range(repeats))


def _machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), core count and OS."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def measure(
    lengths: Sequence[int] = LENGTHS,
    *,
    width: int = 64,
    heads: int = 4,
    batch: int = 1,
    repeats: int = 10,
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
) -> ParallelTable:
    """Time one GRU layer and one self-attention layer at each length: forward (no autograd) and
    forward + backward (gradients of the output's sum wrt the input and every weight, through
    `torch.autograd.grad`: nothing is written on the modules). ``progress(fraction, message)``."""
    if not lengths or min(lengths) < 2:
        raise ValueError(f"lengths must be sequence lengths ≥ 2, got {list(lengths)}; e.g. 16 32 64.")
    if width % heads:
        raise ValueError(f"width ({width}) must be divisible by heads ({heads}); e.g. --width 64 --heads 4.")
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch and repeats must be at least 1, got batch={batch}, repeats={repeats}.")
    dev = torch.device(device)
    gru, attention = layers(width, heads, dev)
    generator = torch.Generator().manual_seed(0)  # the inputs' own RNG, no global seed
    rows = []
    for k, n in enumerate(lengths):
        if progress is not None:
            progress(k / len(lengths), f"length {n} ({k + 1} of {len(lengths)})")
        x = torch.randn(batch, n, width, generator=generator).to(dev)  # (B, n, d)

        def gru_forward(x=x):
            with torch.no_grad():
                return gru(x)[0]  # (B, n, d)

        def attention_forward(x=x):
            with torch.no_grad():
                return attention(query=x, key=x, value=x)[0]  # (B, n, d)

        def gru_backward(x=x):
            leaf = x.clone().requires_grad_(True)
            return torch.autograd.grad(gru(leaf)[0].sum(), [leaf, *gru.parameters()])

        def attention_backward(x=x):
            leaf = x.clone().requires_grad_(True)
            out, _ = attention(query=leaf, key=leaf, value=leaf)
            return torch.autograd.grad(out.sum(), [leaf, *attention.parameters()])

        rows.append(
            Row(
                length=n,
                gru_forward_ms=_median_ms(gru_forward, repeats, dev),
                attention_forward_ms=_median_ms(attention_forward, repeats, dev),
                gru_forward_backward_ms=_median_ms(gru_backward, repeats, dev),
                attention_forward_backward_ms=_median_ms(attention_backward, repeats, dev),
                **counts(n, gru, attention),
            )
        )
    if progress is not None:
        progress(1.0, "done")
    return ParallelTable(
        rows=tuple(rows),
        width=width,
        heads=heads,
        batch=batch,
        repeats=repeats,
        device=str(dev),
        machine=_machine() + (f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""),
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def read_table(path: Path = TABLE_PATH) -> ParallelTable:
    """The saved table; a missing or unreadable file raises ValueError saying how to make it."""
    fix = "create it with `python benchmarks/bench_parallel.py`"
    if not path.is_file():
        raise ValueError(f"No saved measurement at {path.name}; {fix}.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name} is not readable JSON ({err}); {fix}.") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} holds a JSON {type(raw).__name__}, not a table; {fix}.")
    return ParallelTable.from_json(raw)
