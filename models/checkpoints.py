"""Weights as safetensors (never pickle) plus a JSON model card, both under assets/."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

from models.device import pick_device
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from models.tasks.common import Vocab

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def seq2seq_name(task: str, scoring: str) -> str:
    return f"seq2seq-{task}-{scoring}"


def save_seq2seq(model: Seq2Seq, card: dict, name: str, folder: Path = ASSETS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, folder / f"{name}.safetensors")
    card = {**card, "name": name, "config": asdict(model.cfg)}
    (folder / f"{name}.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")


def load_card(name: str, folder: Path = ASSETS) -> dict:
    path = folder / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no model card {path}; train it with `python -m models.train` (see README)."
        )
    return json.loads(path.read_text())


def load_seq2seq(name: str, folder: Path = ASSETS) -> tuple[Seq2Seq, dict, Vocab, Vocab]:
    """A ready model (eval mode, on the picked device), its card, source and target vocabularies."""
    card = load_card(name, folder)
    model = Seq2Seq(Seq2SeqConfig(**card["config"]))
    model.load_state_dict(load_file(folder / f"{name}.safetensors"))
    model.eval().to(pick_device())
    return model, card, Vocab(tuple(card["src_vocab"])), Vocab(tuple(card["tgt_vocab"]))
