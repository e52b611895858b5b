"""Every answer key of the learner's path is the live model's, not a constant: for each step, on its
preset and on its contrast (another input or another checkpoint), the key its quiz holds is recomputed
here from the runners (and for numbers from the raw arrays, by numpy), and the two keys differ.

The runners run on the app's own cached models (`tests.helpers.shipped`), so a recomputation by the
same code is the same float computation; where numpy recomputes what torch computed (a softmax, an
entropy, a norm), the comparison has a tolerance far below the quiz's own."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from analysis import circuits as C
from analysis import lm
from families import FAMILIES
from families.bert.runner import encode, folders, projections
from families.captioner import runner as captioner
from families.gpt import runner as gpt
from families.llm import runner as llama
from families.seq2seq import runner as seq2seq
from families.transformer import runner as transformer
from families.vit import runner as vit
from families.vit.inputs import gallery_picture
from families.vit.preprocess import letterbox
from models.attention import Interventions
from models.checkpoints import load_card
from tasks import TASKS, prepare, probes
from tasks.common import EOS
from tasks.images import model_input
from tests.helpers import shipped
from tests.test_path import registered
from views.serving import held_out_examples, loaded_model

STEPS = [pytest.param(f, s, id=s.id) for f, s in registered()]


@pytest.fixture(scope="module", autouse=True)
def llm(app_llm):
    """The app's SmolLM2 is the session's (`tests.conftest.app_llm`)."""
    return app_llm


def source(task_name: str, query, name: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(source tokens, reference) as the page reads its URL."""
    task = TASKS[task_name]
    if query.get("input", "example") == "example":
        (ex,) = [e for e in held_out_examples(task_name) if task.joiner.join(e.src) == query["example"]]
        return ex.src, ex.tgt
    _, _, src_vocab, _ = shipped(name)
    return prepare(task, query["text"], src_vocab).tokens, task.tokenize(query.get("ref", "")) or None


def tf_run(query, iv=None, *, variant=None, forced=False):
    name = f"transformer-dates-{variant or query.get('model', 'h4')}"
    model, _, src_vocab, tgt_vocab = shipped(name)
    src, reference = source("dates", query, name)
    return transformer.run(model, TASKS["dates"], src, src_vocab, tgt_vocab, iv or Interventions(),
                           reference=tuple(reference) if forced else None)  # fmt: skip


def chosen(quiz) -> int:
    """The index of the key among the options (the options list positions or heads in order)."""
    return quiz.options.index(quiz.answer)


def entropy(weights: np.ndarray) -> float:
    w = weights.astype(np.float64)
    return float(-(w * np.log(np.where(w > 0, w, 1.0))).sum(-1).mean())


# --- Each step's key, recomputed -----------------------------------------------------------------
def key_bottleneck(query, quiz):
    src, reference = source("translation", query, "seq2seq-translation-none")
    model, _, src_vocab, tgt_vocab = shipped("seq2seq-translation-none")
    fixed = seq2seq.run(model, TASKS["translation"], src, src_vocab, tgt_vocab)[0].output
    wanted = (*reference, EOS)
    wrong = [t for t, (a, b) in enumerate(zip(fixed, wanted, strict=False)) if a != b]
    assert chosen(quiz) == (wrong[0] + 1 if wrong else 0)  # option 0: "it writes the reference"


def key_alignment(query, quiz):
    model, _, src_vocab, tgt_vocab = shipped("seq2seq-dates-additive")
    run = seq2seq.run(model, TASKS["dates"], prepare(TASKS["dates"], query["text"], src_vocab).tokens,
                      src_vocab, tgt_vocab)[0]  # fmt: skip
    first_month_digit = run.output.index("-") + 1  # yyyy-mm-dd
    assert chosen(quiz) == int(np.argmax(run.weights[first_month_digit]))


def key_scaling(query, quiz):
    on, off = tf_run(query), tf_run(query, Interventions(scaled=False))
    lower = entropy(off.maps["encoder"].weights) < entropy(on.maps["encoder"].weights)
    same = off.text == on.text
    want = f"entropy {'lower' if lower else 'higher'}, output {'stays the same' if same else 'changes'}"
    assert quiz.answer == want


