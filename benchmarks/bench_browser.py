"""Benchmark (not a test): the app as a user feels it in a real browser, against a floor app.

    python benchmarks/bench_browser.py [--repeat N] [--pages seq2seq,transformer,bert-512,…]

Starts two `streamlit run` servers on free loopback ports: a "floor" app written to a temp dir (one
checkbox rerunning one 12×12 Plotly heatmap, the least a Streamlit + Plotly page can cost) and
app.py; drives Debian's Chromium (headless) with Playwright. Measures:

- cold start: process launch → first Plotly chart painted (`.js-plotly-plot .main-svg` present, or
  a data grid's canvas on a page whose first view is a table: the GPT's,
  `[data-testid=stApp]` `data-test-script-state` = notRunning, then two animation frames) in a fresh
  page; the app's on "/".
- first load of a page: the same, the first time the server shows it (its model loaded then: on the
  SmolLM2 page, the 98 MB GGUF read and dequantised; goal ≤ 6 s on 2 cores), in seconds.
- warm page load: fresh browser context, navigation start → first chart painted, script idle (the
  page's own performance.now()); median of --repeat after the first load.
- click → painted, per control listed in CONTROLS (checkboxes, radios, select boxes, sliders, tab
  labels): a MutationObserver on the script state records when it goes to running and back to
  notRunning, then waits two rAFs; time from the input event (pointerdown/keydown timeStamp) to that
  paint. If the state does not go to running within 1.5 s (a fragment rerun may not flip it), it
  falls back to the main block's DOM mutations settling (none for 300 ms): the "method" column
  says which. Each control is driven --repeat times back and forth (tabs: home tab → tab, only the
  second click timed); median per control, then median over a page's controls.
- bytes per rerun: websocket payload bytes the browser received between input and paint.
- a family's extra rows (its declaration's ``bench_variants``: BERT at 512 tokens, SmolLM2 at ~128),
  chosen with --pages; a row with a ``drawn`` component also reports that component's data in → drawn.
×floor: the ratio to the floor app measured in the same run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.family import Bench, Control  # noqa: E402
from benchmarks.browser_report import fmt_bytes, report  # noqa: E402
from benchmarks.chromium import BROWSER_ARGS, CHROMIUM, LOADED_JS, start_server, stop_server  # noqa: E402
from families import PAGES, address  # noqa: E402

FLOOR_APP = """import numpy as np, plotly.graph_objects as go, streamlit as st
on = st.checkbox("Other data")
z = np.random.default_rng(1 if on else 0).random((12, 12), dtype=np.float32)
st.plotly_chart(go.Figure(go.Heatmap(z=z)), key="floor")
"""


def pages() -> dict[str, tuple[str, Bench]]:
    """Every benchmark row the pages declare (the start page's and each family's): name → (the page's
    address, its `Bench`); a page's extra rows (``bench_variants``) as "<page>-<variant>"."""
    rows = {}
    for f in PAGES.values():
        rows[f.name] = (address(f), f.bench)
        rows |= {f"{f.name}-{name}": (address(f), bench) for name, bench in f.bench_variants.items()}
    return rows


