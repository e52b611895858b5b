"""Real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

As a new user would: open each page, change its main controls, upload an image; check that Plotly
charts really render (with the expected trace types), that no Streamlit exception appears, and
that the output changes as it should; expected outputs are computed here by the same models.
Screenshots of each page go to docs/. Also: user text is never rendered as HTML, 8 concurrent
sessions each see their own result, a whole session requests nothing but the local server, and the
server never tries to reach past the loopback (every socket call it makes is guarded, all run).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil
import pytest
from PIL import Image

from models.attention import SCORINGS
from models.checkpoints import checkpoint_name
from runners import gpt
from runners.bert import encode, folders
from runners.captioner import run as run_captioner
from tasks import TASKS, prepare
from tasks.common import Vocab
from tasks.images import load_upload, model_input
from tasks.scenes import generate
from views.serving import cached, card, load_model, loaded_model

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium not installed (apt-get install -y chromium); CI installs it",
    ),
    pytest.mark.slow,  # a server and a browser: about 100 s
]


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
def outbound_guard(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """The environment the server runs in (the guard first on PYTHONPATH), and the guard's log."""
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
    return env, log


@pytest.fixture(scope="session")
def server(outbound_guard):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env, _ = outbound_guard
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


def seq2seq_shown(text: str, scoring: str = SCORINGS[0]) -> str:
    """What the Seq2seq page prints for typed ``text``, computed here as the page computes it: its
    default task (the first) and decoding (greedy), the same checkpoint, tokens and cached run."""
    task = next(iter(TASKS.values()))
    name = checkpoint_name("seq2seq", task.name, scoring)
    tokens = prepare(task, text, Vocab(tuple(card(name)["src_vocab"]))).tokens
    return cached("seq2seq", "runs")(name, tokens, 1, None)[0].text or "(empty output)"


def bert_token_count(text_a: str) -> int:
    """The BERT page's "Tokens" metric for a single sentence, with its default (first) checkpoint."""
    return len(encode(loaded_model("bert", next(iter(folders()))), text_a, None).tokens)


SHOTS = ("seq2seq", "transformer", "bert", "captioning", "gpt")


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
    first, second = seq2seq_shown("saturday, 21 november 2026"), seq2seq_shown("the 4th of july, 1976")
    assert first != second  # else the wait below would not see the page change
    page.goto(f"{url}/?input=text&text=" + "saturday, 21 november 2026")
    settle(page)
    no_exception(page)
    assert output(page) == first
    assert any("heatmap" in types for types in trace_types(page))
    shot(page, shot_dir, "seq2seq")
    box = page.get_by_label("Source text (at most 80 characters)")
    box.fill("the 4th of july, 1976")
    box.press("Enter")
    page.wait_for_function(
        "want => document.querySelector('[data-testid=\"stCode\"]').innerText.trim() === want", arg=second
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
    page.wait_for_function(  # the metric may be briefly absent while the page reruns
        f"[...document.querySelectorAll('[data-testid=\"stMetricValue\"]')][2]?.innerText ?? {before!r}"
        f" !== {before!r}"
    )
    settle(page, charts=2)
    no_exception(page)
    assert any("heatmap" in types for types in trace_types(page))
    shot(page, shot_dir, "transformer")


def test_bert_page(server, page, shot_dir):
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    text = "The bank raised interest rates."
    page.goto(f"{url}/bert?" + urlencode({"a": text, "b": ""}))
    settle(page)
    no_exception(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == str(bert_token_count(text))
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


def test_drawing_on_the_canvas_is_captioned_by_the_model(server, page):
    """Draw with the mouse on the captioning page's canvas: when the pen lifts, the caption shown is
    the model's caption of exactly the pixels drawn (read back from the canvas); Undo empties it."""
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/captioning?source=draw")
    canvas = page.locator("canvas[aria-label='Drawing canvas']")
    canvas.wait_for(timeout=90_000)
    page.get_by_label("Pen colour red").click()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    for x, y in [(120, 60), (120, 120), (60, 120), (60, 60)]:  # a square outline, stroke by stroke
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()
    settle(page)
    no_exception(page)
    drawn = canvas.evaluate("c => c.toDataURL('image/png')")
    picture = load_upload(base64.b64decode(drawn.split(",", 1)[1]))
    model, _, _, v = load_model("captioner-scenes")
    _, x = model_input(picture)
    assert output(page) == run_captioner(model, v, x)[0].text
    page.get_by_role("button", name="Undo").click()
    page.wait_for_selector("text=Draw something on the canvas.", timeout=60_000)
    no_exception(page)


# Every drawn n × n heatmap's weights, decoded in the page from Plotly's base64 float32 (see viz/).
SQUARE_MAPS = """n => [...document.querySelectorAll('.js-plotly-plot')].flatMap(p => (p.data || [])
    .filter(t => t.type === 'heatmap' && t.z && t.z.dtype === 'f4')
    .filter(t => t.z.shape.replace(/ /g, '') === `${n},${n}`)
    .map(t => {
        const flat = new Float32Array(Uint8Array.from(atob(t.z.bdata), c => c.charCodeAt(0)).buffer);
        return Array.from({length: n}, (_, i) => Array.from(flat.slice(i * n, (i + 1) * n)));
    }))"""


def test_gpt_page_types_a_prompt_and_draws_the_causal_map(server, page, shot_dir):
    """Type a prompt as a user does; the zoomed map is the new prompt's, with exactly zero weight on
    every future token (the causal mask), and its rows sum to 1."""
    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/gpt?gpt_view=Attention")
    settle(page, charts=2)
    no_exception(page)
    text = "for key, value in items.items():\n    print(key, value)\n"
    model, _, tokenizer = gpt.load()
    n = len(gpt.prepare(tokenizer, text, model.cfg.max_len).ids)
    box = page.get_by_label("Prompt", exact=True)
    box.fill(text)
    box.press("Control+Enter")
    page.wait_for_function(f"({SQUARE_MAPS})({n}).length > 0", timeout=90_000)
    settle(page, charts=2)
    no_exception(page)
    (weights,) = page.evaluate(f"({SQUARE_MAPS})({n})")
    for i, row in enumerate(weights):
        assert all(w == 0 for w in row[i + 1 :]), i  # the future: exactly zero
        assert abs(sum(row) - 1) < 1e-4, i
    shot(page, shot_dir, "gpt")


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


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}  # content the page made itself
# One visitor's session: each page through the sidebar, then a widget or two and several tabs.
TOUR = {
    "/": (["beam"], ["Step inspector", "Teacher forcing", "Bottleneck study", "Model card",
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


def test_every_page_was_photographed_this_run(shot_dir):
    # Runs after the page tests: they wrote into this run's folder (a fresh one unless
    # --update-screenshots), so a page test that skipped its screenshot fails here.
    for name in SHOTS:
        with Image.open(shot_dir / f"{name}.png") as picture:
            assert picture.size == (1400, 1900), name
            darkest, lightest = picture.convert("L").getextrema()
            assert lightest - darkest > 100, f"{name}.png is blank"


def test_server_tried_no_outbound_connection_all_run(server, outbound_guard):
    # Runs last in this file: every browser test above has been served by now.
    url, proc = server
    _, log = outbound_guard
    loaded = log.with_name(log.name + ".loaded").read_text().split()
    assert str(proc.pid) in loaded, "the guard did not load in the server; its log would prove nothing"
    attempts = log.read_text().splitlines()
    print(f"server: {len(attempts)} outbound attempts (guard loaded in pids {loaded})")
    assert not attempts, "\n".join(attempts)
