"""Tokens as text a learner can read: byte-level BPE pieces, for any GPT-2-style vocabulary (SmolLM2's,
Qwen's; the GPT's stdlib BPE has the same alphabet), where each byte is one printable character in a
token's string; and SentencePiece-style pieces (Llama 2, Mistral, Gemma), where "▁" is a space and
"<0x0A>" a byte of its own."""

from __future__ import annotations

import functools
import re

BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")

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


def spelt(piece: str) -> str:
    """A SentencePiece-style piece as text: "▁" a space, a byte-fallback piece "<0xNN>" its byte (a
    character when it is one alone, else \\xNN); spaces, newlines and tabs as ␣ ↵ ⇥."""
    byte = BYTE_PIECE.fullmatch(piece)
    if byte:
        value = int(byte.group(1), 16)
        text = chr(value) if value < 0x80 else None
        if text is None:
            return f"\\x{value:02x}"
    else:
        text = piece.replace("▁", " ")
    return "".join(VISIBLE.get(c, c if c.isprintable() else repr(c)[1:-1]) for c in text)
