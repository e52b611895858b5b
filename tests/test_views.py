"""The runner protocol and the generic views, against every registered family.

Each family's `example()` runs its shipped checkpoint on its default input; the generic views
(model view, head view, statistics, export, intervention deltas) must draw exactly those weights.
"""

from __future__ import annotations

import ast
import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analysis.protocol import AttentionMaps
from analysis.stats import head_statistics, to_csv, to_npz
from families import FAMILIES
from tests.helpers import sent, sent_maps


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def example(request):
    return request.param, FAMILIES[request.param].example()


def test_every_run_follows_the_protocol(example):
    name, run = example
    assert run.maps, f"{name} returns no attention maps"
    assert len(run.token_log_probs) == len(run.output) and (run.token_log_probs <= 0).all()
    for block, maps in run.maps.items():
        n_layers, n_heads, tq, tk = maps.weights.shape
        assert maps.weights.dtype == np.float32 and (tq, tk) == (len(maps.queries), len(maps.keys)), block
        np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5, err_msg=f"{name} {block}")


def test_statistics_are_the_weights_own(example):
    _, run = example
    for maps in run.maps.values():
        rows = head_statistics(maps)
        assert len(rows) == maps.n_layers * maps.n_heads
        last = maps.weights[-1, -1].astype(np.float64)  # the last row is (layer L-1, head h-1)
        by_hand = np.mean([-sum(p * math.log(p) for p in row if p > 0) for row in last])
        assert rows[-1]["entropy (nats)"] == pytest.approx(by_hand, abs=1e-4)
        assert rows[-1]["mass on special tokens"] == pytest.approx(
            last[:, maps.special_keys].sum(-1).mean(), abs=1e-6
        )
        for row in rows:
            assert 0 <= row["entropy (nats)"] <= math.log(len(maps.keys)) + 1e-5


