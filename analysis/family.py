"""A family's declaration: everything the rest of the app, the tests, the training CLI and the
benchmarks need to know about one model family, said once, in ``families/<name>/__init__.py``.

Generic code reads these and names no family: the router (title, icon, page, address), the serving
layer (`Served` calls, the loader), the shared "Attention vs importance" tab (`ImportanceTab`), the
training CLI and the card measurements (``training``, ``measurements``), the junk-URL and hostile-input
matrices (``url_inputs``, ``text_inputs``, ``image_inputs``), the tab explorer (``tab_key``), the browser
smoke test (``smoke``), the soak (``soak``), the browser benchmark (``bench``) and the start page's
learner's path (``steps``). `tests/test_families.py` fails when a family lacks one, so the next family
cannot drop out of coverage silently. The start page is no family: `StartPage` declares what the same
generic code needs of it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple

import torch

from analysis.protocol import AttentionRun


def nothing() -> Any:
    """A field whose default is an empty mapping (a fresh one per declaration)."""
    return field(default_factory=dict)


@dataclass(frozen=True)
class Served:
    """A runner call the app serves from one cache every session shares: ``fn(loaded, *inputs)``, with
    ``loaded`` what the family's loader returns for the model's name. The name and the hashable inputs
    are the cache key; `views.serving.cached` holds the inference slot and marks the result read-only.
    A family's loader is a `Served` too, whose ``fn`` takes the name alone."""

    fn: Callable[..., Any]
    max_entries: int | None = None  # results kept (memory: a 512-token BERT run is 75 MB)
    spinner: str | bool = False  # the text shown while it runs (False: none)
    copied: bool = False  # a small value each caller gets a copy of (`st.cache_data`), not one shared object


@dataclass(frozen=True)
class ImportanceTab:
    """What a family brings to the shared "Attention vs importance" tab (`views.importance_tabs.tab`).

    ``measure`` names the family's `Served` call; the tab calls it with the model's name, the page's
    inputs and, for ``query="next token"``, the picked position and target id. What the result is
    compared at, ``query``:

    - "rows": a `analysis.importance.PerToken`, one comparison per output token (an output-token picker,
      no layer or head pickers: one single-head map per token);
    - "output token": one output token picked after measuring, ``result.comparison(t, head)``;
    - "next token": a position and a target picked before measuring, ``result.comparison(head)``;
    - "whole input": ``result.comparison(head)``.
    """

    key: str  # widget-key prefix: <key>_imp_token, <key>_imp_layer, <key>_imp_head, …
    query: Literal["rows", "output token", "next token", "whole input"]
    explain: Callable[[Any, tuple, Any], str]  # (loaded, inputs, result) → the tab's opening paragraph
    measure: str = "importance"  # the name of the family's `Served` call that measures
    layers_heads: Callable[[Any], tuple[int, int]] | None = None  # result → the pickers' sizes ("rows": None)
    as_is: bool = True  # the page has interventions: say that the tab measures the model without them
    warning: Callable[[Any], str | None] = lambda result: None  # result → a warning to show, if any
    without_card: str | None = None  # the caption when the page has no card for this model


# --- What the tests and benchmarks drive ----------------------------------------------------------
@dataclass(frozen=True)
class TextBox:
    """A box a visitor types into, for the hostile-text matrix: how to reach it and what answers."""

    key: str  # the widget's key, or a part of it (a key that carries its input, e.g. `token_key`'s)
    kind: Literal["text_input", "text_area"]
    setup: Mapping[str, str] = nothing()  # URL parameters that show it: {"input": "text"}, a tab
    answer: str | None = None  # a part of the key of the chart that answers it (None: any output or message)


@dataclass(frozen=True)
class ImageInput:
    """An image upload, for the hostile-image corpus: its uploader's key and the URL that shows it."""

    key: str
    setup: Mapping[str, str] = nothing()


