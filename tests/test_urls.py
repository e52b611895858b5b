"""Junk in the URL: every query parameter of every page, with values a hostile or careless visitor
sends. The page ignores what it cannot use (the widget keeps its default), shows no traceback, and
still shows its output."""

from __future__ import annotations

import pytest

from families import PAGES
from tests.helpers import open_app, text_blocks

JUNK = {
    "empty": "",
    "huge": "9" * 20_000,
    "unicode": "ünï 🎉 ٢١ 토요일",
    "negative": "-1",
    "out of range": "999999999999",
    "float": "2.5",
    "nan": "NaN",
    "infinity": "1e309",
    "minus infinity": "-inf",
    "markup": "<script>alert(1)</script>**x**",
    "control": "\x00\x1b[31m",
    "list": ["greedy", "beam"],
}


def whole(value: str) -> list[str]:
    try:
        return [str(int(float(value)))]
    except (ValueError, OverflowError):
        return []


def groups(page) -> list[tuple[dict[str, str], tuple[str, ...]]]:
    """A page's URL parameters grouped by the mode they are shown in (``url_needs``; most need none) and
    by whether they are free text: each group's parameters take the same junk in one visit, beside their
    mode. Text boxes apart: junk typed there (an empty prompt) stops the page at its message before the
    widgets below it are drawn."""
    by_mode: dict[tuple, list[str]] = {}
    for param in page.url_inputs:
        mode = tuple(sorted(page.url_needs.get(param, {}).items()))
        by_mode.setdefault((mode, param in page.free_text), []).append(param)
    return [(dict(mode), tuple(params)) for (mode, _), params in by_mode.items()]


CASES = [  # every URL parameter of every page, the start page's too (its declaration's ``url_inputs``)
    pytest.param(f, mode, params, id=f"{f.name}-{'-'.join(params)}")
    for f in PAGES.values() for mode, params in groups(f)
]


def test_every_url_parameter_is_in_one_group():
    for page in PAGES.values():
        grouped = [p for _, params in groups(page) for p in params]
        assert sorted(grouped) == sorted(page.url_inputs), page.name


@pytest.mark.slow  # about 100 s: a fresh session per value
@pytest.mark.parametrize("family, mode, params", CASES)
def test_junk_in_every_url_parameter_keeps_the_page_working(family, mode, params):
    """Each junk value in every parameter of a group at once (a visitor's URL has them together): each
    parameter keeps its default or takes what its widget can take, and the page still answers."""
    page = family.page
    defaults = open_app(page, **mode).session_state
    defaults = {param: defaults[param] for param in params}
    for name, value in JUNK.items():
        at = open_app(page, **mode, **dict.fromkeys(params, value))  # open_app asserts no exception
        assert not at.exception, (params, name)
        sent = value if isinstance(value, list) else [value, *whole(value)]
        for param in params:
            taken = at.session_state[param]
            # A value the widget cannot take leaves its default; free text is taken as typed, a number
            # in range as the widget's type (2.5 → 2 for a whole-number slider).
            assert taken == defaults[param] or param in family.free_text or str(taken) in sent, (param, name)
        assert at.title, (params, name)  # the page drew its header, not just an error
        output = text_blocks(at) or at.metric or at.get("plotly_chart")
        assert output or at.info or at.error or at.warning, (params, name)  # an output or a message
        shown = [m.value for m in at.markdown] + [e.value for e in at.error] + [c.value for c in at.caption]
        assert not any("<script>" in s for s in shown), (params, name)


def test_another_page_opens_on_its_own_first_view():
    """The open tab is in the URL, one parameter name per page: moving on from the transformer's
    Export tab opens BERT on its first view, not on its Export tab."""
    at = open_app("families/transformer/page.py", tf_view="Export")  # the URL after opening Export
    assert at.session_state["tf_view"] == "Export"
    at.switch_page("families/bert/page.py").run()
    assert not at.exception
    assert at.session_state["bert_view"] == at.tabs[0].label