def parse_csv(text: str) -> tuple[list[str], list[str], np.ndarray]:
    header, *rows = list(csv.reader(io.StringIO(text)))
    return header[1:], [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


def test_csv_and_npz_exports_round_trip(example):
    _, run = example
    for maps in run.maps.values():
        keys, queries, values = parse_csv(to_csv(maps, maps.n_layers - 1, 0))
        assert keys == list(maps.keys) and queries == list(maps.queries)
        np.testing.assert_allclose(values, maps.weights[-1, 0], rtol=1e-6, atol=1e-9)
    saved = np.load(io.BytesIO(to_npz(run.maps)))
    for block, maps in run.maps.items():
        np.testing.assert_array_equal(saved[f"{block}_weights"], maps.weights)
        assert list(saved[f"{block}_keys"]) == list(maps.keys)


def test_csv_keeps_tokens_with_quotes_commas_newlines_and_emoji():
    tokens = ['say "hi"', "a,b", "line\nbreak", "🎉", "=1+1"]
    weights = np.full((len(tokens), len(tokens)), 1 / len(tokens))
    keys, queries, values = parse_csv(to_csv(AttentionMaps.single("t", weights, tokens, tokens), 0, 0))
    assert keys == tokens and queries == tokens
    np.testing.assert_allclose(values, weights, rtol=1e-6)


def render_views(family: str) -> None:
    """An app of nothing but the generic views, on one family's example run."""
    from families import FAMILIES
    from views import attention

    run = FAMILIES[family].example()
    block, maps = next(iter(run.maps.items()))
    attention.model_view(maps, "t")
    attention.head_view(maps, "t")
    attention.statistics(run.maps, "t")
    attention.export(run.maps, "t")
    attention.intervention_deltas(run, run)


def test_generic_views_draw_the_models_weights(example):
    name, run = example
    at = AppTest.from_function(render_views, args=(name,), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    maps = next(iter(run.maps.values()))
    for key, views in (("t_model", ["model", "map"]), ("t_heads", ["lines"])):
        header, _, _ = sent(at, key)
        assert header["views"] == views and header["queries"] == list(maps.queries)
        np.testing.assert_array_equal(sent_maps(at, key), maps.weights)  # every layer × head, the model's own
    stats = at.dataframe[0].value
    assert len(stats) == sum(m.n_layers * m.n_heads for m in run.maps.values())
    assert len(at.get("download_button")) == 2
    (deltas,) = at.table
    assert (deltas.value["max |Δw|"] == 0).all()  # a run compared with itself changed nothing


def test_cached_runs_are_read_only():
    """A cached run is one object every session shares: no view may write into its arrays."""
    from models.attention import Interventions
    from tasks import held_out
    from views.serving import cached

    src = held_out("dates", 1)[0].src
    for run in (
        cached(FAMILIES["seq2seq"], "runs")("seq2seq-dates-additive", src)[0],
        cached(FAMILIES["transformer"], "run")("transformer-dates-h4", src, Interventions()),
    ):
        weights = next(iter(run.maps.values())).weights
        with pytest.raises(ValueError, match="read-only"):
            weights[0, 0, 0, 0] = 0.5
        with pytest.raises(ValueError, match="read-only"):
            run.token_log_probs[0] = 0.0


def test_each_served_call_has_its_own_cache(monkeypatch):
    """`views.serving.cached` wraps every call a family serves in a cache of its own: two calls with
    the same inputs never share results, and each keeps its own ``max_entries``; keyword arguments named
    with a leading underscore are handed to the call and left out of its key."""
    from analysis.family import Served
    from views import serving

    calls = []

    def call(tag: str):
        return lambda loaded, x: calls.append((tag, x)) or (tag, loaded, x)

    def handed(loaded, x, *, _given=None):  # a result another call computed, handed over
        return calls.append(("h", x)) or (x, _given)

    served = {"a": Served(call("a"), max_entries=1), "b": Served(call("b"), max_entries=4)}
    served["h"] = Served(handed)
    load = Served(lambda name: f"loaded {name}")
    family = replace(FAMILIES["gpt"], name="fake", load=load, served=served)  # a family of its own
    monkeypatch.setattr(serving, "_served", {})
    a, b = serving.cached(family, "a"), serving.cached(family, "b")
    assert serving.cached(family, "a") is a  # built once
    assert (a("m", 1), b("m", 1)) == (("a", "loaded m", 1), ("b", "loaded m", 1))
    for x in (2, 1):  # a keeps one entry: 1 was evicted by 2; b keeps four
        a("m", x), b("m", x)
    assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 1)]
    h = serving.cached(family, "h")  # a keyword with a leading underscore reaches the call, not the key
    assert (h("m", 1, _given="run"), h("m", 1, _given="another")) == ((1, "run"), (1, "run"))
    assert calls[-1:] == [("h", 1)]
    with pytest.raises(KeyError, match="serves no 'c'"):
        serving.cached(family, "c")


def test_every_importance_tab_measures_with_a_served_call():
    tabs = {name: f.importance for name, f in FAMILIES.items() if f.importance is not None}
    assert tabs, "no family brings an Attention vs importance tab"
    for name, tab in tabs.items():
        assert tab.measure in FAMILIES[name].served, name
        assert (tab.layers_heads is None) == (tab.query == "rows"), name  # rows: no layer or head pickers
    assert len({tab.key for tab in tabs.values()}) == len(tabs)  # widget keys never collide


def test_the_server_caps_mallocs_arenas_where_glibc_runs_it():
    """Freed memory kept in per-thread arenas grew a 16-session soak by +577 MB; with 2 arenas it was
    given back (bench_soak.py). The cap is set on glibc and skipped elsewhere."""
    import platform

    from views.serving import cap_malloc_arenas

    assert cap_malloc_arenas() == (platform.libc_ver()[0] == "glibc")


# --- Views draw: model work is a runner's ----------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
VIEW_CODE = ("views/*.py", "families/*/page.py", "families/*/views.py", "families/*/*_view.py",
             "families/*/*_views.py", "families/*/lessons.py", "families/*/steps*.py",
             "start/*.py")  # fmt: skip