@dataclass(frozen=True)
class Smoke:
    """The browser smoke test of a page: open it with ``query``, wait for what it draws, see no
    exception, take the page's screenshot."""

    query: Mapping[str, str] = nothing()
    charts: int = 1  # charts drawn at least: Plotly charts and attention components
    component: str | None = None  # an attention component whose exact map must be drawn
    traces: tuple[str, ...] = ()  # Plotly trace types that one chart must hold


class Control(NamedTuple):
    """One control the browser benchmark drives. kind: check | radio | select | slider | tab | look.
    label: the widget's aria-label (a trailing * matches a prefix; radios: the start of their label
    text; tabs: the tab name; look: the attention component's key). arg: radio (target option, home
    option); tab: the home tab; look: what the visitor does in the component — key:<key> (back with the
    opposite key), hover (two cells in turn), patch (two patches of an image overlay clicked in turn), zoom
    (+ then −), chip (a head toggled), select:<a>/<b> (its
    layer picker), far:<a>/<b> (a layer not sent exact: asked of the server). tab: open this tab first."""

    kind: str
    label: str
    arg: tuple[str, str] | str | None = None
    tab: str | None = None

    @property
    def name(self) -> str:
        extra = {"radio": f" → {self.arg[0]}" if self.kind == "radio" else "", "look": f" {self.arg}"}
        return f"{self.kind} {self.label}" + extra.get(self.kind, "")


@dataclass(frozen=True)
class Bench:
    """What the browser benchmark measures on a page: its controls, opened with ``query``."""

    controls: tuple[Control, ...]
    query: Mapping[str, str] = nothing()
    drawn: str | None = None  # an attention component whose data-in → drawn time is measured on load


@dataclass(frozen=True)
class Soak:
    """What the soak's sessions do on a page, and what each should see there alone.

    ``pick(rng)`` → (URL parameters, the oracle's key); ``expected(key)`` → the output the page shows for
    that key alone, computed in the soak's process from the runners with the page's defaults (it loads
    what it needs on first use); ``output``: where the page shows it — ("text after", a subheader: the
    first `views.outputs.text_block` after it) or ("metric", its label, ("stMetricValue", …) the parts
    read); ``checks``: sidebar checkboxes a session clicks, label → (the `Interventions` field or page
    switch it sets, its default) — the key's second item is then the set of labels clicked away from
    their defaults; ``clicks``: other checkboxes a session clicks that do not change the output."""

    pick: Callable[[random.Random], tuple[dict[str, str], tuple]]
    expected: Callable[[tuple], str]
    output: tuple
    checks: Mapping[str, tuple[str, bool]] = nothing()
    clicks: tuple[str, ...] = ()


# A card measurement: (n held-out inputs, the checkpoints' folder) → card name → the entry it wrote.
Measure = Callable[[int, Path], dict[str, dict]]


# --- The learner's path (the start page) ----------------------------------------------------------
Query = Mapping[str, str]  # a page's URL parameters, as its bound widgets read them


@dataclass(frozen=True)
class Quiz:
    """A step's question on one live result, with its key: computed from the result's numbers, never
    written down. With ``options`` the answer is one of them; without, a number, right within
    ``tolerance``. ``feedback`` says what decides it, with the numbers: shown after any answer."""

    question: str  # Markdown
    answer: str | float
    feedback: str  # Markdown
    options: tuple[str, ...] = ()  # plain text (tokens as they are: the page escapes what it shows)
    tolerance: float = 0.0

    def grade(self, given: str | float | None) -> bool:
        if given is None:
            return False
        if self.options:
            return given == self.answer
        try:
            return abs(float(given) - float(self.answer)) <= self.tolerance
        except (TypeError, ValueError, OverflowError):
            return False


