"""The RNN through time and sequential vs parallel: gates recomposed from the model's weights give back
nn.GRU's states, gradients are autograd's (checked by finite differences), the gradient-by-distance
cards are what the code computes, the tabs show it, and the benchmark's table has its counts."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from families.seq2seq import parallel, rnn
from families.seq2seq.rnn_views import MEASURE_LENGTHS
from models.checkpoints import ASSETS
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from tasks import TASKS, held_out
from tasks.common import BOS_ID, Vocab, length_to_eos
from tests.helpers import array, chart, open_app, open_view, shipped

ROOT = Path(__file__).resolve().parent.parent
TASK = TASKS["dates"]
SOURCE = TASK.tokenize("saturday, 21 november 2026")
CARDS = sorted(ASSETS.glob("seq2seq-*.json"))


@pytest.fixture(scope="module")
def vocabs():
    ex = TASK.generate(300, 0)
    return Vocab.build(e.src for e in ex), Vocab.build(e.tgt for e in ex)


def tiny(vocabs, scoring, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    sv, tv = vocabs
    config = Seq2SeqConfig(len(sv), len(tv), scoring, emb_dim=6, enc_hidden=5, attn_dim=7)
    return Seq2Seq(config).to(dtype).eval()


# --- The encoder unrolled ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_gates_reproduce_the_grus_hidden_states(vocabs, seed):
    model, (sv, _) = tiny(vocabs, "additive", seed), vocabs
    unrolled = rnn.unroll_encoder(model, SOURCE, sv)
    ids = torch.tensor([sv.encode(SOURCE)])
    with torch.no_grad():
        own, _ = model.encoder(model.src_emb(ids))  # (1, S, 2H): nn.GRU, unpacked
    hidden = model.cfg.enc_hidden
    assert unrolled.max_abs_diff <= 1e-5
    for d, half, order in (
        (unrolled.directions[0], slice(0, hidden), range(len(SOURCE))),
        (unrolled.directions[1], slice(hidden, 2 * hidden), range(len(SOURCE) - 1, -1, -1)),
    ):
        gru_states = own[0, :, half].numpy()  # (S, H)
        np.testing.assert_allclose(d.hidden, gru_states, atol=1e-6)
        assert d.update.shape == d.reset.shape == d.candidate.shape == (len(SOURCE), hidden)
        assert (d.update > 0).all() and (d.update < 1).all() and (d.reset > 0).all() and (d.reset < 1).all()
        # The test's own recomposition from the returned gates and nn.GRU's previous state.
        previous = np.zeros(hidden, dtype=np.float32)
        for i in order:
            h = (1 - d.update[i]) * d.candidate[i] + d.update[i] * previous
            np.testing.assert_allclose(h, gru_states[i], atol=1e-5)
            previous = gru_states[i]
    # The summary the baseline reads: forward state after the last token, backward after the first.
    np.testing.assert_allclose(unrolled.final[:hidden], own[0, -1, :hidden].numpy(), atol=1e-6)
    np.testing.assert_allclose(unrolled.final[hidden:], own[0, 0, hidden:].numpy(), atol=1e-6)


def test_gates_of_the_shipped_model_reproduce_its_states():
    model, card, sv, _ = shipped("seq2seq-dates-additive")
    unrolled = rnn.unroll_encoder(model, held_out("dates", 1)[0].src, sv)
    assert unrolled.max_abs_diff <= 1e-5


def test_same_weights_statement_lists_the_models_own_parameters(vocabs):
    model = tiny(vocabs, "dot")
    shared = rnn.shared_weights(model)
    expected = {"src_emb.weight"} | {f"encoder.{n}" for n, _ in model.encoder.named_parameters()}
    assert {w.name for w in shared} == expected and len(shared) == len(expected) == 9
    for w in shared:
        assert w.shape == tuple(model.get_parameter(w.name).shape)
    shapes = {w.name: w.shape for w in shared}
    e, h = model.cfg.emb_dim, model.cfg.enc_hidden
    assert shapes["encoder.weight_ih_l0"] == (3 * h, e) and shapes["encoder.weight_hh_l0_reverse"] == (
        3 * h,
        h,
    )


# --- Gradient by distance ------------------------------------------------------------------------
def log_p(model, src, lens, out, embedded, t):
    tgt_in = torch.cat([torch.full_like(out[:, :1], BOS_ID), out[:, :-1]], 1)
    logits, _ = model(src, lens, tgt_in, embedded=embedded)
    return torch.log_softmax(logits, -1)[0, t, out[0, t]]


@pytest.mark.parametrize("scoring", ["additive", "none"])
def test_gradient_norms_match_finite_differences(vocabs, scoring):
    model, (sv, _) = tiny(vocabs, scoring, seed=3, dtype=torch.float64), vocabs
    short, long = TASK.tokenize("3/5/51"), SOURCE
    src = torch.tensor([sv.encode(short) + [0] * (len(long) - len(short)), sv.encode(long)])
    lens = torch.tensor([len(short), len(long)])
    out = torch.tensor([[5, 6, 7, 2, 2], [8, 9, 4, 10, 2]])  # (2, 5): </s> (id 2) ends row 0 early
    norms = rnn.gradient_norms(model, src, lens, out)  # (2, T, S)
    assert norms.shape == (2, 5, len(long)) and norms.dtype == torch.float64
    assert torch.isnan(norms[0, 4]).all() and torch.isnan(norms[0, :, len(short) :]).all()
    assert not torch.isnan(norms[1]).any()
    eps = 1e-6
    for row, t, i in ((0, 0, 0), (0, 3, len(short) - 1), (1, 2, 5), (1, 4, len(long) - 1)):
        base = model.src_emb(src[row : row + 1]).detach()  # (1, S, E)
        grad = torch.zeros(model.cfg.emb_dim, dtype=torch.float64)
        for e in range(model.cfg.emb_dim):
            up, down = base.clone(), base.clone()
            up[0, i, e] += eps
            down[0, i, e] -= eps
            with torch.no_grad():
                args = (model, src[row : row + 1], lens[row : row + 1], out[row : row + 1])
                grad[e] = (log_p(*args, up, t) - log_p(*args, down, t)) / (2 * eps)
        assert float(norms[row, t, i]) == pytest.approx(float(grad.norm()), rel=1e-6, abs=1e-10)


def test_distance_curve_is_the_mean_norm_at_each_distance():
    norms = np.arange(15, dtype=np.float64).reshape(3, 5) + 1.0  # (T=3, S=5)
    norms[2, 4] = np.nan  # a pair outside the output
    curve = rnn.distance_curve(norms)
    assert curve.distance.tolist() == [0, 1, 2, 3, 4]
    for d in range(5):
        pairs = [
            norms[t, i] for t in range(3) for i in range(5) if abs(t - i) == d and not np.isnan(norms[t, i])
        ]
        assert curve.n_pairs[d] == len(pairs)
        assert curve.mean_norm[d] == pytest.approx(np.mean(pairs))
    assert curve.n_pairs.sum() == 14
    flat = rnn.DistanceCurve(np.arange(3), np.array([1.0, 1.0, 1.0]), np.array([9, 9, 9]))
    fall = rnn.DistanceCurve(np.arange(4), np.array([1.0, 0.5, 0.25, 0.1]), np.array([9, 9, 3, 1]))
    assert rnn.ratio_at_longest(fall, flat) == (2, 0.25)
    assert rnn.ratio_at_longest(fall, flat, min_pairs=5) == (1, 0.5)
    assert rnn.ratio_at_longest(fall, flat, min_pairs=10) is None


def test_gradient_run_is_teacher_forced_on_the_models_own_output():
    model, _, sv, tv = shipped("seq2seq-dates-none")
    from families.seq2seq.runner import run as run_seq2seq

    (greedy,) = run_seq2seq(model, TASK, SOURCE, sv, tv)
    grads = rnn.gradient_run(model, TASK, SOURCE, sv, tv)
    assert grads.output == greedy.output and grads.norms.shape == (len(greedy.output), len(SOURCE))
    assert grads.curve.n_pairs.sum() == grads.norms.size and (grads.norms > 0).all()


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_every_seq2seq_card_has_its_gradient_by_distance(path):
    entry = json.loads(path.read_text())["gradient_by_distance"]
    assert entry["definition"] == rnn.DISTANCE and entry["teacher_forcing"] == rnn.TEACHER_FORCING
    n = entry["n"]
    assert n >= 100 and entry["distance"] == list(range(len(entry["mean_norm"])))
    assert len(entry["n_pairs"]) == len(entry["distance"]) and all(c > 0 for c in entry["n_pairs"])
    # The pair counts follow from the greedy outputs' and sources' lengths alone: recount them.
    model, card, sv, _ = shipped(path.stem)
    task = TASKS[card["task"]]
    counts = np.zeros(len(entry["n_pairs"]), dtype=np.int64)
    for ex in held_out(task.name, n):
        ids = torch.tensor([sv.encode(ex.src)])
        with torch.inference_mode():
            out, _ = model.greedy(ids, torch.tensor([len(ex.src)]), max_len=task.max_target)
        t_len = length_to_eos(out[0].tolist())
        d = np.abs(np.arange(t_len)[:, None] - np.arange(len(ex.src))[None, :])
        counts += np.bincount(d.ravel(), minlength=len(counts))
    assert counts.tolist() == entry["n_pairs"]


@pytest.mark.parametrize("name", ["seq2seq-dates-additive", "seq2seq-dates-none"])
def test_card_curve_equals_a_recomputation(name):
    entry = json.loads((ASSETS / f"{name}.json").read_text())["gradient_by_distance"]
    model, card, sv, tv = shipped(name)
    task = TASKS[card["task"]]
    curve = rnn.held_out_curve(model, task, held_out(task.name, entry["n"]), sv, tv, batch=entry["n"])
    # Through ~50 GRU steps the gradient shrinks to ~1e-3 of its size at distance 0; float32 rounding on
    # another CPU or thread count is relative to the larger terms summed on the way, so the tail is
    # compared at the curve's own scale (atol), the rest to 0.1% (rtol). With one thread the tail moved
    # by 3.9e-8 = 5e-4 of the curve's maximum (0.25% of those points): the bound is 1e-3 of it.
    scale = float(np.max(entry["mean_norm"]))
    np.testing.assert_allclose(curve.mean_norm, entry["mean_norm"], rtol=1e-3, atol=1e-3 * scale)
    assert curve.n_pairs.tolist() == entry["n_pairs"]


# --- The tabs ------------------------------------------------------------------------------------
def test_rnn_tab_shows_the_models_states_gates_check_and_gradients():
    at = open_view(open_app("families/seq2seq/page.py"), "RNN through time")
    model, _, sv, tv = shipped("seq2seq-dates-additive")
    src = held_out("dates", 1)[0].src
    unrolled = rnn.unroll_encoder(model, src, sv)
    hidden = array(chart(at, "s2s_rnn_hidden")["data"][0]["z"]).reshape(unrolled.directions[0].hidden.shape)
    np.testing.assert_array_equal(hidden, unrolled.directions[0].hidden)
    update = array(chart(at, "s2s_rnn_update")["data"][0]["z"]).reshape(hidden.shape)
    np.testing.assert_allclose(update, unrolled.directions[0].update, atol=1e-6)
    for key in ("s2s_rnn_reset", "s2s_rnn_candidate", "s2s_rnn_grad_att", "s2s_rnn_grad_none"):
        assert chart(at, key)["data"]
    (check,) = [m.value for m in at.markdown if "max |h recomposed − h from nn.GRU|" in m.value]
    assert float(re.search(r"nn\.GRU\| = ([0-9.e+-]+)", check).group(1)) <= 1e-5
    assert any("max |c_t − [h→; h←]| = 0.00e+00" in m.value for m in at.markdown)
    assert any("many-to-one" in m.value and "additive (Bahdanau)" in m.value for m in at.markdown)
    # The curve on this input is the runner's, for both models.
    curve = chart(at, "s2s_rnn_grad_curve")["data"]
    ours = rnn.gradient_run(model, TASK, src, sv, tv).curve
    np.testing.assert_allclose(array(curve[0]["y"]), ours.mean_norm, rtol=1e-4)
    assert [c["name"] for c in curve] == ["attention (additive (Bahdanau))", "no attention"]
    assert len(chart(at, "s2s_rnn_grad_heldout")["data"]) == 2
    at.radio(key="s2s_rnn_direction").set_value("backward").run()
    hidden = array(chart(at, "s2s_rnn_hidden")["data"][0]["z"]).reshape(hidden.shape)
    np.testing.assert_array_equal(hidden, unrolled.directions[1].hidden)
    at.toggle(key="s2s_rnn_normalise").set_value(True).run()
    assert array(chart(at, "s2s_rnn_grad_curve")["data"][1]["y"])[0] == pytest.approx(1.0)
    assert not at.exception


def test_rnn_tab_with_unknown_tokens_gives_no_traceback():
    at = open_app("families/seq2seq/page.py")
    at.radio(key="input").set_value("text").run()
    at.text_input(key="text").set_value("21 Nov 2026 ☃").run()
    open_view(at, "RNN through time")
    assert not at.exception and chart(at, "s2s_rnn_hidden")["data"]


def test_parallel_tab_draws_the_saved_table_and_measures_here():
    saved = parallel.read_table()
    before = parallel.TABLE_PATH.stat().st_mtime_ns
    at = open_view(open_app("families/seq2seq/page.py"), "Sequential vs parallel")
    figure = chart(at, "s2s_par_saved")
    assert len(figure["data"]) == 4 and figure["layout"]["xaxis"]["type"] == "log"
    assert [int(x) for x in figure["data"][0]["x"]] == saved.lengths
    np.testing.assert_allclose(array(figure["data"][0]["y"]), saved.times("gru", "forward"))
    assert any("Self-attention becomes slower than the GRU" in m.value for m in at.markdown)
    assert at.dataframe, "the counts table"
    at.button(key="s2s_par_measure").click().run()
    assert not at.exception
    mine = chart(at, "s2s_par_mine")
    assert [int(x) for x in mine["data"][0]["x"]] == list(MEASURE_LENGTHS)
    assert parallel.TABLE_PATH.stat().st_mtime_ns == before, "the app writes nothing to assets"


# --- The benchmark --------------------------------------------------------------------------------
def test_benchmark_tiny_run_writes_its_table_with_the_counts(tmp_path):
    out = tmp_path / "table.json"
    command = [sys.executable, "benchmarks/bench_parallel.py", "--lengths", "4", "8", "--repeats", "2"]
    done = subprocess.run([*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    raw = json.loads(out.read_text())
    for key in ("machine", "torch_threads", "torch_version", "date", "width", "batch", "heads", "repeats"):
        assert key in raw
    table = parallel.ParallelTable.from_json(raw)
    d = table.width
    assert table.lengths == [4, 8]
    for row in table.rows:
        n = row.length
        assert (row.gru_sequential_steps, row.attention_sequential_steps) == (n, 1)
        assert (row.gru_longest_path, row.attention_longest_path) == (n - 1, 1)
        assert row.gru_multiply_adds == n * 6 * d * d
        assert row.attention_multiply_adds == n * 4 * d * d + 2 * n * n * d
        assert all(
            getattr(row, f"{layer}_{mode}_ms") > 0 for layer in parallel.LAYERS for mode in parallel.MODES
        )
    assert "n" in done.stdout and "self-attention slower than the GRU" in done.stdout
    bad = subprocess.run([*command[:2], "--lengths", "1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "lengths must be" in bad.stderr


def test_crossover_is_the_length_from_which_attention_stays_slower():
    def table(gru, attention):
        rows = tuple(
            parallel.Row(n, g, a, g, a, n, 1, n - 1, 1, 0, 0)
            for n, g, a in zip((16, 32, 64, 128), gru, attention, strict=True)
        )
        return parallel.ParallelTable(rows, 64, 4, 1, 1, "cpu", "m", 1, "t", "d")

    assert table([1, 2, 4, 8], [0.5, 3, 5, 9]).crossover("forward") == 32
    assert table([1, 2, 4, 8], [2, 1, 3, 9]).crossover("forward") == 128  # slower, faster, then slower
    assert table([1, 2, 4, 8], [0.5, 1, 2, 4]).crossover("forward") is None


def test_a_missing_or_broken_table_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match="bench_parallel.py"):
        parallel.read_table(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bench_parallel.py"):
        parallel.read_table(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="bench_parallel.py"):
        parallel.read_table(tmp_path / "old.json")
