"""Real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

As a new user would: open each page, change its main controls, upload an image; check that Plotly
charts really render (with the expected trace types), that no Streamlit exception appears, and
that the output changes as it should. Screenshots of each page go to docs/. Also: user text is
never rendered as HTML, 8 concurrent sessions each see their own result, and the server makes no
outbound connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import psutil
import pytest
from PIL import Image

from runners.registry import load
from runners.seq2seq import run as run_seq2seq
from tasks import TASKS
from tasks.scenes import generate

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium not installed (apt-get install -y chromium); CI installs it",
)


@pytest.fixture(scope="session")
def browser_type_launch_args():
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url, proc
    proc.terminate()
    proc.wait(timeout=20)


def settle(page, charts: int = 1, timeout: float = 90_000) -> None:
    """Wait until the app has stopped running and at least ``charts`` Plotly charts are drawn."""
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}", timeout=timeout
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(500)


def trace_types(page) -> list[list[str]]:
    return page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(p => (p.data || []).map(t => t.type))"
    )


def output(page) -> str:
    return page.get_by_test_id("stCode").first.inner_text().strip()


def no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


SHOTS = ("seq2seq", "transformer", "bert", "captioning")


@pytest.fixture(scope="session")
def shot_dir(request, tmp_path_factory) -> Path:
    """Where this run's screenshots go: a fresh folder, or docs/ (tracked, shown in the README) only
    with `pytest --update-screenshots`."""
    if request.config.getoption("--update-screenshots"):
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("screenshots")


def shot(page, folder: Path, name: str) -> None:
    """A tall viewport (Streamlit scrolls inside the page, so a full-page shot would be cut)."""
    page.set_viewport_size({"width": 1400, "height": 1900})
    settle(page)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_seq2seq_page(server, page, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/?input=text&text=" + "saturday, 21 november 2026")
    settle(page)
    no_exception(page)
    assert output(page) == "2026-11-21"
    assert any("heatmap" in types for types in trace_types(page))
    shot(page, shot_dir, "seq2seq")
    box = page.get_by_label("Source text (at most 80 characters)")
    box.fill("the 4th of july, 1976")
    box.press("Enter")
    page.wait_for_function(
        "document.querySelector('[data-testid=\"stCode\"]').innerText.includes('1976-07-04')"
    )
    settle(page)
    no_exception(page)
    assert "text=the+4th" in page.url or "text=the%204th" in page.url  # the state is in the URL


def test_user_text_is_never_html(server, page):
    url, _ = server
    page.goto(f"{url}/?input=text")
    settle(page)
    box = page.get_by_label("Source text (at most 80 characters)")
    box.fill('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> 2026')
    box.press("Enter")
    page.wait_for_timeout(1500)
    settle(page)
    no_exception(page)
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"]').count() == 0
    assert "read as <unk>" in page.get_by_test_id("stAlert").first.inner_text()  # the tags were named as text


def test_transformer_page(server, page, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/transformer")
    settle(page, charts=2)
    no_exception(page)
    before = page.get_by_test_id("stMetricValue").nth(2).inner_text()
    page.get_by_text("Scale logits by 1/√d_k").click()
    page.wait_for_function(
        f"[...document.querySelectorAll('[data-testid=\"stMetricValue\"]')][2].innerText !== {before!r}"
    )
    settle(page, charts=2)
    no_exception(page)
    assert any("heatmap" in types for types in trace_types(page))
    shot(page, shot_dir, "transformer")


def test_bert_page(server, page, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/bert?" + urlencode({"a": "The bank raised interest rates.", "b": ""}))
    settle(page)
    no_exception(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "8"  # [CLS] + 6 pieces + [SEP]
    assert any("scatter" in types for types in trace_types(page))  # the head view's lines
    shot(page, shot_dir, "bert")


def test_captioning_page_with_upload(server, page, tmp_path, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/captioning?source=upload")
    page.wait_for_selector("input[type=file]", state="attached", timeout=90_000)
    scene = generate(1, 77)[0]
    path = tmp_path / "scene.png"
    Image.fromarray(scene.image).resize((256, 256), Image.NEAREST).save(path)
    page.locator("input[type=file]").set_input_files(str(path))
    settle(page, charts=3)
    no_exception(page)
    assert output(page)
    types = trace_types(page)
    assert any("image" in t and "heatmap" in t for t in types)  # the per-word overlay
    shot(page, shot_dir, "captioning")
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"hello")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("text=This is not an image", timeout=60_000)
    no_exception(page)


def test_eight_concurrent_sessions_each_see_their_own_result(server, browser):
    url, _ = server
    dates = [
        "3/5/51",
        "nov 21 2026",
        "21.11.26",
        "the 4th of july, 1976",
        "2001-09-09",
        "12 dec 99",
        "monday, 1 january 2024",
        "june 30, 1969",
    ]
    scorings = ["additive", "dot", "general", "scaled_dot"] * 2
    expected = []
    for text, scoring in zip(dates, scorings, strict=True):
        model, _, sv, tv = load(f"seq2seq-dates-{scoring}")
        expected.append(run_seq2seq(model, TASKS["dates"], TASKS["dates"].tokenize(text), sv, tv)[0].text)
    contexts = [browser.new_context() for _ in dates]
    pages = [c.new_page() for c in contexts]
    for p, text, scoring in zip(pages, dates, scorings, strict=True):  # all sessions start before any ends
        p.goto(
            f"{url}/?" + urlencode({"input": "text", "text": text, "scoring": scoring}), wait_until="commit"
        )
    got = []
    for p in pages:
        settle(p)
        no_exception(p)
        got.append(output(p))
    for c in contexts:
        c.close()
    assert got == expected


def test_server_makes_no_outbound_connection(server, page):
    url, proc = server
    page.goto(f"{url}/bert")
    settle(page)
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    remote = {c.raddr.ip for p in procs for c in p.net_connections(kind="inet") if c.raddr}
    outside = [ip for ip in remote if not ipaddress.ip_address(ip).is_loopback]
    assert not outside, outside


def test_every_page_was_photographed_this_run(shot_dir):
    # Runs last in this file: the page tests above wrote into this run's folder (a fresh one unless
    # --update-screenshots), so a page test that skipped its screenshot fails here.
    for name in SHOTS:
        with Image.open(shot_dir / f"{name}.png") as picture:
            assert picture.size == (1400, 1900), name
            darkest, lightest = picture.convert("L").getextrema()
            assert lightest - darkest > 100, f"{name}.png is blank"
