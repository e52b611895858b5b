"""Benchmark (not a test): many browser sessions on one server for minutes — errors, cross-talk, memory.

    python benchmarks/bench_soak.py [--sessions 16] [--minutes 5] [--seed 0] [--pages seq2seq,...,llm]

Starts app.py once on a loopback port (`benchmarks/chromium.py`) and one headless Chromium;
--sessions browser contexts run at once as asyncio tasks of one async Playwright loop. Until the time
is up, each session (its own seeded random.Random) loads a random page by URL with an input of its
own — a human-typed date (seq2seq, transformer), a sentence pair (BERT), a scene seed (captioning), a
Python snippet (GPT), an English prompt (SmolLM2) —
waits until the script is idle and a chart is painted (chromium.py's LOADED_JS), then clicks 0–2
random tabs or known checkboxes, waiting for each rerun to finish. After the load and after each
click it counts the exceptions shown and checks for cross-talk: the output on screen must be the one
its own input gives alone, computed in this process from the runners with the page's defaults
(`benchmarks/soak_inputs.py`: the inputs and this oracle):

- seq2seq: the "Output" code block = greedy decoding of the default checkpoint (first task, first
  scoring); transformer: the "Output" block = the default variant (h4) under the sidebar checkboxes
  this session set (a checkbox click changes the expectation, not the check);
- BERT: the "Tokens" metric = the tokenizer's count for the pair (hiding [CLS]/[SEP] does not change it);
- captioning: the "Caption" block = the default greedy caption of scene `generate(1, seed)[0]`;
- GPT and the language models: the "Next token after the prompt" metric, its token and "p = …" = the
  runner's top token after the prompt and its probability, under the causal mask (and RoPE) checkbox
  this session set. With ``ATTENTION_EXPLORER_LM_DIR`` offering more models (benchmarks/make_lms.py), each
  language-model load also picks one of them by name (`families.llm`'s soak): sessions switch models, and
  the server's RSS below shows whether holding them stays bounded.

A readout that is not on the page (the script stopped before it) counts as unchecked. The server's
resident memory (its process and children) is sampled every 5 s; "start" is after one warm-up load
of every page, "end" after the sessions closed and 5 s passed. A load past 180 s is counted as a
timeout, not raised. Prints FAIL lines when exceptions or mismatches are above 0; exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlencode

import psutil
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chromium import BROWSER_ARGS, CHROMIUM, LOADED_JS, start_server, stop_server  # noqa: E402
from benchmarks.soak_inputs import Oracle, pick_input  # noqa: E402
from families import FAMILIES, address  # noqa: E402
from views.outputs import TEXT_BLOCK  # noqa: E402

LOAD_TIMEOUT_MS = 180_000  # a load or a rerun slower than this is counted as a timeout
RSS_EVERY_S = 5
PATHS = {name: address(f) for name, f in FAMILIES.items()}
ARM_JS = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  window.__soakObserver?.disconnect();
  window.__soakRan = false;
  window.__soakObserver = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') !== 'notRunning') window.__soakRan = true;
  });
  window.__soakObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
SETTLED_JS = """async ([noRunMs, maxMs]) => {
  const start = performance.now(), sleep = ms => new Promise(r => setTimeout(r, ms));
  const idle = () => document.querySelector('[data-testid=stApp]')
    ?.getAttribute('data-test-script-state') === 'notRunning';
  for (;;) {
    if (idle() && (window.__soakRan || performance.now() - start > noRunMs)) break;
    if (performance.now() - start > maxMs) throw new Error('no rerun finished in time');
    await sleep(20);
  }
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return window.__soakRan;
}"""


@dataclass
class PageStats:
    loads: int = 0
    interactions: int = 0
    timeouts: int = 0
    errors: int = 0  # navigation or click failures other than a timeout
    exceptions: int = 0  # stException blocks seen, summed over checks
    checked: int = 0
    unchecked: int = 0
    mismatches: int = 0
    load_s: list[float] = field(default_factory=list)


@dataclass
class Soak:
    pages: dict[str, PageStats] = field(default_factory=lambda: {p: PageStats() for p in PATHS})
    rss_mb: list[float] = field(default_factory=list)
    rss_start: float | None = None
    rss_end: float | None = None
    notes: list[str] = field(default_factory=list)  # first lines of exceptions, mismatches, errors
    began: float = field(default_factory=time.perf_counter)
    ended: float | None = None

    def note(self, line: str) -> None:
        if len(self.notes) < 40:
            self.notes.append(line)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, MB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


async def shown_output(page, name: str) -> str | None:
    """The text the page shows for the compared output; None when it is not on the page."""
    where, label, *shown = FAMILIES[name].soak.output
    if where == "metric":  # this metric's value, or its value and delta: "␣Paris p = 65.6%"
        metric = page.locator("[data-testid=stMetric]").filter(has_text=label).first
        parts = [metric.locator(f"[data-testid={test_id}]") for test_id in shown[0]]
    else:  # the first text block (`views.outputs.text_block`) after this subheader
        heading = f"//*[@data-testid='stHeading'][contains(normalize-space(.), '{label}')]"
        parts = [page.locator(f"xpath={heading}/following::pre[contains(@class, '{TEXT_BLOCK}')][1]")]
    if not all([await part.count() for part in parts]):
        return None
    return " ".join([(await part.first.inner_text()).strip() for part in parts])


async def check(page, name: str, key: tuple, oracle: Oracle, soak: Soak, tag: str) -> None:
    """Count the exceptions shown; compare the shown output with the input's own."""
    row = soak.pages[name]
    blocks = page.locator("[data-testid=stException]")
    if n := await blocks.count():
        row.exceptions += n
        first = (await blocks.first.inner_text()).strip().splitlines()
        soak.note(f"{tag}: exception: {first[0] if first else '?'}")
    shown = await shown_output(page, name)
    if shown is None:
        row.unchecked += 1
        return
    expected = await oracle.expected(name, key)
    row.checked += 1
    if shown != expected:
        row.mismatches += 1
        soak.note(f"{tag}: mismatch for {key!r}: shown {shown!r}, alone {expected!r}")


