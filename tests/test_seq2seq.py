"""The seq2seq model's traces are its own computation, consistent across decoding paths and threads."""

import pytest
import torch

from families import FAMILIES
from families.seq2seq.runner import run as run_seq2seq
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from tasks import TASKS, InputError, prepare
from tasks.common import EOS_ID, Vocab
from tests.helpers import run_together
from training.loop import train

TASK = TASKS["dates"]


@pytest.fixture(scope="module")
def vocabs():
    ex = TASK.generate(300, 0)
    return Vocab.build(e.src for e in ex), Vocab.build(e.tgt for e in ex)


def tiny(vocabs, scoring, seed=0):
    torch.manual_seed(seed)
    sv, tv = vocabs
    return Seq2Seq(Seq2SeqConfig(len(sv), len(tv), scoring, emb_dim=8, enc_hidden=8, attn_dim=8)).eval()


@pytest.mark.parametrize("scoring", ["additive", "dot", "general", "scaled_dot"])
def test_greedy_trace_equals_teacher_forcing_on_its_own_output(vocabs, scoring):
    model, (sv, tv) = tiny(vocabs, scoring), vocabs
    src = TASK.tokenize("saturday, 21 november 2026")
    (greedy,) = run_seq2seq(model, TASK, src, sv, tv)
    stopped = greedy.output[-1] == "</s>"
    reference = greedy.output[:-1] if stopped else greedy.output
    (forced,) = run_seq2seq(model, TASK, src, sv, tv, reference=reference)
    n = len(greedy.output)  # an untrained model may not stop: compare the steps both ran
    for field in ("weights", "raw_scores", "contexts", "states", "token_log_probs"):
        torch.testing.assert_close(
            torch.from_numpy(getattr(greedy, field)), torch.from_numpy(getattr(forced, field)[:n])
        )
    torch.testing.assert_close(
        torch.from_numpy(greedy.weights @ greedy.memory),
        torch.from_numpy(greedy.contexts),
        atol=1e-5,
        rtol=1e-5,
    )
    assert greedy.weights.sum(-1) == pytest.approx(1.0, abs=1e-5)


def test_beam_keeps_each_hypothesis_attention(vocabs):
    model, (sv, tv) = tiny(vocabs, "additive", seed=1), vocabs
    src = TASK.tokenize("nov 21 2026")
    (greedy,) = run_seq2seq(model, TASK, src, sv, tv)
    (one,) = run_seq2seq(model, TASK, src, sv, tv, beam=1)
    assert one.output == greedy.output
    hyps = run_seq2seq(model, TASK, src, sv, tv, beam=4)
    assert len(hyps) == 4 and len({h.output for h in hyps}) == 4
    norm = [h.log_prob / len(h.output) for h in hyps]
    assert norm == sorted(norm, reverse=True)
    for h in hyps:  # each hypothesis' numbers equal a teacher-forced replay of that hypothesis
        assert h.weights.shape == (len(h.output), len(src))
        ref_rows = h.output[:-1] if h.output[-1] == "</s>" else h.output
        (replay,) = run_seq2seq(model, TASK, src, sv, tv, reference=tuple(ref_rows))
        replayed = torch.from_numpy(replay.weights[: len(h.output)])
        torch.testing.assert_close(torch.from_numpy(h.weights), replayed)
        assert h.log_prob == pytest.approx(float(replay.token_log_probs[: len(h.output)].sum()), abs=1e-4)


def test_baseline_has_no_attention_and_a_fixed_context(vocabs):
    model, (sv, tv) = tiny(vocabs, "none"), vocabs
    (run,) = run_seq2seq(model, TASK, TASK.tokenize("21.11.26"), sv, tv)
    assert run.weights is None and run.raw_scores is None
    assert (run.contexts == run.contexts[0]).all()


def test_padding_does_not_change_a_sentence(vocabs):
    model, (sv, _) = tiny(vocabs, "general"), vocabs
    a, b = TASK.tokenize("3/5/51"), TASK.tokenize("saturday, 21 november 2026")
    src = torch.tensor([sv.encode(a) + [0] * (len(b) - len(a)), sv.encode(b)])
    with torch.inference_mode():
        ids, trace = model.greedy(src, torch.tensor([len(a), len(b)]), max_len=12, return_trace=True)
        alone, alone_trace = model.greedy(
            src[:1, : len(a)], torch.tensor([len(a)]), max_len=12, return_trace=True
        )
    n = alone.shape[1]
    assert torch.equal(ids[0, :n], alone[0])
    torch.testing.assert_close(trace.weights[0, :n, : len(a)], alone_trace.weights[0])
    assert (trace.weights[0, :, len(a) :] == 0).all()  # padding gets exactly zero weight
    # masked_scores are what went into the softmax: -inf on padding, the weights their softmax
    assert torch.isneginf(trace.masked_scores[0, :, len(a) :]).all()
    torch.testing.assert_close(torch.softmax(trace.masked_scores, -1), trace.weights)


def test_shared_model_across_threads_matches_serial(vocabs):
    model, (sv, tv) = tiny(vocabs, "additive"), vocabs
    texts = [e.src for e in TASK.generate(12, 9)]
    serial = [run_seq2seq(model, TASK, s, sv, tv)[0] for s in texts]
    got = [None] * len(texts)

    def work(i):
        got[i] = run_seq2seq(model, TASK, texts[i], sv, tv)[0]

    run_together(work, len(texts))
    for a, b in zip(got, serial, strict=True):
        assert a.output == b.output and (a.weights == b.weights).all()


def test_prepare_refuses_empty_and_too_long(vocabs):
    sv, _ = vocabs
    with pytest.raises(InputError, match="Type a source text"):
        prepare(TASK, "   \n", sv)
    with pytest.raises(InputError, match=f"at most {TASK.max_source} characters"):
        prepare(TASK, "1" * 100_000, sv)
    assert prepare(TASK, "21 Нояб 2026 🎉", sv).unknown == ("н", "о", "я", "б", "🎉")


def test_short_training_run_lowers_the_loss():
    _, card = train(
        FAMILIES["seq2seq"], "dates", "additive", steps=80, n_train=400, progress=False, evaluate_splits=False
    )
    curve = [p["loss"] for p in card["loss_curve"]]
    assert curve[-1] < 0.6 * curve[0]
    assert EOS_ID == 2 and card["params"] > 0
