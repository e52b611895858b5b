"""Tests never reach a hub: the reference libraries load local folders only."""

import os

import pytest

# The browser tests' server, Chromium and screenshot folder: one session-scoped set for every file.
pytest_plugins = ["tests.browser_server"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="write the browser tests' screenshots into docs/ (shown in the README) instead of a temp folder",
    )
    parser.addoption(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) before any test: the suite must pass with 1 thread and with many",
    )


def pytest_configure(config):
    threads = config.getoption("--threads")
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))


@pytest.fixture(autouse=True)
def _torch_threads_as_found():
    """A test that runs one of our CLIs (training, measurements) lets it set torch's thread count, then
    puts it back: what the app cached in one test (computed with N threads) and what a later test
    recomputes must be the same computation, float for float (matmuls round by their thread split)."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct on our own code, loaded once for every test file: (model, tokenizer, meta)."""
    import torch

    from models.llama import load

    return load(device=torch.device("cpu"))


@pytest.fixture(scope="module")
def app_llm(smollm2):
    """The app's shipped model is the session's `smollm2` (one copy of the 135M model in the process), for
    one test file; whatever an earlier file loaded is forgotten before and after."""
    from families.llm import runner
    from tests.helpers import forget_app_llm

    with pytest.MonkeyPatch.context() as patch:
        model = runner.loaded_from(*smollm2)
        patch.setattr(runner, "load_all", lambda: model)
        forget_app_llm()
        yield model
    forget_app_llm()
