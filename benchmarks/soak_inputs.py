"""What bench_soak's sessions type and what each should see: each family's soak declaration
(`analysis.family.Soak`: its inputs, picked by a session's own seeded random.Random, and the oracle
that computes an input's output alone, in this process, from the runners with the page's defaults)."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import streamlit.logger
import torch

streamlit.logger.set_log_level("error")  # views.serving's caches warn that no runtime is found here

from families import FAMILIES  # noqa: E402


def pick_input(page: str, rng: random.Random) -> tuple[dict, tuple]:
    """URL parameters for the family's page, and the oracle's key for them."""
    return FAMILIES[page].soak.pick(rng)


class Oracle:
    """What each input shows when it runs alone: the family's ``soak.expected``.

    Runs on one worker thread (the event loop stays free; torch gets one core of the two), and caches
    per input, so a repeated input costs one lookup. Each family loads its models on first use."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.cache: dict[tuple, str] = {}

    async def expected(self, page: str, key: tuple) -> str:
        if (page, key) not in self.cache:
            loop = asyncio.get_running_loop()
            self.cache[page, key] = await loop.run_in_executor(self.pool, FAMILIES[page].soak.expected, key)
        return self.cache[page, key]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
