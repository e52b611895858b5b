"""Models offered to the language-model page in a test: a folder of tiny checkpoints (tests/lm_checkpoints.py)
named by ``ATTENTION_EXPLORER_LM_DIR``, an empty hub cache, and the page's listing and loader caches
forgotten before and after, so the app lists exactly what the test put there."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import lm_checkpoints as lm

SERVED = ("llama", "qwen2", "gemma2")  # what the browser tests' second server offers (browser_server.py)


def write_models(folder: Path, archs: Iterable[str]) -> Path:
    """``folder``/tiny-<arch> for each architecture: a tiny random checkpoint with its tokenizer."""
    tokenizers = {byte_level: lm.train_tokenizer(byte_level) for byte_level in (True, False)}
    for arch in archs:
        lm.write_checkpoint(arch, folder / f"tiny-{arch}", tokenizers[arch in lm.BYTE_LEVEL])
    return folder


def forget() -> None:
    """The page lists the models again and loads every model afresh (the pinned shipped one aside)."""
    from families import FAMILIES
    from families.llm import runner
    from views.serving import _once

    runner.forget_catalog()
    runner.held.clear()
    _once(FAMILIES["llm"], None).clear()


@contextmanager
def offered(folder: Path, **settings: str) -> Iterator[None]:
    """The app offers the checkpoints in ``folder`` (and ``settings``: ATTENTION_EXPLORER_LM, …_MAX_GB)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTENTION_EXPLORER_LM_DIR", str(folder))
        patch.setenv("HF_HUB_CACHE", str(folder.parent / "empty-hub"))
        for key, value in settings.items():
            patch.setenv(key, value)
        forget()
        try:
            yield
        finally:
            forget()
