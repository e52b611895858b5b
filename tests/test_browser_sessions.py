"""Real browser, many sessions and the network: 8 concurrent sessions each see their own result, a
whole session requests nothing but the local server, and the server never tries to reach past the
loopback (every socket call it makes is guarded, all run: the guard is tests/browser_server.py's).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil

from families import FAMILIES, address
from models.attention import SCORINGS
from tests.browser_server import GUARD_ENV
from tests.browser_support import BROWSER_TESTS, no_exception, output, seq2seq_shown, settle

pytestmark = BROWSER_TESTS


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
    scorings = [SCORINGS[i % len(SCORINGS)] for i in range(len(dates))]
    expected = [seq2seq_shown(text, scoring) for text, scoring in zip(dates, scorings, strict=True)]
    contexts = [browser.new_context() for _ in dates]
    pages = [c.new_page() for c in contexts]
    for p, text, scoring in zip(pages, dates, scorings, strict=True):  # all sessions start before any ends
        query = urlencode({"input": "text", "text": text, "scoring": scoring})
        p.goto(f"{url}{address(FAMILIES['seq2seq'])}?{query}", wait_until="commit")
    got = []
    for p in pages:
        settle(p)
        no_exception(p)
        got.append(output(p))
    for c in contexts:
        c.close()
    assert got == expected


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}  # content the page made itself
# One visitor's session: each page through the sidebar, then a widget or two and several tabs.
TOUR = {
    "/": (["Next step →"], []),  # the start page: the path's next step
    "/seq2seq": (["beam"], ["Step inspector", "Teacher forcing", "Bottleneck study", "Model card",
                     "RNN through time", "Sequential vs parallel", "Attention vs importance"]),
    "/transformer": (["Scale logits by 1/√d_k"], ["Heads", "Raw vs projected", "Positional encoding",
                                                  "Post- vs pre-norm", "Attention vs importance"]),
    "/bert": (["Hide [CLS] / [SEP] in the views"], ["Model view", "Rollout vs raw", "Raw vs projected",
                                                    "Attention vs importance"]),
    "/captioning": (["random"], ["Coverage and CNN self-attention", "Statistics & export",
                                 "Attention vs importance"]),
    "/gpt": ([], ["Attention", "Raw vs projected", "Attention vs importance"]),
}  # fmt: skip


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS


def rerun_settled(page, action) -> None:
    """Do ``action`` (a click), then wait for the app's rerun it starts to end."""
    action()
    page.wait_for_timeout(400)
    settle(page, charts=0)
    no_exception(page)


def test_a_whole_session_requests_nothing_but_the_local_server(server, browser):
    url, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    context.on("page", lambda p: p.on("websocket", lambda ws: seen.append(ws.url)))
    page = context.new_page()
    page.goto(f"{url}/")
    for path, (widgets, tabs) in TOUR.items():
        if path != "/":
            page.locator(f'[data-testid="stSidebarNav"] a[href$="{path}"]').click()
            page.wait_for_url(f"**{path}*")
        # Not settle(page): a tab label the last page shares (the `view` URL parameter) opens here,
        # and it may hold no chart.
        if tabs:
            page.get_by_role("tab", name=tabs[0], exact=True).wait_for(timeout=90_000)
        settle(page, charts=0)
        no_exception(page)
        for label in widgets:
            rerun_settled(page, page.get_by_text(label, exact=True).first.click)
        for label in tabs:
            tab = page.get_by_role("tab", name=label, exact=True)
            rerun_settled(page, tab.click)
            assert tab.get_attribute("aria-selected") == "true", label
    context.close()
    outside = sorted({u for u in seen if not is_local(u)})
    sockets = [u for u in seen if urlsplit(u).scheme in ("ws", "wss")]
    print(f"browser session: {len(seen)} requests, {len(sockets)} websockets, {len(outside)} outside")
    assert sockets and any(u.startswith(url) for u in seen)  # the recording did record the session
    assert not outside, f"{len(outside)} of {len(seen)} requests left the machine: {outside}"


def test_the_guard_refuses_and_logs_an_outbound_connection(outbound_guard, tmp_path):
    """The server-side check below cannot pass vacuously: in the server's environment, a connection
    out is refused and logged, while the venv's packages still import."""
    env, _ = outbound_guard
    log = tmp_path / "probe.log"
    probe = (
        "import socket, sitecustomize, streamlit\n"
        "print(sitecustomize.__file__)\n"
        "try:\n"
        "    socket.create_connection(('10.255.255.1', 80), timeout=1)\n"
        "except OSError as err:\n"
        "    print('refused', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**env, GUARD_ENV: str(log)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    guard_file, refused = done.stdout.splitlines()
    assert Path(guard_file).parent == Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert refused.startswith("refused") and "outbound guard" in refused
    assert "create_connection ('10.255.255.1', 80)" in log.read_text()


def test_the_guard_hands_over_to_the_interpreters_own_sitecustomize(outbound_guard, tmp_path):
    env, _ = outbound_guard
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nOWN = os.environ['OUTBOUND_GUARD_LOG']\n")
    log = tmp_path / "probe.log"
    path = os.pathsep.join([env["PYTHONPATH"], str(own)])
    done = subprocess.run(
        [sys.executable, "-c", "import socket, sitecustomize; print(sitecustomize.OWN, socket.getaddrinfo)"],
        env={**env, "PYTHONPATH": path, GUARD_ENV: str(log)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(log)) and "guard.<locals>.getaddrinfo" in done.stdout


def test_server_makes_no_outbound_connection(server, page):
    url, proc = server
    page.goto(f"{url}/bert")
    settle(page)
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    remote = {c.raddr.ip for p in procs for c in p.net_connections(kind="inet") if c.raddr}
    outside = [ip for ip in remote if not ipaddress.ip_address(ip).is_loopback]
    assert not outside, outside


def test_server_tried_no_outbound_connection_all_run(server, outbound_guard):
    # Runs last of the browser tests (this file sorts after test_browser_pages.py, and this test is its
    # last): every browser test has been served by now.
    url, proc = server
    _, log = outbound_guard
    loaded = log.with_name(log.name + ".loaded").read_text().split()
    assert str(proc.pid) in loaded, "the guard did not load in the server; its log would prove nothing"
    attempts = log.read_text().splitlines()
    print(f"server: {len(attempts)} outbound attempts (guard loaded in pids {loaded})")
    assert not attempts, "\n".join(attempts)
