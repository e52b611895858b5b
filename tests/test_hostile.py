"""Hostile text into every text input of every page: a message or correct handling, never a
traceback or hang. And every page runs with outbound connections refused."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from families import PAGES
from tests.helpers import open_app, text_blocks
from tests.test_images import FILES, REFUSED


def corpus() -> dict[str, str]:
    return {
        "empty": "",
        "whitespace": " \t\n  \r\n ",
        "huge": "saturday 21 november 2026 " * 4000,  # 100 000+ characters
        "control": "21\x00nov\x07\x1b[31m2026\x7f\u200b",
        "emoji": "🎉🍕 21 nov 2026 😀👍🏽",
        "korean": "2026년 11월 21일 토요일",
        "rtl": "‏السبت ٢١ نوفمبر ٢٠٢٦ שבת",
        "html": "<script>alert(1)</script><img src=x onerror=alert(2)> <b>b</b> **md** [a](javascript:x)",
        "punctuation": "?!.,;:-/()[]{}'\"…",
        "unknown": "qqq zzzz xyzzy plugh",
    }


BOXES = [  # every box a visitor types into, on every page (its declaration's ``text_inputs``)
    pytest.param(f, box, id=f"{f.name}-{box.key}-{'-'.join(box.setup.values())}".rstrip("-"))
    for f in PAGES.values()
    for box in f.text_inputs
]


@pytest.mark.parametrize("family, box", BOXES)
def test_every_hostile_text_in_every_input(family, box):
    """The box is reached through the URL (its ``setup``: a mode, a tab). A key may carry its input (a
    new clean prompt is a new box for its corrupted twin), so a box is found by a part of its key."""
    at = open_app(family.page, **box.setup)
    for name, text in corpus().items():
        widgets = getattr(at, box.kind)
        found = [w for w in widgets if w.key == box.key] or [w for w in widgets if box.key in (w.key or "")]
        assert found, f"no {box.kind} with key {box.key!r} on {family.page} with {dict(box.setup)}"
        found[0].set_value(text).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
        shown += [i.value for i in at.info] + [c.value for c in at.caption]
        for value in shown:  # user text reaches Markdown only escaped
            assert "<script>" not in value, (name, value)
        # Something useful is on screen: a message saying what to do, or what answers the box.
        message = at.error or at.info or at.warning
        if box.answer is None:
            assert message or text_blocks(at) or at.metric, name
        else:
            assert message or [c for c in at.get("plotly_chart") if box.answer in c.proto.id], name


UPLOADS = [  # every image upload of every page, with every file of the hostile corpus
    pytest.param(f, upload, name, id=f"{f.name}-{upload.key}-{name}")
    for f in PAGES.values()
    for upload in f.image_inputs
    for name in sorted(FILES)
]


@pytest.mark.parametrize("family, upload, name", UPLOADS)
def test_every_hostile_upload(family, upload, name):
    """Refused files get an error naming what is wrong; odd but valid ones are read, with no error."""
    at = open_app(family.page, **upload.setup)
    at.file_uploader(key=upload.key).set_value((name, FILES[name], "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    if name in REFUSED:
        assert at.error and REFUSED[name] in at.error[0].value, [e.value for e in at.error]
    else:
        assert not at.error and (text_blocks(at) or at.metric), [e.value for e in at.error]  # read: an output


@pytest.fixture
def no_network(monkeypatch):
    """Refuse (and record) every connection to a non-loopback address in this process."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            attempts.append(address)
            raise OSError(f"test: outbound connection to {address} refused")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_every_page_works_offline(no_network):
    at = open_app()
    for f in PAGES.values():
        at.switch_page(f.page).run()
        assert not at.exception, (f.name, [e.value for e in at.exception])
        assert text_blocks(at) or at.metric, f.name
    assert no_network == []
