"""Weights as safetensors (never pickle) plus a JSON model card, both under assets/.

A checkpoint is named ``<kind>-<task>-<variant>``: e.g. ``seq2seq-dates-additive`` (variant =
scoring function, ``none`` = no attention) or ``transformer-dates-h4``; a family with one variant
only leaves it out (``captioner-scenes``).

Every file problem on the way in — missing, truncated, not JSON, a config we cannot build, weights
that do not fit it — is one `CheckpointError` naming the file and what to do, never a raw
SafetensorError / KeyError / RuntimeError from three libraries down. The readers below are shared
with the BERT loader (`models.bert.load_bert`).
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from models.device import pick_device
from tasks import TASKS
from tasks.common import SPECIALS, Vocab

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file, the problem and the fix.

    ``brief`` says the same with the file's name only, for a page that must not show server paths.
    """

    def __init__(self, path: Path, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. To fix: {fix}.")

    @property
    def brief(self) -> str:
        return f"{self.path.name}: {self.problem}. To fix: {self.fix}."


class CheckpointFileMissing(CheckpointError, FileNotFoundError):
    """A file the checkpoint needs is absent; also a FileNotFoundError for callers that expect one."""


def checkpoint_name(kind: str, task: str, variant: str | None) -> str:
    """``None``: the family's only variant, which the name need not tell apart."""
    return f"{kind}-{task}" if variant is None else f"{kind}-{task}-{variant}"


def retrain_fix(name: str, folder: Path = ASSETS) -> str:
    """How to get checkpoint ``name`` back: restore the shipped files, or retrain it."""
    kind, task, *variant = name.split("-", 2)
    command = f"python -m training --family {kind} --task {task}"
    command += f" --variant {variant[0]}" if variant else ""
    command += "" if folder == ASSETS else f" --out {folder}"
    restore = "restore the shipped files (`git restore assets/`) or " if folder == ASSETS else ""
    return f"{restore}retrain it with `{command}` (`python -m training --help` lists the choices)"


# --- Readers shared by every loader ---------------------------------------------------------------
def read_json(path: Path, fix: str) -> dict:
    """A JSON object from ``path``; a missing file, bad bytes, bad JSON or a non-object raise
    `CheckpointError` with ``fix``."""
    if not path.is_file():
        raise CheckpointFileMissing(path, "the file is missing", fix)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(path, f"not readable JSON ({err})", fix) from err
    if not isinstance(raw, dict):
        raise CheckpointError(path, f"a JSON {type(raw).__name__}, not an object", fix)
    return raw


def read_safetensors(path: Path, fix: str) -> dict[str, Tensor]:
    """Every tensor in ``path``; a missing, truncated or garbled file raises `CheckpointError`."""
    if not path.is_file():
        raise CheckpointFileMissing(path, "the weights file is missing", fix)
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(path, f"not a readable safetensors file ({err})", fix) from err


def _is_a(value: object, kind: type) -> bool:
    """JSON ``value`` fits annotation ``kind``; bools are not numbers, ints are sizes (≥ 1)."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is int:
        return isinstance(value, int) and value >= 1
    if kind is float:
        return isinstance(value, int | float)
    return not isinstance(kind, type) or isinstance(value, kind)


def config_problems(config: type, raw: dict, *, allow_unknown: bool = False) -> list[str]:
    """What stops ``config(**raw)`` from being a valid config: unknown keys (unless
    ``allow_unknown``), missing required keys, values of the wrong type; empty when it is fine."""
    hints = typing.get_type_hints(config)
    known = {f.name: f for f in fields(config)}
    problems = []
    unknown = sorted(set(raw) - set(known))
    if unknown and not allow_unknown:
        problems.append(f"unknown config keys {unknown}")
    required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in raw]
    if missing:
        problems.append(f"missing config keys {missing}")
    for name in known.keys() & raw.keys():
        if not _is_a(raw[name], hints[name]):
            wanted = hints[name].__name__ + (" ≥ 1" if hints[name] is int else "")
            problems.append(f"{name}={raw[name]!r} is not {wanted}")
    return problems


def load_weights(model: nn.Module, tensors: dict[str, Tensor], path: Path, fix: str) -> None:
    """``model.load_state_dict(tensors)``, with every missing, unexpected or mis-shaped weight
    named in one `CheckpointError` instead of torch's RuntimeError."""
    ours = model.state_dict()
    missing = sorted(ours.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - ours.keys())
    shapes = [
        f"{k} is {tuple(tensors[k].shape)}, the config needs {tuple(ours[k].shape)}"
        for k in sorted(ours.keys() & tensors.keys())
        if tensors[k].shape != ours[k].shape
    ]
    problems = [f"{len(missing)} weights missing, e.g. {missing[:3]}"] if missing else []
    problems += [f"{len(unexpected)} unexpected weights, e.g. {unexpected[:3]}"] if unexpected else []
    problems += [f"{len(shapes)} weights of the wrong shape, e.g. {'; '.join(shapes[:3])}"] if shapes else []
    if problems:
        raise CheckpointError(path, "the weights do not fit the config: " + "; ".join(problems), fix)
    model.load_state_dict(tensors)


# --- Our own checkpoints --------------------------------------------------------------------------
def save_checkpoint(model: nn.Module, card: dict, name: str, folder: Path = ASSETS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, folder / f"{name}.safetensors")
    card = {**card, "name": name, "config": asdict(model.cfg)}
    (folder / f"{name}.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")


def update_card(name: str, key: str, value: object, folder: Path = ASSETS) -> None:
    """Set one top-level ``key`` of a model card (a measurement added after training), reading the
    file just before writing it: several measurements may each add their own key to one card."""
    path = folder / f"{name}.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    card[key] = value
    path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")


def load_card(name: str, folder: Path = ASSETS) -> dict:
    """The model card of ``name``, checked to hold what loading needs (kind, config, vocabularies)."""
    path = folder / f"{name}.json"
    fix = retrain_fix(name, folder)
    card = read_json(path, fix)
    problems = [f"no {key!r}" for key in ("kind", "config", "src_vocab", "tgt_vocab") if key not in card]
    if "config" in card and not isinstance(card["config"], dict):
        problems.append("'config' is not an object")
    for key in ("src_vocab", "tgt_vocab"):
        tokens = card.get(key, [])
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            problems.append(f"{key!r} is not a list of tokens")
        elif tokens and tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            problems.append(f"{key!r} does not start with {list(SPECIALS)}")
    if problems:
        raise CheckpointError(path, "not a usable model card: " + "; ".join(problems), fix)
    return card


def load_checkpoint(
    name: str, network: type[nn.Module], config: type, folder: Path = ASSETS
) -> tuple[nn.Module, dict, Vocab, Vocab]:
    """A ready ``network`` (eval mode, on the picked device) built from the card's ``config``,
    its card, source and target vocabularies. `families.load` picks the classes by name.

    Raises `CheckpointError` (naming the file and the fix) for any missing or damaged file."""
    card = load_card(name, folder)
    card_path, fix = folder / f"{name}.json", retrain_fix(name, folder)
    raw = card["config"]
    problems = config_problems(config, raw)
    # The config's vocabulary sizes must be the card's vocabularies (the captioner's is "vocab").
    sizes = {"src_vocab": len(card["src_vocab"]), "tgt_vocab": len(card["tgt_vocab"])}
    sizes["vocab"] = sizes["tgt_vocab"]
    if not problems:  # the sizes are ints by now
        problems = [
            f"config {key}={raw[key]} but the card lists {size} tokens"
            for key, size in sizes.items()
            if key in raw and raw[key] != size
        ]
    if problems:
        raise CheckpointError(card_path, "unsupported config: " + "; ".join(problems), fix)
    try:
        model = network(config(**raw))
    except (ValueError, TypeError, RuntimeError) as err:  # the config's own checks, e.g. heads | d_model
        raise CheckpointError(card_path, f"unsupported config ({err})", fix) from err
    weights = folder / f"{name}.safetensors"
    load_weights(model, read_safetensors(weights, fix), weights, fix)
    model.eval().to(pick_device())
    return model, card, Vocab(tuple(card["src_vocab"])), Vocab(tuple(card["tgt_vocab"]))


# --- Measurements added to cards after training (`python -m training.measure`) ---------------------
def write_entry(name: str, key: str, entry: dict, folder: Path = ASSETS) -> dict[str, dict]:
    """``entry`` under ``key`` in the card ``name`` (read just before writing: nothing else in the card
    changes); returns {name: entry}, what a card measurement reports."""
    update_card(name, key, entry, folder)
    return {name: entry}


def trained(kind: str, variants, network: type[nn.Module], config: type, folder: Path = ASSETS):
    """Every checkpoint of ``kind`` in ``folder`` (every task, each of ``variants``): yields (name, task,
    model, source vocabulary, target vocabulary); a missing one is said and skipped."""
    for task in TASKS.values():
        for variant in variants:
            name = checkpoint_name(kind, task.name, variant)
            if not (folder / f"{name}.json").is_file():
                print(f"{name}: no checkpoint in {folder}, skipped")
                continue
            model, _, src_vocab, tgt_vocab = load_checkpoint(name, network, config, folder)
            yield name, task, model, src_vocab, tgt_vocab
