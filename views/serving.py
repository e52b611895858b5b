"""How the app serves models: cached loaders, cached runs, and the inference concurrency policy.

Models are `st.cache_resource`: one shared object per checkpoint, for every session and thread.
Per-input runs are `st.cache_resource` too, keyed on cheap arguments, with every array marked
read-only (`read_only`): one frozen object shared by every session, never copied or unpickled on a
rerun (a 512-token BERT run is 75 MB; `st.cache_data` would unpickle it at each access).
Runners are pure; this is the only place that decides how many runs share the CPU at once.

Nothing here is one family's: a family's runs come from its registry entry (`Family.served`, each
a `analysis.protocol.Served` its runner declares), and `cached(family, call)` wraps each once.
"""

from __future__ import annotations

import contextvars
import ctypes
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import streamlit as st

from analysis.family import Family, Served
from models.checkpoints import ASSETS, load_card, load_checkpoint
from tasks import held_out
from tasks.common import Example

# Inference policy. "shared" (default): one run at a time in the whole process — on 2 cores,
# concurrent forwards only slow each other. "per-model": one run at a time per checkpoint.
# "free": no limit (a machine with many cores or a GPU).
POLICY_ENV = "ATTENTION_EXPLORER_INFERENCE"
POLICIES = ("shared", "per-model", "free")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas (as MALLOC_ARENA_MAX does). Streamlit runs each session's
    script on a thread of its own, and glibc gives threads that allocate at once arenas of their own,
    keeping what was freed in each: 16 soaked sessions left the server +577 MB after 5 minutes, given
    back with 2 arenas (bench_soak.py). Returns whether the limit was set (False: not glibc)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, arenas))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


cap_malloc_arenas()


def policy() -> str:
    value = os.environ.get(POLICY_ENV, "shared")
    if value not in POLICIES:
        raise ValueError(f"{POLICY_ENV}={value!r}; set it to one of {', '.join(POLICIES)}.")
    return value


@contextmanager
def inference(model_key: str) -> Iterator[None]:
    """Hold the inference slot of ``model_key`` (a checkpoint name or folder) under the policy."""
    mode = policy()
    if mode == "free":
        yield
        return
    key = model_key if mode == "per-model" else ""
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield


def read_only(value):
    """Mark every numpy array inside a run read-only and return the run: a cached run is one object
    shared by every session, so no view may write into it."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            read_only(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            read_only(item)
    elif isinstance(value, list | tuple):
        for item in value:
            read_only(item)
    return value


@st.cache_resource(show_spinner="Loading model…")
def load_model(name: str, _family: Family):
    """One shared model per checkpoint (eval mode, on the picked device), its card and vocabularies:
    ``_family``'s network built from the card's config (checkpoint names start with their family's)."""
    return load_checkpoint(name, _family.network, _family.config)


@st.cache_resource(show_spinner=False)
def card(name: str) -> dict | None:
    """A checkpoint's model card (shared by every session: read it, never write into it)."""
    try:
        return load_card(name)
    except FileNotFoundError:
        return None


@st.cache_resource(show_spinner=False)
def held_out_examples(task_name: str, n: int = 100) -> list[Example]:
    """The first ``n`` examples of the task's fixed test split (the one the cards are scored on)."""
    return held_out(task_name, n)


@st.cache_resource(show_spinner=False)
def measurements(name: str) -> dict | None:
    """A measurement card in assets/ (e.g. of a pretrained model we did not train), or None."""
    path = ASSETS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --- A family's runs, as its registry entry brings them -------------------------------------------
_served: dict[tuple[str, str], Callable[..., Any]] = {}
_served_guard = threading.Lock()


def _cache(spec: Served, qualname: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` in its own Streamlit cache: the cache is found by module and qualified name (and
    source), so each served call gets its own name, and with it its own ``max_entries``."""
    fn.__name__ = fn.__qualname__ = qualname
    cache = st.cache_data if spec.copied else st.cache_resource
    return cache(max_entries=spec.max_entries, show_spinner=spec.spinner)(fn)


def _serve(family: Family, call: str | None) -> Callable[..., Any]:
    """The cached function of one served call (None: the family's loader)."""
    if call is None:
        return _cache(family.load, f"{family.name}.load", lambda name: family.load.fn(name))

    spec = family.served[call]

    def served(name: str, *inputs, **unkeyed):
        model = loaded_model(family, name)
        with inference(name):
            return read_only(spec.fn(model, *inputs, **unkeyed))

    return _cache(spec, f"{family.name}.{call}", served)


def _once(family: Family, call: str | None) -> Callable[..., Any]:
    with _served_guard:
        if (family.name, call) not in _served:
            _served[family.name, call] = _serve(family, call)
        return _served[family.name, call]


def loaded_model(family: Family, name: str):
    """The family's model ``name`` (a checkpoint name, or BERT's folder), loaded once for every session
    by the family's ``load`` (`analysis.protocol.Served`), or by `load_model` where it has none."""
    return load_model(name, family) if family.load is None else _once(family, None)(name)


def unrecorded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a progress callback that draws, e.g. ``bar.progress``) run in the context it was made in,
    outside any cached call it is handed to. Streamlit records the elements a cached function draws and
    replays them on a cache hit, where an element of a block made outside the function (the bar) cannot be
    replayed (CacheReplayClosureError): drawn this way, the bar's updates are not recorded."""
    outside = contextvars.copy_context()
    return lambda *args, **kw: outside.run(fn, *args, **kw)


def cached(family: Family, call: str) -> Callable[..., Any]:
    """The family's served ``call`` (``family.served[call]``) as one cached function shared by every
    session, built once per process: called with the model's name and the call's hashable inputs, it
    loads the model (`loaded_model`), holds its inference slot and returns the result read-only.
    Keyword arguments named with a leading underscore reach the call but are not part of the cache key
    (a progress callback; a result another served call computed from the same key).
    ``cached(FAMILY, "run")(name, src, interventions)``."""
    if call not in family.served:
        raise KeyError(f"the {family.name} family serves no {call!r}: add it to its runner's SERVED.")
    return _once(family, call)
