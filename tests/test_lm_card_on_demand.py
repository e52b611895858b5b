""""Measure this model" on the language-model page: its time said before it runs, then a card whose numbers
are the model's own — recomputed here from transformers' eager model on the same checkpoint: the held-out
English perplexity, the unigram baseline, and every head's induction, previous-token and first-token score on
random tokens repeated. On a tiny Llama (its tokenizer writes <s> first) and a tiny Qwen 2 (it writes
nothing first)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from families import FAMILIES
from families.llm import card, runner
from tasks import probes
from tests import lm_checkpoints as lm
from tests import lm_offered
from tests.helpers import open_app, open_view
from views.serving import cached

pytest.importorskip("transformers")

PAGE = "families/llm/page.py"
ARCHS = ("llama", "qwen2")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    models = lm_offered.write_models(tmp_path_factory.mktemp("lm-card") / "models", ARCHS)
    with lm_offered.offered(models, ATTENTION_EXPLORER_LM=str(models / "tiny-llama")):
        yield models


def windows(tokenizer: Tokenizer, split: str) -> tuple[list[int], np.ndarray]:
    """(the ids written before any text, the held-out text's tokens): read here from tokenizer.json."""
    first = tokenizer.encode("").ids
    return first, np.array(tokenizer.encode(probes.english(split), add_special_tokens=False).ids)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_card_on_demand_is_the_models_own_numbers(folder, arch):
    name = f"tiny-{arch}"
    at = open_view(open_app(PAGE, llm_checkpoint=name), "Model card")
    (said,) = [m.value for m in at.markdown if m.value.startswith("**Measure this model**")]
    assert "s here**" in said and "nothing is written on the server" in said  # the time, before it runs
    assert not at.metric or all("Perplexity" not in m.label for m in at.metric)
    at.button(key="llm_measure").click().run()
    assert not at.exception, [e.value for e in at.exception]
    measured = cached(FAMILIES["llm"], "card")(name)  # what the page showed: the served result
    shown = {m.label: m.value for m in at.metric}
    assert shown["Perplexity, held-out English"] == f"{measured['english']['perplexity']:.2f}"
    assert [b.label for b in at.get("download_button")] == ["Download this card (JSON)"]

    # The same numbers from transformers' eager model on the same folder, and counts done here.
    reference = lm.reference(folder / name)
    tokenizer = Tokenizer.from_file(str(folder / name / "tokenizer.json"))
    first, text = windows(tokenizer, "test")
    width = card.WINDOW
    n = min(card.WINDOWS, len(text) // (width - len(first)))
    rows = np.concatenate([np.tile(first, (n, 1)).astype(np.int64),
                           text[: n * (width - len(first))].reshape(n, -1)], 1)  # fmt: skip
    with torch.inference_mode():
        logits = reference(torch.from_numpy(rows)).logits  # (N, W, V)
    targets = torch.from_numpy(rows[:, 1:]).flatten()
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets)
    english = measured["english"]
    assert english["windows"] == n and english["tokens"] == n * (width - 1)
    assert english["perplexity"] == pytest.approx(math.exp(float(nll)), rel=1e-4)  # logits agree to ~1e-5
    _, train = windows(tokenizer, "train")
    vocab = reference.config.vocab_size
    p = (np.bincount(train, minlength=vocab) + 1.0) / (len(train) + vocab)  # add-1 over the vocabulary
    assert english["unigram_perplexity"] == pytest.approx(math.exp(-np.log(p[rows[:, 1:]]).mean()), rel=1e-9)

    ids = card.probe_ids(runner.open_lm(name))  # (B, 1 + 2n): the first token, n random ones, the same again
    length = card.PROBE["length"]
    assert ids.shape == (card.PROBE["sequences"], 1 + 2 * length)
    np.testing.assert_array_equal(ids[:, 1 : 1 + length], ids[:, 1 + length :])
    specials = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    assert not specials & set(ids[:, 1:].ravel().tolist())  # ordinary tokens only
    assert ids[0, 0] == (first[0] if first else min(specials))  # <s>, else the first control token
    with torch.inference_mode():
        out = reference(torch.from_numpy(ids), output_attentions=True)
    w = torch.stack(out.attentions, 1).double()  # (B, L, h, T, T)
    second, every = torch.arange(length + 1, 2 * length + 1), torch.arange(1, 2 * length + 1)
    ic = measured["in_context"]
    expected = {"induction_scores": w[..., second, second - length + 1],
                "previous_token_scores": w[..., every, every - 1], "first_token_scores": w[..., every, 0]}
    for scores, want in expected.items():
        np.testing.assert_allclose(ic[scores], want.mean((0, -1)).numpy(), atol=1e-4)  # maps agree to 1e-4
    loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].transpose(1, 2), torch.from_numpy(ids[:, 1:]),
                                             reduction="none")  # (B, T − 1): the loss of token p at p − 1
    assert ic["first_copy_loss"] == pytest.approx(float(loss[:, 1:length].mean()), abs=1e-4)
    assert ic["second_copy_loss"] == pytest.approx(float(loss[:, length + 1 : 2 * length].mean()), abs=1e-4)
