"""Every model family the app knows, one line each: a family is a package, `families/<name>/`, whose
``FAMILY`` declares what the router, the training CLI, the tests and the benchmarks need to know.
See docs/architecture.md, "Add a family". ``PAGES``: every page the router serves, the start page
(no family: `start.START`) first."""

from __future__ import annotations

from analysis.family import Family, StartPage
from families import bert, captioner, gpt, llm, seq2seq, transformer, vit
from models.checkpoints import load_card, load_checkpoint
from start import START

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        seq2seq.FAMILY,
        transformer.FAMILY,
        bert.FAMILY,
        captioner.FAMILY,
        gpt.FAMILY,
        llm.FAMILY,
        vit.FAMILY,
    )
}


# The router's pages in order: the first is the default page, at "/" — the start page, so every family's
# page is at its own address, whatever order the families are listed in.
PAGES: dict[str, Family | StartPage] = {START.name: START, **FAMILIES}


def address(page: Family | StartPage) -> str:
    """Where a page is served: the first of `PAGES` is the app's default page, at "/" (its own path would
    open a "Page not found" modal); every other at "/<url_path>"."""
    return "/" if page is next(iter(PAGES.values())) else f"/{page.url_path}"


def load(name: str):
    """A shipped checkpoint by name ("<family>-<task>-<variant>"): (model, card, src vocab, tgt vocab)."""
    family = FAMILIES[load_card(name)["kind"]]
    return load_checkpoint(name, family.network, family.config)