INSTALL_JS = """() => {
  if (window.__bench) return;
  const app = document.querySelector('[data-testid=stApp]');
  const main = document.querySelector('[data-testid=stMain]') || app;
  const raf2 = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const B = window.__bench = {armed: false};
  B.arm = () => Object.assign(B, {armed: true, tArm: performance.now(), t0: null, running: null,
                                  done: null, painted: null, lastMut: null, mutPainted: null});
  for (const type of ['pointerdown', 'keydown', 'pointermove'])
    document.addEventListener(type, e => { if (B.armed && B.t0 === null) B.t0 = e.timeStamp; }, true);
  new MutationObserver(() => {
    if (!B.armed) return;
    const running = app.getAttribute('data-test-script-state') === 'running';
    if (running && B.running === null) B.running = performance.now();
    else if (!running && B.running !== null && B.done === null) {
      B.done = performance.now();
      raf2().then(() => { B.painted = performance.now(); });
    }
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  new MutationObserver(() => {
    if (!B.armed) return;
    const now = B.lastMut = performance.now();
    raf2().then(() => { if (B.lastMut === now) B.mutPainted = performance.now(); });
  }).observe(main, {subtree: true, childList: true, attributes: true, characterData: true});
  // A look: the attention component redraws (its root's data-drawn stamp passes the input's time),
  // then two frames; 300 ms more to see whether a rerun starts (a look must not start one).
  B.waitLook = async ([key, exact, maxMs]) => {
    const sleep = ms => new Promise(r => setTimeout(r, ms)), start = performance.now();
    const root = () => document.querySelector(`.st-key-${key} [data-testid=stBidiComponentIsolated]`)
      ?.shadowRoot?.querySelector('.ae');
    const t0 = () => B.t0 ?? B.tArm;  // a select's option picked by script has no pointer event
    const ready = () => { const r = root(); return r && Number(r.dataset.drawn) >= t0()
      && (!exact || (r.shown && r.dataset.layer === exact)); };
    while (!ready() && performance.now() - start < maxMs) await sleep(5);
    await raf2();
    const painted = performance.now(), timedOut = performance.now() - start >= maxMs;
    await sleep(300);
    B.armed = false;
    return {method: B.running === null ? 'look' : 'look+rerun', timedOut, s: (painted - t0()) / 1000};
  };
  B.wait = async ([noRunMs, quietMs, maxMs]) => {
    const start = performance.now(), sleep = ms => new Promise(r => setTimeout(r, ms));
    const late = () => performance.now() - start > maxMs;
    while (B.running === null && performance.now() - start < noRunMs) await sleep(10);
    let method = 'state';
    if (B.running !== null) {
      while (B.painted === null && !late()) await sleep(10);
    } else if (B.lastMut === null) method = 'none';
    else {
      method = 'mutations';
      while ((performance.now() - B.lastMut < quietMs || B.mutPainted === null) && !late()) await sleep(20);
      B.painted = B.mutPainted;
    }
    B.armed = false;
    const t0 = B.t0 ?? B.tArm;
    return {method, timedOut: late(), s: B.painted === null ? null : (B.painted - t0) / 1000};
  };
}"""


def open_page(browser, url: str, received: list[int] | None = None):
    """A fresh context and page at ``url``, waited until its first chart is painted.
    Returns (context, page, seconds from navigation start to that paint)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    if received is not None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.append(len(p))))
    page.goto(url, wait_until="commit", timeout=180_000)
    painted_ms = page.evaluate(LOADED_JS, 180_000)
    return context, page, painted_ms / 1000


def loads(browser, url: str, repeat: int) -> tuple[float, float]:
    """(the first load, the median of the ``repeat`` warm loads after it), seconds."""
    times = []
    for _ in range(repeat + 1):
        context, _, seconds = open_page(browser, url)
        context.close()
        times.append(seconds)
    return times[0], statistics.median(times[1:])


def timed(page, action, received: list[int], look: tuple[str, str | None] | None = None) -> dict:
    """Arm the observers, do ``action`` (the input), wait for the paint; seconds, method, bytes.
    ``look``: (component key, layer index that must be drawn exact or None) — a look's paint."""
    page.evaluate(INSTALL_JS)
    page.evaluate("window.__bench.arm()")
    received.clear()
    action()
    if look:
        result = page.evaluate("window.__bench.waitLook", [*look, 60_000])
    else:
        result = page.evaluate("window.__bench.wait", [1500, 300, 120_000])
    result["bytes"] = sum(received)
    page.wait_for_timeout(100)  # let trailing paints and frames pass before the next input
    return result


def widget(page, c: Control):
    label = c.label
    attr = f'[aria-label^="{label[:-1]}"]' if label.endswith("*") else f'[aria-label="{label}"]'
    if c.kind == "check":
        return page.locator(f"[data-testid=stCheckbox]:has(input{attr}) label").first
    if c.kind == "slider":
        return page.locator(f"[data-testid=stSlider] input[type=range]{attr}").first
    if c.kind == "select":
        return page.locator(f"[data-testid=stSelectbox] input[role=combobox]{attr}").first
    if c.kind == "radio":
        return page.get_by_test_id("stRadio").filter(has_text=label).first
    return page.get_by_role("tab", name=label, exact=True)


def open_tab(page, name: str, received: list[int]) -> None:
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.get_attribute("aria-selected") != "true":
        timed(page, tab.click, received)


