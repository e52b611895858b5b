"""Weights as safetensors (never pickle) plus a JSON model card, both under assets/.

A checkpoint is named ``<kind>-<task>-<variant>``: e.g. ``seq2seq-dates-additive`` (variant =
scoring function, ``none`` = no attention) or ``transformer-dates-h4``; a family with one variant
only leaves it out (``captioner-scenes``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from models.device import pick_device
from tasks.common import Vocab

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def checkpoint_name(kind: str, task: str, variant: str | None) -> str:
    """``None``: the family's only variant, which the name need not tell apart."""
    return f"{kind}-{task}" if variant is None else f"{kind}-{task}-{variant}"


def save_checkpoint(model: nn.Module, card: dict, name: str, folder: Path = ASSETS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, folder / f"{name}.safetensors")
    card = {**card, "name": name, "config": asdict(model.cfg)}
    (folder / f"{name}.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")


def load_card(name: str, folder: Path = ASSETS) -> dict:
    path = folder / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no model card {path}; train it with `python -m training --family <family> --task <task> "
            "--variant <variant>` (`python -m training --help` lists them; README, “Retrain a model”)."
        )
    return json.loads(path.read_text())


def load_checkpoint(
    name: str, network: type[nn.Module], config: type, folder: Path = ASSETS
) -> tuple[nn.Module, dict, Vocab, Vocab]:
    """A ready ``network`` (eval mode, on the picked device) built from the card's ``config``,
    its card, source and target vocabularies. `runners.registry.load` picks the classes by name."""
    card = load_card(name, folder)
    model = network(config(**card["config"]))
    model.load_state_dict(load_file(folder / f"{name}.safetensors"))
    model.eval().to(pick_device())
    return model, card, Vocab(tuple(card["src_vocab"])), Vocab(tuple(card["tgt_vocab"]))
