"""Which language models this machine offers, found without loading any and without the network.

- ``ATTENTION_EXPLORER_LM_DIR=/folder``: each subfolder that is a checkpoint and each ``*.gguf`` in it,
  named by its folder or file name;
- ``ATTENTION_EXPLORER_LM=/folder-or-file``: one more, and the default;
- the Hugging Face hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
  each ``models--org--name`` entry's snapshot, named ``org/name`` (each file of a GGUF repository,
  ``org/name/file.gguf``), read only;
- SmolLM2-135M-Instruct, shipped, always there, and the default when nothing else is set.

Visitors choose among names only; paths stay on the server. What cannot be run is listed with its reason —
its architecture, its size, no tokenizer, unreadable — not hidden. A model whose float32 weights exceed the
limit (``ATTENTION_EXPLORER_LM_MAX_GB``, else half the memory available now) is refused with its size,
computed from the safetensors headers or the GGUF tensor table, not by loading it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoints import CheckpointError, read_json
from models.decoder_config import config_from_gguf, config_from_hf
from models.lm_checkpoint import OpenedModel, open_checkpoint

SHIPPED = "SmolLM2-135M-Instruct"  # the shipped model's name in the list
GB = 1e9


@dataclass(frozen=True)
class Offer:
    """A model that can be opened: its name (all a visitor sees) and, server-side, where it is."""

    name: str
    path: Path  # a folder (Hugging Face checkpoint or hub-cache snapshot) or a .gguf file
    source: str  # "shipped", "ATTENTION_EXPLORER_LM", "ATTENTION_EXPLORER_LM_DIR" or "hub cache"
    arch: str
    weight_bytes: int  # float32


@dataclass(frozen=True)
class Refused:
    """A model found but not offered, and why: the file, the problem and the fix (no server path)."""

    name: str  # the folder's or file's name, as the picker would have listed it
    source: str  # where it was found: a setting's name or "hub cache"
    reason: str  # what is wrong and the fix, naming the file only


@dataclass(frozen=True)
class Catalog:
    """What this machine offers and refuses, listed without loading any model."""

    offers: tuple[Offer, ...]
    refused: tuple[Refused, ...]
    default: str  # the name opened when a visitor has chosen none
    limit_bytes: int  # float32 weights above this are refused (ATTENTION_EXPLORER_LM_MAX_GB)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.offers)

    def offer(self, name: str) -> Offer:
        """The offer called ``name``; an unknown name is a ValueError listing the known ones."""
        for o in self.offers:
            if o.name == name:
                return o
        raise ValueError(f"no model is called {name!r}; choose one of {list(self.names)}.")


def hub_cache(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    return Path(env.get("HOME", str(Path.home()))) / ".cache" / "huggingface" / "hub"


def available_bytes() -> int:
    """Memory available now (Linux's MemAvailable; elsewhere the free physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size_limit(env: Mapping[str, str]) -> int:
    """Bytes of float32 weights a model may have: ATTENTION_EXPLORER_LM_MAX_GB, else half of what is free."""
    value = env.get("ATTENTION_EXPLORER_LM_MAX_GB")
    if value:
        try:
            if float(value) > 0:
                return int(float(value) * GB)
        except ValueError:
            pass
    return available_bytes() // 2


def inspect(path: Path) -> tuple[str, int]:
    """(architecture, float32 weight bytes) of a checkpoint, from its config and headers only. Raises
    `CheckpointError` (architecture, tokenizer, unreadable) for one that cannot be run."""
    from gguf import GGUFReader

    from models.hf_checkpoint import FIX, checkpoint_folder, hf_weight_bytes
    from models.lm_tokenizer import TOKENIZER_FIX

    if path.suffix == ".gguf":
        try:
            reader = GGUFReader(path)
            meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
            names = {t.name for t in reader.tensors}
            has_vocab = "tokenizer.ggml.tokens" in reader.fields
            size = 4 * sum(int(t.n_elements) for t in reader.tensors)
        except Exception as err:  # gguf raises ValueError, struct and mmap errors on a bad file
            raise CheckpointError(
                path, f"not a readable GGUF file ({type(err).__name__})", "replace the file"
            ) from err
        cfg = config_from_gguf(meta, names, path)
        if not has_vocab:
            raise CheckpointError(
                path, "the GGUF file holds no tokenizer", "use a GGUF that includes its vocabulary"
            )
        return cfg.arch, size
    folder = checkpoint_folder(path)
    cfg = config_from_hf(read_json(folder / "config.json", FIX), folder / "config.json")
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(folder / "tokenizer.json", "the model has no tokenizer.json", TOKENIZER_FIX)
    return cfg.arch, hf_weight_bytes(folder)


def _candidates(env: Mapping[str, str]) -> tuple[list[tuple[str, Path, str]], list[Refused]]:
    """(name, path, source) of everything the settings point at, before any check; and the settings that
    point at nothing usable."""
    found, refused = [], []
    if env.get("ATTENTION_EXPLORER_LM"):
        path = Path(env["ATTENTION_EXPLORER_LM"])
        found.append((path.name, path, "ATTENTION_EXPLORER_LM"))
    if env.get("ATTENTION_EXPLORER_LM_DIR"):
        folder = Path(env["ATTENTION_EXPLORER_LM_DIR"])
        try:
            entries = sorted(folder.iterdir())
        except OSError as err:
            entries = []
            refused.append(
                Refused(folder.name, "ATTENTION_EXPLORER_LM_DIR", f"not a readable folder ({err.strerror})")
            )
        for p in entries:  # a checkpoint folder has a config.json; anything else in there is not a model
            if p.suffix == ".gguf" or (p / "config.json").exists() or (p / "model.safetensors").exists():
                found.append((p.name, p, "ATTENTION_EXPLORER_LM_DIR"))
    cache = hub_cache(env)
    try:
        repos = sorted(p for p in cache.iterdir() if p.name.startswith("models--"))
    except OSError:
        repos = []
    for repo in repos:
        name = repo.name.removeprefix("models--").replace("--", "/", 1)
        files = _gguf_files(repo)  # a GGUF repository: each file is a model of its own
        found.extend((f"{name}/{f.name}", f, "hub cache") for f in files)
        if not files:
            found.append((name, repo, "hub cache"))
    return found, refused


def _gguf_files(repo: Path) -> list[Path]:
    """The .gguf files of a hub-cache repository's snapshot when it holds no config.json (else none)."""
    from models.hf_checkpoint import hub_snapshot

    try:
        snapshot = hub_snapshot(repo)
        if (snapshot / "config.json").exists():
            return []
        return sorted(snapshot.glob("*.gguf"))
    except (CheckpointError, OSError):
        return []  # the entry is refused with its reason when inspected


def _same(path: Path, offered: list[Path]) -> bool:
    """Whether ``path`` is one of the ``offered`` paths (links resolved)."""
    try:
        return path.resolve() in {p.resolve() for p in offered}
    except (OSError, RuntimeError):  # a link loop: refused with its reason when inspected
        return False


def discover(env: Mapping[str, str] | None = None) -> Catalog:
    """Every model the settings point at, checked (configs and headers only) and named."""
    from models.llama import FILE, gguf_path

    env = os.environ if env is None else env
    limit = size_limit(env)
    try:
        shipped = gguf_path()
    except CheckpointError:  # its package is not installed: still listed, and opening it says how to install
        shipped = Path(FILE)
    offers = [Offer(SHIPPED, shipped, "shipped", "llama", 0)]
    candidates, refused = _candidates(env)
    for name, path, source in candidates:
        if _same(path, [o.path for o in offers]):  # one checkpoint named twice (a setting and its folder)
            continue
        if name in {o.name for o in offers}:
            refused.append(Refused(name, source, "another model already has this name"))
            continue
        try:
            if not path.exists():
                problem = "a broken or looping link" if path.is_symlink() else "nothing is there"
                raise CheckpointError(path, problem, "check the setting")
            arch, size = inspect(path)
        except (
            CheckpointError,
            OSError,
            RuntimeError,
        ) as err:  # RuntimeError: a symlink loop on some Pythons
            reason = err.brief if isinstance(err, CheckpointError) else f"unreadable ({type(err).__name__})"
            refused.append(Refused(name, source, reason))
            continue
        if size > limit:
            reason = f"{size / GB:.1f} GB of float32 weights, over the {limit / GB:.1f} GB limit"
            refused.append(Refused(name, source, reason + " (ATTENTION_EXPLORER_LM_MAX_GB raises it)"))
            continue
        offers.append(Offer(name, path, source, arch, size))
    chosen = [o.name for o in offers if o.source == "ATTENTION_EXPLORER_LM"]
    return Catalog(tuple(offers), tuple(refused), chosen[0] if chosen else SHIPPED, limit)


def open_model(catalog: Catalog, name: str, device: torch.device | None = None) -> OpenedModel:
    """The model called ``name`` in ``catalog``, opened. Everything is checked again (the files may have
    changed or vanished since they were listed); any problem is a `CheckpointError` with the fix."""
    offer = catalog.offer(name)
    if offer.source == "shipped":
        from models.llama import load
        from models.lm_tokenizer import gguf_tokenizer

        model, _, meta = load(device=device)
        tokens = gguf_tokenizer(meta, offer.path)
        return OpenedModel(model, tokens.tokenizer, tokens.chat_template, tokens.stop_ids, tokens.special,
                           offer.path, "gguf")  # fmt: skip
    _, size = inspect(offer.path)
    if size > catalog.limit_bytes:
        raise CheckpointError(offer.path, f"{size / GB:.1f} GB of float32 weights, over the limit",
                              "raise ATTENTION_EXPLORER_LM_MAX_GB, or pick a smaller model")  # fmt: skip
    return open_checkpoint(offer.path, device)