def key_self_attention(query, quiz):
    loaded = loaded_model(FAMILIES["bert"], next(iter(folders())))
    layer = projections(loaded, encode(loaded, query["a"]))[0]
    token = re.search(r"token ‘(.+?)’ put on itself", quiz.question)[1]
    i = [t.lstrip("#") for t in layer.tokens].index(token.replace("\\", ""))
    x = layer.x.astype(np.float64)
    scores = x @ x.T / np.sqrt(x.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    assert quiz.answer == pytest.approx((weights / weights.sum(-1, keepdims=True))[i, i], abs=1e-5)


def key_masks(query, quiz):
    on, off = tf_run(query, forced=True), tf_run(query, Interventions(causal=False), forced=True)
    assert chosen(quiz) == int(np.argmax(np.abs(off.token_log_probs - on.token_log_probs)))


def key_multi_head(query, quiz):
    config = load_card(f"transformer-dates-{query['model']}")["config"]
    assert quiz.answer == config["d_model"] // config["n_heads"]
    assert f"h = {config['n_heads']} heads" in quiz.question


def key_positions(query, quiz):
    asked = re.search(r"head (\d+): .*? query (\d+) .*? at position (\d+)\?", quiz.question)
    head, row, col = map(int, asked.groups())
    twin = int(re.search(r"look at position (\d+)", quiz.question)[1])
    run = tf_run(query, Interventions(positional=False))
    weights = run.maps["encoder"].weights[0, head, row]
    assert run.source[col] == run.source[twin] and col != twin != row != col
    assert quiz.answer == weights[col]
    # One key twice: the same score, up to how a matmul rounds two equal rows (the same here so far).
    assert abs(weights[col] - weights[twin]) <= 1e-6


def key_block(query, quiz):
    streams = [tf_run(query, variant=v).layers["encoder"][-1].feed_forward.x_out for v in ("h4", "h4-post")]
    norms = [np.linalg.norm(x.astype(np.float64), axis=-1).mean() for x in streams]
    assert quiz.answer == pytest.approx(norms[0] / norms[1], rel=1e-5)


def key_cross(query, quiz):
    layer, head = map(int, re.search(r"layer (\d+), head (\d+)", quiz.question).groups())
    run = tf_run(query)
    last = max(t for t, tok in enumerate(run.output) if tok != EOS)
    assert chosen(quiz) == int(np.argmax(run.maps["cross"].weights[layer, head, last]))


def key_induction(query, quiz):
    loaded = loaded_model(FAMILIES["gpt"], gpt.DEFAULT)
    if query.get("gpt_input") == "random":
        prompt = gpt.random_repeat(gpt.REPEAT, int(query["gpt_seed"]), loaded.model.cfg.vocab)
    else:
        prompt = gpt.prepare(loaded, query["gpt_prompt"])
    run = gpt.run(loaded, prompt)
    scores = lm.head_scores(run.maps["self"].weights, prompt.ids)["induction"]
    layer, head = np.unravel_index(int(np.nanargmax(scores)), scores.shape)
    assert quiz.answer == f"L{layer} H{head}"


def key_sinks(query, quiz, model):
    prompt = llama.prepare(model, query["llm_prompt"])
    hidden = llama.run(model, prompt, Interventions(hidden_keys=(0,)), layers=())
    assert quiz.answer == hidden.top_tokens[-1][0]


def key_name_movers(query, quiz, model):
    (pair,) = [c for c in (*probes.ioi_set(168, probes.SEED, "preset"), *probes.fact_set())
               if c.prompt == query["llm_prompt"]]  # fmt: skip
    ids = llama.prepare(model, pair.prompt).ids
    metric = C.Pair(model.vocabulary.word(" " + pair.target), model.vocabulary.word(" " + pair.rival))
    heads = C.direct_attribution(model.model, C.forward(model.model, ids, metric), metric).heads
    layer, head = np.unravel_index(int(np.argmax(heads)), heads.shape)
    assert quiz.answer == f"L{layer} H{head}"


def key_hide_regions(query, quiz):
    model, _, _, vocabulary = shipped(captioner.DEFAULT)
    (path,) = [p for p in captioner.SAMPLES if p.stem == query["sample"]]
    _, x = model_input(Image.open(path).convert("RGB"))
    before = captioner.run(model, vocabulary, x)[0]
    objects = {w for kind in captioner.OBJECT_WORDS for w in kind}
    word = next(t for t, w in enumerate(before.output) if w in objects)
    alpha = before.alphas[word].ravel().astype(np.float64)
    kept, regions = 0.0, []
    for r in np.argsort(-alpha, kind="stable"):  # the fewest regions that hold half the word's attention
        regions.append(int(r))
        kept += alpha[r]
        if kept >= 0.5:
            break
    after = captioner.run(model, vocabulary, x, Interventions(hidden_keys=tuple(sorted(regions))))[0]
    same = after.text == before.text
    assert quiz.answer == ("the caption stays the same" if same else "the caption changes")


def key_patches(query, quiz):
    seen = letterbox(gallery_picture(query["vit_photo"]), vit.SIDE)[0]
    run = vit.run(loaded_model(FAMILIES["vit"], vit.NAME).model, seen)
    rows = run.weights[-1, :, 0, 1:].astype(np.float64)  # (h, N): [CLS]'s row over the patches, last layer
    rows /= rows.sum(-1, keepdims=True)
    # The fewest patches holding 60%: all but those whose ascending running sum stays within 40%.
    sizes = [rows.shape[-1] - int((np.cumsum(np.sort(r)) <= 0.4).sum()) for r in rows]
    assert quiz.answer == f"H{int(np.argmin(sizes))}"
    assert f"sits in {min(sizes)} of the {rows.shape[-1]} patches" in quiz.feedback


KEYS = {
    "bottleneck": key_bottleneck, "alignment": key_alignment, "scaling": key_scaling,
    "self-attention": key_self_attention, "masks": key_masks, "multi-head": key_multi_head,
    "positions": key_positions, "block": key_block, "cross-attention": key_cross, "induction": key_induction,
    "sinks": key_sinks, "name-movers": key_name_movers, "hide-regions": key_hide_regions,
    "patches": key_patches,
}  # fmt: skip


def test_every_step_of_the_story_has_its_key_recomputed_here():
    assert {s.id for _, s in registered()} == set(KEYS)


@pytest.mark.slow  # two inputs per step; the LLM's steps run the 135M model
@pytest.mark.parametrize("family, step", STEPS)
def test_each_key_is_the_models_own_and_changes_with_the_input(family, step, llm):
    quizzes = []
    for query in (step.query, step.contrast):
        quiz = step.quiz(step.measure(family, query))
        KEYS[step.id](query, quiz, llm) if step.id in ("sinks", "name-movers") else KEYS[step.id](query, quiz)
        assert quiz.options == () or quiz.answer in quiz.options
        quizzes.append(quiz)
    preset, contrast = quizzes
    if preset.options:
        assert preset.answer != contrast.answer, step.id
    else:
        assert abs(float(preset.answer) - float(contrast.answer)) > preset.tolerance, step.id
