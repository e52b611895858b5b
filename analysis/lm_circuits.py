"""The Circuits tab's measurements as a decoder family serves them (`views.serving.cached`):
`analysis.circuits` and `analysis.patching` on the family's `LM`, one shared read-only result per
(model, inputs) under the inference policy. The GPT and SmolLM2 add ``SERVED`` to their ``served``.

Every call takes the `LM` first and hashable inputs after: with the model's name, the cache key. The lens,
direct attribution, attribution patching, the sweeps and a resampled ablation start from the traced
`Run` of the same ids, which the tab already holds (``circuit_run``): it hands them over as ``_clean``,
``_corrupt`` or ``_resample`` (keyword arguments with a leading underscore reach the call but are no
part of its key), so no prompt is traced twice; without one, the call traces its prompt itself — the
same forward, the same numbers.
"""

from __future__ import annotations

import time

import numpy as np

from analysis import circuits as C
from analysis import patching as P
from analysis.family import Served
from analysis.lm import LM

Ids = tuple[int, ...]


def traced(loaded: LM, ids: Ids) -> tuple[C.Run, float]:
    """The prompt with every layer traced (its metric NaN until `analysis.circuits.scored`), and the
    seconds its forward took: the tab estimates exact patching's time from it."""
    start = time.perf_counter()
    run = C.forward(loaded.model, ids, None)
    return run, time.perf_counter() - start


def _scored(loaded: LM, ids: Ids, pair: C.Pair, run: C.Run | None) -> C.Run:
    """``run`` (traced now where None) scored for ``pair``; a handed-over run must be of ``ids``, or the
    cache would file its result under another prompt."""
    if run is None:
        run = C.forward(loaded.model, ids, None)
    elif tuple(run.ids[0].tolist()) != tuple(ids):
        raise ValueError("the run handed over is of another prompt: pass the circuit_run of these ids.")
    return C.scored(run, pair)


def lens(loaded: LM, ids: Ids, pair: C.Pair, *, _clean: C.Run | None = None) -> C.Lens:
    return C.logit_lens(loaded.model, _scored(loaded, ids, pair, _clean), pair)


def direct(loaded: LM, ids: Ids, pair: C.Pair, *, _clean: C.Run | None = None) -> C.Direct:
    return C.direct_attribution(loaded.model, _scored(loaded, ids, pair, _clean), pair)


def attributed(loaded: LM, clean: Ids, corrupt: Ids, pair: C.Pair, *, _clean: C.Run | None = None,
               _corrupt: C.Run | None = None) -> P.Attributed:  # fmt: skip
    runs = _scored(loaded, clean, pair, _clean), _scored(loaded, corrupt, pair, _corrupt)
    return P.attribution_patching(loaded.model, *runs, pair)


def sweep(loaded: LM, kind: str, clean: Ids, corrupt: Ids, pair: C.Pair, layer: int | None, *,
          _clean: C.Run | None = None, _corrupt: C.Run | None = None,
          _progress: P.Progress | None = None) -> P.Sweep:  # fmt: skip
    """Exact patching: ``kind`` "head" (every head; with ``layer``, that layer's heads per position) or a
    stream site ("resid_pre", "attn_out", "mlp_out") at every (layer, position)."""
    runs = _scored(loaded, clean, pair, _clean), _scored(loaded, corrupt, pair, _corrupt)
    if kind == "head":
        return P.head_sweep(loaded.model, *runs, pair, layer=layer, progress=_progress)
    return P.residual_sweep(loaded.model, *runs, pair, site=kind, progress=_progress)


def ablated(loaded: LM, ids: Ids, pair: C.Pair, heads: tuple[tuple[int, int], ...], how: str,
            reference: tuple[Ids, ...], resample: Ids | None, *,
            _resample: C.Run | None = None) -> float:  # fmt: skip
    """The metric with ``heads`` ablated together (`analysis.patching.head_ablation`); ``resample``: the
    prompt whose contexts a resampled ablation writes."""
    other = None if resample is None else _scored(loaded, resample, pair, _resample)
    return P.head_ablation(loaded.model, ids, pair, heads, how, reference=reference, resample=other)


def value_weighted(loaded: LM, ids: Ids, layer: int) -> tuple[np.ndarray, np.ndarray]:
    return C.value_weighted(loaded.model, ids, layer)


SERVED = {
    # Every layer's streams and head contexts, the logits and the KV cache of one prompt (≤ 128 tokens).
    "circuit_run": Served(traced, max_entries=24, spinner="Running the prompt with every layer traced…"),
    "circuit_lens": Served(lens, max_entries=16, spinner="Reading every layer's stream out…"),
    "circuit_direct": Served(direct, max_entries=16),
    "circuit_attributed": Served(
        attributed, max_entries=16, spinner="One forward and one backward on the corrupted prompt…"
    ),
    "circuit_sweep": Served(sweep, max_entries=16),  # the tab shows a progress bar instead
    "circuit_ablated": Served(ablated, max_entries=16, spinner="Ablating…"),
    "circuit_value_weighted": Served(value_weighted, max_entries=16),
}
