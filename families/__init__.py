"""Every model family the app knows, one line each: a family is a package, `families/<name>/`, whose
``FAMILY`` declares what the router, the training CLI, the tests and the benchmarks need to know.
See docs/architecture.md, "Add a family"."""

from __future__ import annotations

from analysis.family import Family
from families import bert, captioner, gpt, llm, seq2seq, transformer, vit
from models.checkpoints import load_card, load_checkpoint

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


def address(family: Family) -> str:
    """Where the family's page is served: the first family's is the app's default page, at "/" (its own
    path would open a "Page not found" modal); every other at "/<url_path>"."""
    return "/" if family is next(iter(FAMILIES.values())) else f"/{family.url_path}"


def load(name: str):
    """A shipped checkpoint by name ("<family>-<task>-<variant>"): (model, card, src vocab, tgt vocab)."""
    family = FAMILIES[load_card(name)["kind"]]
    return load_checkpoint(name, family.network, family.config)
