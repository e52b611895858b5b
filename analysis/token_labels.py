"""Byte-level BPE tokens as text a learner can read, for any GPT-2-style vocabulary (SmolLM2's; the
GPT's stdlib BPE has the same alphabet): each byte is one printable character in a token's string."""

from __future__ import annotations

import functools

VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


@functools.cache
def byte_of() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character → byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def readable(piece: str) -> str:
    """A byte-level piece as text: spaces, newlines and tabs as ␣ ↵ ⇥, other control characters
    escaped, and a piece of a multi-byte character as its bytes (\\xf0\\x9f)."""
    raw = bytes(byte_of()[c] for c in piece)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in raw)
    return "".join(VISIBLE.get(c, c if c.isprintable() else repr(c)[1:-1]) for c in text)
