"""Every family declares what generic code needs (`analysis.family.Family`), and what it declares is
true of its page: a family that forgets a declaration, or a page that binds a URL parameter its family
does not declare, fails here — so the next family cannot drop out of the junk-URL, hostile-input,
smoke, soak or benchmark coverage with every other test still green. The tab explorer opens every tab
of every page."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from families import FAMILIES, PAGES, address
from tests.helpers import open_app, open_view

ROOT = Path(__file__).resolve().parent.parent
FAMILY_IDS = list(FAMILIES)
STEPS = [pytest.param(f, s, id=f"{f.name}-{s.id}") for f in FAMILIES.values() for s in f.steps]


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILY_IDS)
def test_each_family_declares_what_generic_code_needs(family):
    assert (ROOT / family.page).is_file() and family.page.startswith(f"families/{family.name}/")
    assert family.tab_key in family.url_inputs, "the open tab is a URL parameter"
    assert set(family.url_needs) <= set(family.url_inputs)
    assert family.text_inputs or family.image_inputs, "no input for the hostile-input matrix"
    assert family.bench.controls, "no control for the browser benchmark"
    for box in family.text_inputs:
        assert box.kind in ("text_input", "text_area") and set(box.setup) <= set(family.url_inputs)
    for upload in family.image_inputs:
        assert set(upload.setup) <= set(family.url_inputs)
    for control in (c for b in (family.bench, *family.bench_variants.values()) for c in b.controls):
        assert control.kind in ("check", "radio", "select", "slider", "tab", "look"), control
    assert callable(family.soak.pick) and callable(family.soak.expected) and family.soak.output
    assert family.importance is None or family.importance.measure in family.served
    assert family.steps, "no step of the learner's path (the start page): declare one in its steps.py"


def test_families_have_their_own_names_pages_and_addresses():
    assert len({f.url_path for f in PAGES.values()}) == len(PAGES) == len(FAMILIES) + 1
    assert len({f.tab_key for f in FAMILIES.values()}) == len(FAMILIES)  # one open-tab parameter per page
    # The start page is the default page, at "/"; every family's page at its own address, the first too.
    assert [address(p) for p in PAGES.values()] == ["/", *(f"/{f.url_path}" for f in FAMILIES.values())]


@pytest.mark.parametrize("family, step", STEPS)
def test_each_step_links_its_page_through_the_parameters_the_page_binds(family, step):
    """A step's preset is its family page's URL (the link that opens the page in that state): every
    parameter of it, its contrast and its map links must be one the page binds, else the link would
    open the page in another state than the step shows."""
    for query in (step.query, step.contrast, *step.more.values()):
        assert set(query) <= set(family.url_inputs), (step.id, set(query) - set(family.url_inputs))
    assert family.tab_key in step.query, f"{step.id}: the link names no tab of the page"
    assert step.idea and step.explain and step.look_for and step.deeper


def test_steps_have_their_own_ids_and_ideas():
    """The story names a step by its id; the path's URL carries its idea: both unique over families."""
    steps = [s for f in FAMILIES.values() for s in f.steps]
    assert len({s.id for s in steps}) == len({s.idea for s in steps}) == len(steps)


def bound(node, keys: set[str]) -> set[str]:
    """The URL parameter of every widget and tab set in an AppTest tree (``query_param_key``)."""
    proto = getattr(node, "proto", None)
    for candidate in (proto, getattr(proto, proto.WhichOneof("type"), None) if _oneof(proto) else None):
        key = getattr(candidate, "query_param_key", "")
        if isinstance(key, str) and key:
            keys.add(key)
    for child in getattr(node, "children", {}).values():
        bound(child, keys)
    return keys


def _oneof(proto) -> bool:
    try:
        return proto is not None and proto.WhichOneof("type") is not None
    except (ValueError, TypeError, AttributeError):
        return False


@pytest.mark.slow  # a page load per mode
@pytest.mark.parametrize("family", PAGES.values(), ids=list(PAGES))
def test_the_page_binds_exactly_the_declared_url_parameters(family):
    """Opened as it comes and in every mode its declaration names, every page (the start page too)
    binds to the URL exactly the parameters its declaration names."""
    keys: set[str] = set()
    for mode in ({}, *family.url_needs.values()):
        keys |= bound(open_app(family.page, **mode)._tree, set())
    assert keys == set(family.url_inputs)


def test_no_shared_module_names_a_family():
    """Shared code reads the registry: no string literal in app.py, views/, viz/ or analysis/ is a
    family's name or its page's address."""
    names = {f.name for f in FAMILIES.values()} | {f.url_path for f in FAMILIES.values()}
    found = []
    shared = [ROOT / "app.py", *(p for d in ("views", "viz", "analysis") for p in (ROOT / d).glob("*.py"))]
    for path in shared:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not found, found


@pytest.mark.slow  # every tab of every page
@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILY_IDS)
def test_the_tab_explorer_opens_every_tab_without_an_exception(family):
    at = open_app(family.page)
    labels = [t.label for t in at.tabs]
    assert labels, f"{family.page} draws no tabs"
    for label in labels:
        open_view(at, label)
        assert not at.exception, (label, [e.value for e in at.exception])
