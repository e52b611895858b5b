"""Tests never reach a hub: the reference libraries load local folders only."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="write the browser tests' screenshots into docs/ (shown in the README) instead of a temp folder",
    )
