"""The browser tests' session-wide fixtures: one `streamlit run app.py` for the whole run, served
behind an outbound guard, Debian's Chromium for pytest-playwright, and the screenshot folder.

A plugin (tests/conftest.py names it in ``pytest_plugins``), not a conftest of the browser files:
session-scoped fixtures defined here are one fixture for every file, so the server starts once per
run, whichever browser test files run. Only standard-library imports: every test run loads this.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"


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


# The server's Python loads this first (PYTHONPATH): every connection, datagram or name lookup
# that leaves the loopback is written to $OUTBOUND_GUARD_LOG and refused, for the whole run — not
# only while a test happens to look. It then hands over to the interpreter's own sitecustomize.
GUARD_ENV = "OUTBOUND_GUARD_LOG"
GUARD = textwrap.dedent(
    """
    import errno, ipaddress, os, socket, sys

    LOG = os.environ.get("OUTBOUND_GUARD_LOG")
    LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


    def is_local(host):
        if host is None:  # getaddrinfo(None, port): an address to bind, not a destination
            return True
        host = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").partition("%")[0]
        if host == "" or host.lower() in LOCAL_NAMES:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False  # any other name needs a DNS server
        ip = getattr(ip, "ipv4_mapped", None) or ip
        return ip.is_loopback or ip.is_unspecified


    def remote(sock, address):
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        return inet and isinstance(address, tuple) and not is_local(address[0])


    def record(kind, address):
        with open(LOG, "a") as log:
            log.write(f"{kind} {address!r} pid={os.getpid()} argv={sys.argv}\\n")


    def guard():
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_sendto, real_create, real_getaddrinfo = (
            socket.socket.sendto, socket.create_connection, socket.getaddrinfo
        )

        def connect(self, address):
            if remote(self, address):
                record("connect", address)
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"outbound guard: {address!r}")
            return real_connect(self, address)

        def connect_ex(self, address):
            if remote(self, address):
                record("connect_ex", address)
                return errno.ECONNREFUSED
            return real_connect_ex(self, address)

        def sendto(self, data, *args):  # (data, address) or (data, flags, address)
            address = args[-1] if args else None
            if remote(self, address):
                record("sendto", address)
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"outbound guard: {address!r}")
            return real_sendto(self, data, *args)

        def create_connection(address, *args, **kwargs):
            if not is_local(address[0]):
                record("create_connection", address)
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"outbound guard: {address!r}")
            return real_create(address, *args, **kwargs)

        def getaddrinfo(host, *args, **kwargs):
            if not is_local(host):
                record("getaddrinfo", host)
                raise socket.gaierror(socket.EAI_NONAME, f"outbound guard: {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
        socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
        with open(LOG + ".loaded", "a") as loaded:
            loaded.write(f"{os.getpid()}\\n")


    def chain():
        # The interpreter's own sitecustomize (a distro's, a CI's), found past this folder.
        here, me, path = os.path.dirname(os.path.abspath(__file__)), sys.modules.pop(__name__), sys.path[:]
        sys.path[:] = [p for p in path if os.path.abspath(p or ".") != here]
        try:
            import sitecustomize  # noqa: F401
        except ModuleNotFoundError as err:
            if err.name != "sitecustomize":
                raise
        finally:
            sys.path[:] = path
            sys.modules.setdefault(__name__, me)  # import needs a module under this name


    if LOG:
        guard()
    chain()
    """
)


@pytest.fixture(scope="session")
def outbound_guard(tmp_path_factory, pytestconfig) -> tuple[dict[str, str], Path]:
    """The environment the server runs in (the guard first on PYTHONPATH), and the guard's log. Under
    ``--threads N`` the server's torch runs N threads too (OMP_NUM_THREADS, read when torch loads): a map
    the browser draws and the one a test recomputes must be the same computation, and a matmul rounds by
    its thread split."""
    folder = tmp_path_factory.mktemp("outbound_guard")
    (folder / "sitecustomize.py").write_text(GUARD)
    log = folder / "outbound.log"
    log.touch()
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        GUARD_ENV: str(log),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "HF_HUB_OFFLINE": "1",
    }
    threads = pytestconfig.getoption("--threads", default=None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(max(1, threads))
    return env, log


def start_server(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    """`streamlit run app.py` on a free loopback port in ``env``, once its health check answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
    return url, proc


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="session")
def server(outbound_guard):
    env, _ = outbound_guard
    url, proc = start_server(env)
    yield url, proc
    stop_server(proc)


@pytest.fixture(scope="session")
def lm_server(outbound_guard, tmp_path_factory):
    """A second server whose language-model page offers tiny checkpoints of a few architectures (written
    here by tests/lm_offered.py, a few seconds), tiny-llama the default (``ATTENTION_EXPLORER_LM``): the
    browser tests of user models load no SmolLM2. Yields (url, process, the checkpoints' folder)."""
    from tests import lm_offered

    folder = lm_offered.write_models(tmp_path_factory.mktemp("lm-server") / "models", lm_offered.SERVED)
    env, _ = outbound_guard
    env = {**env, "ATTENTION_EXPLORER_LM_DIR": str(folder), "HF_HUB_CACHE": str(folder.parent / "empty-hub"),
           "ATTENTION_EXPLORER_LM": str(folder / "tiny-llama")}  # fmt: skip
    url, proc = start_server(env)
    yield url, proc, folder
    stop_server(proc)


@pytest.fixture(scope="session")
def shot_dir(request, tmp_path_factory) -> Path:
    """Where this run's screenshots go: a fresh folder, or docs/ (tracked, shown in the README) only
    with `pytest --update-screenshots`."""
    if request.config.getoption("--update-screenshots"):
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("screenshots")