async def interact(page, name: str, key: tuple, rng: random.Random) -> tuple[tuple, str]:
    """Click a random tab or known checkbox and wait for its rerun; returns the new oracle key."""
    tabs = page.get_by_role("tab")
    names = await tabs.all_inner_texts()
    selected = [await tabs.nth(i).get_attribute("aria-selected") == "true" for i in range(len(names))]
    choices = [("tab", t.strip()) for t, s in zip(names, selected, strict=True) if not s]
    soak = FAMILIES[name].soak
    choices += [("check", label) for label in (*soak.checks, *soak.clicks)]
    if not choices:
        return key, "nothing"
    kind, label = rng.choice(choices)
    if kind == "tab":
        target = page.get_by_role("tab", name=label, exact=True)
    else:
        target = page.locator(f'[data-testid=stCheckbox]:has(input[aria-label="{label}"]) label').first
    await page.evaluate(ARM_JS)
    await target.click(timeout=LOAD_TIMEOUT_MS)
    await page.evaluate(SETTLED_JS, [10_000, LOAD_TIMEOUT_MS])
    if kind == "check" and label in soak.checks:  # the oracle's key holds the labels clicked away
        key = (key[0], key[1] ^ {label})
    return key, f"{kind} {label}"


def count_failure(err: Exception, row, soak, what: str) -> None:
    """A Playwright failure: a timeout is counted as one; anything else as an error, with a note."""
    message = str(err).splitlines()[0]
    if isinstance(err, PlaywrightTimeout) or "in time" in message:
        row.timeouts += 1
    else:
        row.errors += 1
        soak.note(f"{what} failed: {message[:160]}")


async def session(i: int, browser, url: str, deadline: float, seed: int, oracle: Oracle, soak: Soak) -> None:
    rng = random.Random(f"{seed}:{i}")
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(LOAD_TIMEOUT_MS)
    try:
        page = await context.new_page()
        while time.perf_counter() < deadline:
            name = rng.choice(list(soak.pages))
            params, key = pick_input(name, rng)
            row, tag = soak.pages[name], f"session {i} {name}"
            try:
                await page.goto(f"{url}{PATHS[name]}?{urlencode(params)}", wait_until="commit")
                painted_ms = await page.evaluate(LOADED_JS, LOAD_TIMEOUT_MS)
            except PlaywrightError as err:
                if "the page raised" in str(err):  # idle with an exception and no chart: still checked
                    row.loads += 1
                    await check(page, name, key, oracle, soak, tag)
                else:
                    count_failure(err, row, soak, f"{tag}: load")
                continue
            row.loads += 1
            row.load_s.append(painted_ms / 1000)
            await check(page, name, key, oracle, soak, tag)
            for _ in range(rng.choice((0, 0, 1, 2))):
                if time.perf_counter() >= deadline:
                    break
                try:
                    key, did = await interact(page, name, key, rng)
                except PlaywrightError as err:
                    count_failure(err, row, soak, f"{tag}: click")
                    break
                row.interactions += 1
                await check(page, name, key, oracle, soak, f"{tag} after {did}")
    finally:
        await context.close()