@dataclass(frozen=True)
class Step:
    """One step of the learner's path, declared by the family whose model shows the idea. The start
    page places it in the story (`start.STORY`, by ``id``) and draws it: the explanation, ``view`` of
    ``measure``'s result, what to look for, the ``quiz`` and a link to the family's page at ``query``.

    ``query`` is the family page's URL parameters: the preset the step measures, and the link that
    opens the page in that state. ``measure(family, query)`` reads it as the page does and calls the
    family's served runners (`views.serving.cached`); ``view(result, key)`` draws the result with the
    shared views, every widget key starting with ``key``; ``quiz(result)`` asks and holds the key.
    ``contrast``: another query on which the key differs (the tests prove no key is a constant)."""

    id: str  # the story's name for it, unique over every family
    idea: str  # the idea it teaches, as the path lists it (also the URL value: ?step=<idea>)
    explain: str  # Markdown, in our own words
    look_for: str  # one line: what to look for in the view
    query: Query
    measure: Callable[[Family, Query], Any]
    view: Callable[[Any, str], None]
    quiz: Callable[[Any], Quiz]
    contrast: Query
    deeper: str  # what the linked tab of the family's page offers beyond the step
    more: Mapping[str, Query] = nothing()  # the map of the material: other views of the idea, label → query


@dataclass(frozen=True)
class Family:
    """One family's declaration: how the app, the tests, the training CLI and the benchmarks find it."""

    name: str  # checkpoint prefix ("seq2seq-dates-additive") and the training CLI's --family
    title: str  # the page title
    page: str  # the page file, relative to the repository root
    url_path: str  # the page's address (/<url_path>): kept when files move, so shared links still open
    icon: str  # an emoji for the navigation (Material icons would make the browser fetch a font)
    example: Callable[[], AttentionRun]  # the default checkpoint on its default input
    tab_key: str  # the page's `lazy_tabs` key: the open view, in the URL
    url_inputs: tuple[str, ...]  # every URL parameter the page reads (bound widgets), tab key too
    smoke: Smoke  # the browser smoke test
    soak: Soak  # the soak's inputs and oracle
    bench: Bench  # the browser benchmark's controls
    url_needs: Mapping[str, Mapping[str, str]] = nothing()  # a parameter shown only in a mode → that mode
    text_inputs: tuple[TextBox, ...] = ()  # every box a visitor types into
    image_inputs: tuple[ImageInput, ...] = ()  # every image upload
    bench_variants: Mapping[str, Bench] = nothing()  # extra benchmark rows (name → its query and controls)
    network: type[torch.nn.Module] | None = None  # built from a card's config (None: loaded elsewhere)
    config: type | None = None  # the network's frozen config dataclass
    training: ModuleType | None = None  # the network module training/loop.py reads (None: not trained)
    measurements: Mapping[str, Measure] = nothing()  # `python -m training.measure <name> --family …`
    load: Served | None = None  # name → the loaded model its served calls take (None: its checkpoint's)
    served: Mapping[str, Served] = nothing()  # cached calls
    importance: ImportanceTab | None = None  # its "Attention vs importance" tab
    steps: tuple[Step, ...] = ()  # its steps of the learner's path (`start.STORY` orders them)

    @property
    def free_text(self) -> frozenset[str]:
        """The URL parameters that are text boxes: any text is input."""
        return frozenset(b.key for b in self.text_inputs) & frozenset(self.url_inputs)


@dataclass(frozen=True)
class StartPage:
    """The start page's declaration: the app's default page (at "/"), no family, read by the same generic
    code as the families' (router, junk-URL and hostile-input matrices, smoke test, benchmark)."""

    name: str
    title: str
    page: str
    url_path: str  # "/<url_path>" is never served (the default page is at "/"); names its screenshot
    icon: str
    url_inputs: tuple[str, ...]  # every URL parameter the page reads
    smoke: Smoke
    bench: Bench
    story: tuple[tuple[str, str], ...]  # (family, step id) in the order the path tells them
    forwards: str | None = None  # the family whose old links at "/" the page forwards to its own page
    url_needs: Mapping[str, Mapping[str, str]] = nothing()
    text_inputs: tuple[TextBox, ...] = ()
    image_inputs: tuple[ImageInput, ...] = ()
    bench_variants: Mapping[str, Bench] = nothing()

    @property
    def free_text(self) -> frozenset[str]:
        return frozenset(b.key for b in self.text_inputs) & frozenset(self.url_inputs)
