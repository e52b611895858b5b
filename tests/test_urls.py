"""Junk in the URL: every query parameter of every page, with values a hostile or careless visitor
sends. The page ignores what it cannot use (the widget keeps its default), shows no traceback, and
still shows its output."""

from __future__ import annotations

import pytest

from families import PAGES
from tests.helpers import open_app

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


CASES = [  # every URL parameter of every page, the start page's too (its declaration's ``url_inputs``)
    pytest.param(f, param, id=f"{f.name}-{param}") for f in PAGES.values() for param in f.url_inputs
]


@pytest.mark.slow  # about 100 s: a fresh session per value
@pytest.mark.parametrize("family, param", CASES)
def test_junk_in_every_url_parameter_keeps_the_page_working(family, param):
    page, mode = family.page, family.url_needs.get(param, {})  # a parameter shown only in a mode: with it
    default = open_app(page, **mode).session_state[param]
    for name, value in JUNK.items():
        at = open_app(page, **mode, **{param: value})  # open_app asserts no exception
        assert not at.exception, (param, name)
        taken = at.session_state[param]
        sent = value if isinstance(value, list) else [value, *whole(value)]
        # A value the widget cannot take leaves its default; free text is taken as typed, a number
        # in range as the widget's type (2.5 → 2 for a whole-number slider).
        assert taken == default or param in family.free_text or str(taken) in sent, (param, name, taken)
        assert at.title, (param, name)  # the page drew its header, not just an error
        output = at.code or at.metric or at.get("plotly_chart")
        assert output or at.info or at.error or at.warning, (param, name)  # an output or a message
        shown = [m.value for m in at.markdown] + [e.value for e in at.error] + [c.value for c in at.caption]
        assert not any("<script>" in s for s in shown), (param, name)


def test_another_page_opens_on_its_own_first_view():
    """The open tab is in the URL, one parameter name per page: moving on from the transformer's
    Export tab opens BERT on its first view, not on its Export tab."""
    at = open_app("families/transformer/page.py", tf_view="Export")  # the URL after opening Export
    assert at.session_state["tf_view"] == "Export"
    at.switch_page("families/bert/page.py").run()
    assert not at.exception
    assert at.session_state["bert_view"] == at.tabs[0].label