async def sample_rss(pid: int, soak: Soak, stop: asyncio.Event) -> None:
    while not stop.is_set():
        soak.rss_mb.append(tree_rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
        except TimeoutError:
            pass


async def warm_up(browser, url: str, pages: list[str]) -> None:
    """One load of every page soaked (models loaded, caches started) before memory is counted from."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        rng = random.Random("warm-up")
        for name in pages:
            await page.goto(f"{url}{PATHS[name]}?{urlencode(pick_input(name, rng)[0])}", wait_until="commit")
            await page.evaluate(LOADED_JS, LOAD_TIMEOUT_MS)
    finally:
        await context.close()


async def run_soak(url: str, pid: int, args: argparse.Namespace, oracle: Oracle, soak: Soak) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        stop = asyncio.Event()
        sampler = None
        try:
            print("warm-up: one load of each page", file=sys.stderr, flush=True)
            await warm_up(browser, url, list(soak.pages))
            soak.rss_start = tree_rss_mb(pid)
            sampler = asyncio.create_task(sample_rss(pid, soak, stop))
            print(f"{args.sessions} sessions for {args.minutes:g} min", file=sys.stderr, flush=True)
            soak.began = time.perf_counter()
            deadline = soak.began + args.minutes * 60
            sessions = [
                session(i, browser, url, deadline, args.seed, oracle, soak) for i in range(args.sessions)
            ]
            await asyncio.gather(*sessions)
            soak.ended = time.perf_counter()
            await asyncio.sleep(RSS_EVERY_S)  # closed sessions' websockets go; the server settles
            soak.rss_end = tree_rss_mb(pid)
        finally:
            stop.set()
            if sampler is not None:
                await sampler
            await browser.close()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def report(soak: Soak, args: argparse.Namespace, interrupted: bool) -> None:
    ran = (soak.ended or time.perf_counter()) - soak.began
    print(f"\nsoak: {args.sessions} sessions × {args.minutes:g} min (ran {ran:.0f} s), seed {args.seed}, "
          f"pages {', '.join(soak.pages)}")  # fmt: skip
    print(
        f"{'page':<12} {'loads':>5} {'clicks':>6} {'timeouts':>8} {'errors':>6} {'exceptions':>10} "
        f"{'checked':>7} {'unchecked':>9} {'mismatches':>10} {'load median s':>13} {'p95 s':>6}"
    )
    total = PageStats()
    for row in soak.pages.values():  # every count summed, every load time pooled
        for f in fields(PageStats):
            setattr(total, f.name, getattr(total, f.name) + getattr(row, f.name))
    for name, row in [*soak.pages.items(), ("all", total)]:
        times = f"{'-':>13} {'-':>6}"
        if row.load_s:
            times = f"{statistics.median(row.load_s):>13.2f} {p95(row.load_s):>6.2f}"
        print(
            f"{name:<12} {row.loads:>5} {row.interactions:>6} {row.timeouts:>8} {row.errors:>6} "
            f"{row.exceptions:>10} {row.checked:>7} {row.unchecked:>9} {row.mismatches:>10} {times}"
        )
    if soak.rss_start is not None:
        peak = max([soak.rss_start, *soak.rss_mb])
        end = soak.rss_end if soak.rss_end is not None else (soak.rss_mb or [soak.rss_start])[-1]
        print(
            f"server RSS (process + children): start {soak.rss_start:.0f} MB (after one warm-up load of each "
            f"page), max {peak:.0f} MB, end {end:.0f} MB; growth end − start {end - soak.rss_start:+.0f} MB, "
            f"max − start {peak - soak.rss_start:+.0f} MB ({len(soak.rss_mb)} samples every {RSS_EVERY_S} s)"
        )
        minutes = " → ".join(f"{mb:.0f}" for mb in soak.rss_mb[:: 60 // RSS_EVERY_S])
        print(f"server RSS each minute from the start, MB: {minutes} → {end:.0f} (end)")
    for line in soak.notes:
        print(f"  {line}")
    if interrupted:
        print("(interrupted: partial counts)")
    if total.exceptions:
        print(f"FAIL: {total.exceptions} exception block(s) shown")
    if total.mismatches:
        print(f"FAIL: {total.mismatches} cross-talk mismatch(es): a session saw another input's output")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pages", default=",".join(PATHS), help="the pages soaked (default: every page)")
    args = parser.parse_args()
    pages = [p for p in args.pages.split(",") if p]
    if (unknown := set(pages) - set(PATHS)) or not pages:
        parser.error(f"unknown pages {sorted(unknown)}; choose from {list(PATHS)}")
    print("loading the models for the expected outputs", file=sys.stderr, flush=True)
    oracle, soak, procs, interrupted = Oracle(), Soak(pages={p: PageStats() for p in pages}), [], False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            url, _ = start_server(ROOT / "app.py", Path(tmp) / "app.log", procs)
            asyncio.run(run_soak(url, procs[0].pid, args, oracle, soak))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for proc in procs:
                stop_server(proc)
            oracle.close()
    report(soak, args, interrupted)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