def _model_work(path: Path) -> list[str]:
    """What in one file reaches for torch or a network: an import of torch; a name or attribute path that
    resolves, through the file's imports of ``models``, to an `nn.Module` subclass (a network or one of its
    parts, imported to be built); ``<…>model.blocks`` (a loaded network's layers)."""
    import importlib

    from torch import nn

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, bound = [], {}  # bound: local name → the object of models/ it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):  # import models.gpt binds "models"; import models.gpt as g binds g
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root == "torch":
                    found.append(f"line {node.lineno}: imports {alias.name}")
                elif root == "models":
                    module = importlib.import_module(alias.name)
                    bound[alias.asname or root] = module if alias.asname else importlib.import_module(root)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for alias in node.names:
                if root == "torch":
                    found.append(f"line {node.lineno}: imports {node.module}.{alias.name}")
                elif root == "models":
                    obj = getattr(importlib.import_module(node.module), alias.name, None)
                    if obj is None:  # a submodule not imported yet: from models import attention
                        obj = importlib.import_module(f"{node.module}.{alias.name}")
                    bound[alias.asname or alias.name] = obj
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "blocks":
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "model") or getattr(owner, "attr", "") == "model":
                found.append(f"line {node.lineno}: reads {ast.unparse(node)}")
        if isinstance(node, ast.Name | ast.Attribute):
            parts = ast.unparse(node).split(".")
            obj = bound.get(parts[0])
            for part in parts[1:]:
                obj = getattr(obj, part, None)
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                found.append(f"line {node.lineno}: names the network {ast.unparse(node)}")
    return found


def test_views_import_no_torch_and_build_no_network():
    """Views draw what runners return; they do no model work (issue 34). Guards every module under
    views/ and every family's page and view code (page.py, views.py, *_view.py, *_views.py, lessons.py):
    none imports torch, names a network class of models/ (an `nn.Module` subclass: to build one), or
    reads a loaded model's ``.blocks``. Such work goes in the family's runner, served through its
    declaration (`views.serving.cached`). Not seen: tensors a runner returns, or other attributes of a
    loaded model (a config field is read, not run)."""
    files = sorted({p for pattern in VIEW_CODE for p in ROOT.glob(pattern)})
    assert len(files) > 20 and ROOT / "families/transformer/lessons.py" in files
    offences = {str(p.relative_to(ROOT)): found for p in files if (found := _model_work(p))}
    assert not offences, offences


def test_the_model_work_check_sees_torch_networks_and_blocks(tmp_path):
    """The check above is no test that cannot fail: each thing it guards, written in a file, is found."""
    code = {
        "import torch\n": "imports torch",
        "from torch import nn\n": "imports torch.nn",
        "from models.attention import MultiHeadAttention\nMultiHeadAttention(4, 2)\n": "network",
        "from models import attention\nattention.MultiHeadAttention(4, 2)\n": "network attention.",
        "import models.gpt\nmodels.gpt.GPT\n": "network models.gpt.GPT",
        "n = len(loaded.model.blocks)\n": "reads loaded.model.blocks",
        "from models.attention import Interventions\nInterventions()\nrun.blocks\n": None,
    }
    for i, (source, said) in enumerate(code.items()):
        path = tmp_path / f"view_{i}.py"
        path.write_text(source, encoding="utf-8")
        found = " ".join(_model_work(path))
        assert (said in found) if said else not found, (source, found)


def _code_calls(path: Path) -> list[int]:
    """The lines where a file calls ``.code(…)`` on anything (``st.code``, a column's, an ``st.empty``'s)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = (n for n in ast.walk(tree) if isinstance(n, ast.Call))
    return [n.lineno for n in calls if getattr(n.func, "attr", "") == "code"]


def test_model_text_is_drawn_without_the_syntax_highlighter(tmp_path):
    """`st.code` loads Streamlit's 1.5 MB syntax highlighter before the page paints (1.5–2 s of the
    transformer and captioning pages' load): the app shows text in `views.outputs.text_block`."""
    files = sorted({*ROOT.glob("families/*/*.py"), *ROOT.glob("views/*.py"), *ROOT.glob("start/*.py")})
    assert len(files) > 40
    assert not {str(p.relative_to(ROOT)): lines for p in files if (lines := _code_calls(p))}
    (tmp_path / "a.py").write_text('import streamlit as st\nst.code("x")\nbox = st.empty()\nbox.code("y")\n')
    assert _code_calls(tmp_path / "a.py") == [2, 4]  # the check sees both kinds of call
