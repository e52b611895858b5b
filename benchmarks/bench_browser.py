"""Benchmark (not a test): the app as a user feels it in a real browser, against a floor app.

    python benchmarks/bench_browser.py [--repeat N] [--pages seq2seq,...,gpt,llm] [--bert-512] [--llm-128]

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
- --bert-512: /bert with a 512-token input (`a` = "token " × 600), load and a few controls.
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
from typing import NamedTuple
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chromium import BROWSER_ARGS, CHROMIUM, LOADED_JS, start_server, stop_server  # noqa: E402

FLOOR_APP = """import numpy as np, plotly.graph_objects as go, streamlit as st
on = st.checkbox("Other data")
z = np.random.default_rng(1 if on else 0).random((12, 12), dtype=np.float32)
st.plotly_chart(go.Figure(go.Heatmap(z=z)), key="floor")
"""


class Control(NamedTuple):
    """One control. kind: check | radio | select | slider | tab | look. label: the widget's aria-label
    (a trailing * matches a prefix; radios: the start of their label text; tabs: the tab name; look:
    the attention component's key). arg: radio (target option, home option); tab: the home tab;
    look: what the visitor does in the component — key:<key> (back with the opposite key), hover (two
    cells in turn), zoom (+ then −), chip (a head toggled), select:<a>/<b> (its layer picker),
    far:<a>/<b> (a layer not sent exact: asked of the server). tab: open this tab first."""

    kind: str
    label: str
    arg: tuple[str, str] | str | None = None
    tab: str | None = None

    @property
    def name(self) -> str:
        extra = {"radio": f" → {self.arg[0]}" if self.kind == "radio" else "", "look": f" {self.arg}"}
        return f"{self.kind} {self.label}" + extra.get(self.kind, "")


KEYS = ("key:ArrowRight", "key:ArrowDown")  # another head, another layer
# fmt: off
CONTROLS: dict[str, tuple[str, list[Control]]] = {
    "seq2seq": ("/", [
        Control("radio", "Decoding", ("beam", "greedy")), Control("select", "Scoring function"),
        *(Control("look", "s2s_heatmap", a) for a in ("hover", "zoom")),
        Control("radio", "Input:", ("text", "example")), Control("select", "Example (held-out*"),
        *(Control("tab", t, "Alignment") for t in ("Step inspector", "Teacher forcing", "Bottleneck study")),
        Control("tab", "Statistics & export", "Alignment"),
        *(Control("tab", t, "Alignment") for t in ("RNN through time", "Attention vs importance")),
        Control("slider", "Decoder step t", tab="Step inspector"),  # in an st.fragment
    ]),
    "transformer": ("/transformer", [
        Control("check", "Causal mask in decoder self-attention"), Control("check", "Padding mask"),
        Control("check", "Scale logits by 1/√d_k"), Control("check", "Positional encoding"),
        Control("slider", "Temperature on attention logits"),
        Control("select", "Head", tab="Walkthrough"),  # in an st.fragment
        *(Control("radio", "Step (pre-norm order)", (step, "1 · Layer norm"), tab="Walkthrough")
          for step in ("3 · Scores → softmax", "7 · Feed-forward")),
        *(Control("tab", t, "Walkthrough") for t in ("Heads", "Ablation", "Positional encoding")),
        *(Control("tab", t, "Walkthrough") for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "tf_model", a, tab="Heads") for a in (*KEYS, "hover", "zoom")),
        Control("look", "tf_heads", "chip", tab="Heads"),
    ]),
    "bert": ("/bert", [
        Control("check", "Hide [CLS] / [SEP] in the views"), Control("slider", "Temperature on attention*"),
        Control("radio", "Chart camera button saves", ("svg", "png")),
        *(Control("tab", t, "Head view") for t in ("Model view", "Neuron view", "Rollout vs raw")),
        *(Control("tab", t, "Head view") for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "bert_heads", a, tab="Head view") for a in ("select:L5/L0", "chip")),
        *(Control("look", "bert_model", a, tab="Model view") for a in ("key:ArrowRight", "hover")),
    ]),
    "captioning": ("/captioning", [
        Control("radio", "Image:", ("random", "gallery")), Control("radio", "Image:", ("compose", "gallery")),
        *(Control("slider", s) for s in ("Sample", "Beam size (1 = greedy)", "Overlay opacity")),
        Control("tab", "Coverage and CNN self-attention", "Where each word looks"),
        Control("tab", "Statistics & export", "Where each word looks"),
        Control("slider", "Word", tab="Where each word looks"),  # in an st.fragment
        Control("slider", "row", tab="Coverage and CNN self-attention"),  # in an st.fragment
        Control("tab", "Attention vs importance", "Where each word looks"),
    ]),
    "gpt": ("/gpt", [
        Control("check", "Causal mask"), Control("slider", "Temperature on attention logits"),
        Control("radio", "Input:", ("random", "prompt")),
        Control("slider", "Candidates per position", tab="Next tokens"),  # in an st.fragment
        *(Control("tab", t, "Next tokens") for t in ("Attention", "Head roles", "Induction")),
        *(Control("tab", t, "Next tokens") for t in ("Raw vs projected", "Attention vs importance")),
        *(Control("look", "gpt_model", a, tab="Attention") for a in (*KEYS, "hover")),
        Control("look", "gpt_heads", "chip", tab="Attention"),
    ]),
    "llm": ("/llm", [
        Control("check", "RoPE (rotary positions)"), Control("radio", "Input:", ("chat", "prompt")),
        *(Control("select", s, tab="Attention") for s in ("Layer", "Head")),  # the map redrawn
        Control("slider", "Candidates per position", tab="Next tokens"),  # in an st.fragment
        *(Control("tab", t, "Next tokens") for t in ("Attention", "Model view", "Generate")),
        Control("tab", "Head statistics", "Next tokens"),
        *(Control("look", "llm_map", a, tab="Attention") for a in (*KEYS, "hover")),
        Control("look", "llm_model", "key:ArrowRight", tab="Model view"),
    ]),
}
LLM_128 = [  # SmolLM2 at ~128 tokens: 270 maps are 16 MB, more than a run sends exact
    *(Control("look", "llm_map", a) for a in (*KEYS, "hover")),
    Control("look", "llm_map", "far:L25/L29"),  # a layer not sent exact: asked of the server
    Control("look", "llm_model", "key:ArrowRight", tab="Model view"),
]
BERT_512 = [
    Control("check", "Hide [CLS] / [SEP] in the views"), Control("slider", "Temperature on attention logits"),
    Control("slider", "Window:*"), Control("tab", "Model view", "Head view"),
    *(Control("look", "bert_heads", a, tab="Head view") for a in ("select:L5/L0", "chip")),
    *(Control("look", "bert_model", a, tab="Model view") for a in ("key:ArrowRight", "hover", "zoom")),
]
# fmt: on

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
    if kind == "hover":
        canvas = scope.locator("canvas.map")
        box, g = canvas.bounding_box(), canvas.evaluate("c => ({...c.dataset})")
        cell = float(g["cell"])
        x, y = box["x"] + float(g["left"]) + cell * (1.5 + i % 2), box["y"] + float(g["top"]) + cell * 1.5
        page.mouse.move(x - cell, y)
        return (lambda: page.mouse.move(x, y)), None
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


def fmt_bytes(n: float) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n:.0f} B"


def ratio(x: float | None, floor: float | None) -> str:
    return "-" if x is None or not floor else f"{x / floor:.2f}"


def report(rows: list[dict], cold: tuple[float, float]) -> None:
    reruns = [[r["median"] for r in row["controls"] if not r["look"]] for row in rows]
    clicks = [statistics.median(m) if m else None for m in reruns]
    floor_load, floor_click = rows[0]["load"], clicks[0]
    print(f"\n{'page':<12} {'first s':<8} {'load s':<7} {'×floor':<7} ", end="")
    print(f"{'rerun click s':<14} {'×floor':<7} ", end="")
    print(f"{'look s':<7} {'×floor':<7} {'look max s':<11} {'looks that reran':<17} bytes/rerun median (max)")
    for row, click in zip(rows, clicks, strict=True):
        first, load = ("-" if row[k] is None else f"{row[k]:.2f}" for k in ("first", "load"))
        line = f"{row['page']:<12} {first:<8} {load:<7} {ratio(row['load'], floor_load):<7} "
        if click is None:
            print(line + "(no control measured)")
            continue
        looks = [r for r in row["controls"] if r["look"]]
        look = statistics.median(r["median"] for r in looks) if looks else None
        look_text = "-" if look is None else f"{look:.3f}"
        worst = "-" if not looks else f"{max(r['max'] for r in looks):.3f}"
        reran = "-" if not looks else str(sum(r["reran"] for r in looks))
        sizes = [r["bytes"] for r in row["controls"] if not r["look"]]
        line += f"{click:<14.3f} {ratio(click, floor_click):<7} {look_text:<7} {ratio(look, floor_click):<7} "
        size = f"{fmt_bytes(statistics.median(sizes))} ({fmt_bytes(max(sizes))})"
        print(f"{line}{worst:<11} {reran:<17} {size}")
    print(f"cold start: floor {cold[0]:.2f} s, app {cold[1]:.2f} s (×{cold[1] / cold[0]:.1f})")
    print("goals: warm load ≤ 1.8× floor, rerun click median ≤ 2.5× floor; SmolLM2's first load ≤ 6 s")
    print("       (issue 25); looks (view-only, in the attention component): median ≤ 0.1 s and ≤ 0.6× the")
    print("       floor's rerun, every look ≤ 0.2 s, no look starts a rerun (issue 27)")
    print(f"\n{'page':<12} {'control':<52} {'median s':>8} {'first s':>8}  {'method':<10} bytes (median)")
    for row in rows:
        for r in row["controls"]:
            note = f"  ({r['timeouts']} timed out)" if r["timeouts"] else ""
            print(
                f"{row['page']:<12} {r['control'][:52]:<52} {r['median']:>8.3f} {r['first']:>8.3f}  "
                f"{r['method']:<10} {fmt_bytes(r['bytes'])}{note}"
            )
        for name, why in row["failed"]:
            print(f"{row['page']:<12} {name[:52]:<52} {'FAILED':>8}  {why[:100]}")


LONG = "One two three four five six seven eight nine ten. " * 11  # SmolLM2 reads it as 122 tokens
VIEW_TIMES_JS = """key => {
    const r = document.querySelector(`.st-key-${key} [data-testid=stBidiComponentIsolated]`)
        ?.shadowRoot?.querySelector('.ae');
    return r && [Number(r.dataset.received), Number(r.dataset.drawn)]; }"""


def llm_model_view(browser, app_url: str, repeat: int) -> None:
    """SmolLM2's 270-map model view at ~128 tokens: data in → drawn (the component's own stamps), and
    the bytes the browser received for the load (websocket frames)."""
    url = f"{app_url}/llm?" + urlencode({"llm_view": "Model view", "llm_prompt": LONG})
    draws, sizes = [], []
    for _ in range(repeat):
        received: list[int] = []
        context, page, _ = open_page(browser, url, received)
        page.wait_for_function(f"({VIEW_TIMES_JS})('llm_model')?.[1] > 0", timeout=180_000)
        page.wait_for_timeout(500)
        got, drawn = page.evaluate(VIEW_TIMES_JS, "llm_model")
        tokens = page.get_by_test_id("stMetricValue").first.inner_text()
        draws.append((drawn - got) / 1000)
        sizes.append(sum(received))
        context.close()
    print(f"\nSmolLM2 model view, {tokens} tokens (30 × 9 maps): data in → drawn median "
          f"{statistics.median(draws):.3f} s (max {max(draws):.3f}; goal ≤ 0.5 s); bytes received for the "
          f"whole page load median {fmt_bytes(statistics.median(sizes))} (goal: ≤ 2 MB of maps)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages", default=",".join(CONTROLS))
    parser.add_argument("--bert-512", action="store_true", help="also /bert with a 512-token input")
    parser.add_argument("--llm-128", action="store_true", help="also SmolLM2's model view at ~128 tokens")
    args = parser.parse_args()
    pages = [p for p in args.pages.split(",") if p]
    if unknown := set(pages) - set(CONTROLS):
        parser.error(f"unknown pages {sorted(unknown)}; choose from {list(CONTROLS)}")
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
            for name in pages:
                path, controls = CONTROLS[name]
                rows.append(bench_page(browser, app_url + path, controls, args.repeat, name))
            if args.bert_512:
                url = f"{app_url}/bert?" + urlencode({"a": "token " * 600})
                rows.append(bench_page(browser, url, BERT_512, args.repeat, "bert-512"))
            if args.llm_128:
                llm_model_view(browser, app_url, args.repeat)
                url = f"{app_url}/llm?" + urlencode({"llm_view": "Attention", "llm_prompt": LONG})
                rows.append(bench_page(browser, url, LLM_128, args.repeat, "llm-128"))
        finally:
            browser.close()
            for proc in procs:
                stop_server(proc)
    report(rows, (floor_cold, app_cold))
    print(f"\n(--repeat {args.repeat}; whole run {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