BACK = {"ArrowRight": "ArrowLeft", "ArrowDown": "ArrowUp", "ArrowLeft": "ArrowRight", "ArrowUp": "ArrowDown"}


def prepare_look(page, c: Control, i: int):
    """Untimed preparation of step ``i`` of a look; returns (the timed input, the layer that must be
    drawn exact, or None)."""
    scope = page.locator(f".st-key-{c.label}")
    root = scope.locator(".ae")
    root.scroll_into_view_if_needed()
    kind, _, arg = c.arg.partition(":")
    if kind == "key":
        root.focus()
        key = arg if i % 2 == 0 else BACK[arg]
        return (lambda: page.keyboard.press(key)), None
    if kind in ("hover", "patch"):  # a map's cells, or an image overlay's patches (hovered, or clicked)
        canvas = scope.locator("canvas.map:visible, canvas.photo:visible").first
        box, g = canvas.bounding_box(), canvas.evaluate("c => ({...c.dataset})")
        cell = float(g["cell"])
        x, y = box["x"] + float(g["left"]) + cell * (1.5 + i % 2), box["y"] + float(g["top"]) + cell * 1.5
        page.mouse.move(x - cell, y)
        return (lambda: page.mouse.move(x, y) if kind == "hover" else page.mouse.click(x, y)), None
    if kind == "zoom":
        return scope.locator("button.zoom-in" if i % 2 == 0 else "button.zoom-out").click, None
    if kind == "chip":
        return scope.locator(".chip").nth(1).click, None
    a, b = arg.split("/")
    label = a if i % 2 == 0 else b
    pick = scope.locator("select.pick-layer")
    index = pick.locator("option").all_inner_texts().index(label)
    return (lambda: pick.select_option(label=label)), (str(index) if kind == "far" else None)


def prepare(page, c: Control, i: int, received: list[int]):
    """Untimed preparation of step ``i`` of control ``c``; returns the timed input."""
    w = widget(page, c)
    if c.kind != "tab":
        w.scroll_into_view_if_needed()  # a select box opened below the fold closes as the page scrolls
    if c.kind == "check":
        return w.click
    if c.kind == "slider":
        w.focus()
        return lambda: w.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
    if c.kind == "radio":
        exact = re.compile(f"^{re.escape(c.arg[i % 2])}$")
        option = w.get_by_test_id("stRadioOption").filter(has_text=exact).first
        return option.click
    if c.kind == "select":
        current = w.input_value()
        w.click()
        options = page.get_by_role("option")
        options.first.wait_for()
        texts = options.all_inner_texts()
        other = next(j for j, t in enumerate(texts) if t.strip() != current.strip())
        return options.nth(other).click
    open_tab(page, c.arg, received)  # tab: from the home tab, the timed click opens the control's tab
    return w.click


def looked(page, c: Control, i: int, received: list[int]) -> tuple:
    """``timed``'s arguments for step ``i`` of a look."""
    action, exact = prepare_look(page, c, i)
    return action, received, (c.label, exact)


def measure_control(page, c: Control, repeat: int, received: list[int]) -> dict:
    if c.tab:
        open_tab(page, c.tab, received)
    if c.kind == "look":
        runs = [timed(page, *looked(page, c, i, received)) for i in range(repeat)]
        if repeat % 2:
            timed(page, *looked(page, c, repeat, received))
    else:
        runs = [timed(page, prepare(page, c, i, received), received) for i in range(repeat)]
        if repeat % 2 and c.kind != "tab":  # leave the control as it was found
            timed(page, prepare(page, c, repeat, received), received)
    seconds = [r["s"] for r in runs if r["s"] is not None]
    if not seconds:
        raise RuntimeError(f"no paint detected ({runs[0]['method']})")
    method, timeouts = "+".join(sorted({r["method"] for r in runs})), sum(r["timedOut"] for r in runs)
    out = {"control": c.name, "median": statistics.median(seconds), "first": seconds[0], "method": method,
           "look": c.kind == "look" and not c.arg.startswith("far:"), "max": max(seconds),
           "reran": sum(r["method"] != "look" for r in runs) if c.kind == "look" else None}  # fmt: skip
    return out | {"bytes": statistics.median(r["bytes"] for r in runs), "timeouts": timeouts}


