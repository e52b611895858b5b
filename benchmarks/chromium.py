"""Debian's Chromium against a `streamlit run` server: what the browser benchmarks share.

`start_server` launches a script on a free loopback port and waits until it is healthy;
`LOADED_JS` (for `page.evaluate(LOADED_JS, max_ms)`) waits until the script is idle and the first
chart (a data grid, or an attention component) is painted, and returns the page's performance.now()
then. Used by `bench_browser.py` (load and click timings) and `bench_soak.py` (many sessions for minutes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM, BROWSER_ARGS = "/usr/bin/chromium", ["--no-sandbox", "--disable-dev-shm-usage"]

# The first chart painted — or, on a page whose first view is a table (the GPT's next tokens), the
# first data grid drawn; or an attention component that has drawn (its root's data-drawn stamp).
PAINTED = ".js-plotly-plot .main-svg, [data-testid=stDataFrame] canvas"
DRAWN = """[...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
    .some(h => h.shadowRoot?.querySelector('.ae[data-drawn]'))"""
LOADED_JS = """async (maxMs) => {
  const raf2 = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const idle = () => document.querySelector('[data-testid=stApp]')
    ?.getAttribute('data-test-script-state') === 'notRunning';
  for (;;) {
    if (idle() && (document.querySelector(PAINTED) || DRAWN)) break;
    const raised = document.querySelector('[data-testid=stException]');
    if (idle() && raised) throw new Error('the page raised: ' + raised.innerText.slice(0, 400));
    if (performance.now() > maxMs) throw new Error('no chart painted in time');
    await new Promise(r => requestAnimationFrame(r));
  }
  await raf2();
  return performance.now();
}""".replace("PAINTED", repr(PAINTED)).replace("DRAWN", DRAWN)


def start_server(script: Path, log: Path, procs: list[subprocess.Popen]) -> tuple[str, float]:
    """Launch ``streamlit run script`` on a free loopback port (added to ``procs``, for the caller
    to stop); poll /_stcore/health until ok. Returns the URL and the launch time."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]
    launched = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=script.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - launched < 180:
        if proc.poll() is not None:
            raise RuntimeError(f"{script.name} exited: {log.read_text()[-600:]}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return url, launched
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{script.name} is not healthy after 180 s: {log.read_text()[-600:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