def bench_page(browser, url: str, controls: list[Control], repeat: int, label: str) -> dict:
    print(f"[{label}] {url[:80]}", file=sys.stderr, flush=True)
    row = {"page": label, "first": None, "load": None, "controls": [], "failed": []}
    received: list[int] = []
    try:
        row["first"], row["load"] = loads(browser, url, repeat)
        context, page, _ = open_page(browser, url, received)
    except Exception as err:  # a page that does not load is reported, not fatal
        row["failed"].append(("(page load)", str(err).splitlines()[0]))
        return row
    try:
        for c in controls:
            try:
                r = measure_control(page, c, repeat, received)
                row["controls"].append(r)
                print(f"[{label}] {c.name}: {r['median']:.3f} s ({r['method']})", file=sys.stderr, flush=True)
            except Exception as err:  # report the control, go on with the others
                row["failed"].append((c.name, str(err).splitlines()[0]))
                page.keyboard.press("Escape")
    finally:
        context.close()
    return row


def cold_start(browser, script: Path, log: Path, procs: list[subprocess.Popen]) -> tuple[str, float]:
    """Launch a server (added to ``procs``), then open "/" in a fresh page: launch → first chart painted."""
    url, launched = start_server(script, log, procs)
    context, _, _ = open_page(browser, url + "/")
    seconds = time.perf_counter() - launched
    context.close()
    return url, seconds


VIEW_TIMES_JS = """key => {
    const r = document.querySelector(`.st-key-${key} [data-testid=stBidiComponentIsolated]`)
        ?.shadowRoot?.querySelector('.ae');
    return r && [Number(r.dataset.received), Number(r.dataset.drawn)]; }"""


def drawn_after_data(browser, url: str, key: str, repeat: int) -> None:
    """An attention component's own stamps on load: its data in → drawn, and the bytes the browser
    received for the whole page load (websocket frames)."""
    draws, sizes = [], []
    for _ in range(repeat):
        received: list[int] = []
        context, page, _ = open_page(browser, url, received)
        page.wait_for_function(f"({VIEW_TIMES_JS})({key!r})?.[1] > 0", timeout=180_000)
        page.wait_for_timeout(500)
        got, drawn = page.evaluate(VIEW_TIMES_JS, key)
        tokens = page.get_by_test_id("stMetricValue").first.inner_text()
        draws.append((drawn - got) / 1000)
        sizes.append(sum(received))
        context.close()
    print(f"\n{key} on load ({tokens} tokens): data in → drawn median {statistics.median(draws):.3f} s (max "
          f"{max(draws):.3f}; goal ≤ 0.5 s); bytes received for the whole page load median "
          f"{fmt_bytes(statistics.median(sizes))} (goal: ≤ 2 MB of maps)")  # fmt: skip


def main() -> None:
    rows_declared = pages()
    default = [name for name in rows_declared if name in PAGES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    rows_help = f"rows to measure (default: each family's page); any of {', '.join(rows_declared)}"
    parser.add_argument("--pages", default=",".join(default), help=rows_help)
    args = parser.parse_args()
    chosen = [p for p in args.pages.split(",") if p]
    if unknown := set(chosen) - set(rows_declared):
        parser.error(f"unknown pages {sorted(unknown)}; choose from {list(rows_declared)}")
    began = time.perf_counter()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            floor = Path(tmp) / "floor_app.py"
            floor.write_text(FLOOR_APP)
            floor_url, floor_cold = cold_start(browser, floor, Path(tmp) / "floor.log", procs)
            app_url, app_cold = cold_start(browser, ROOT / "app.py", Path(tmp) / "app.log", procs)
            rows = [bench_page(browser, floor_url, [Control("check", "Other data")], args.repeat, "floor")]
            for name in chosen:
                path, bench = rows_declared[name]
                url = app_url + path + (f"?{urlencode(bench.query)}" if bench.query else "")
                if bench.drawn is not None:
                    drawn_after_data(browser, url, bench.drawn, args.repeat)
                rows.append(bench_page(browser, url, list(bench.controls), args.repeat, name))
        finally:
            browser.close()
            for proc in procs:
                stop_server(proc)
    report(rows, (floor_cold, app_cold))
    print(f"\n(--repeat {args.repeat}; whole run {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
