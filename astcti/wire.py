"""JSON on the wire, and events serialised once for every client.

The one module that imports the JSON library (orjson: parses ARI's stream and serialises CTI
events several times faster than the standard library; behind these few functions it could be
swapped). A :class:`Frame` is one CTI event serialised once; each transport takes the encoding
it writes (WebSocket frame, TCP line, text for REST) from it, built on first use and shared by
every client of that transport, so fan-out costs one write per client and nothing else.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError


def loads(data: str | bytes) -> Any:
    """Parse JSON text (raises ValueError on bad input, as json.loads does)."""
    return orjson.loads(data)


def dumps(obj: Any) -> str:
    """Compact JSON text (no spaces; non-ASCII characters as UTF-8, not \\u escapes)."""
    return orjson.dumps(obj).decode()


def dumpb(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return orjson.dumps(obj)


def ws_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A final, unmasked WebSocket frame (server to client, RFC 6455 section 5.2)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def ws_text_frame(payload: bytes) -> bytes:
    """A WebSocket text frame carrying UTF-8 `payload`."""
    return ws_frame(0x1, payload)


class Frame:
    """One serialised event and its per-transport encodings, each built once."""

    __slots__ = ("data", "_text", "_ws", "_line")

    def __init__(self, data: bytes) -> None:
        self.data = data  # the JSON object, UTF-8
        self._text: str | None = None
        self._ws: bytes | None = None
        self._line: bytes | None = None

    @classmethod
    def of(cls, obj: Any) -> Frame:
        # orjson's bytes keep the 4 KiB block it serialised into: a frame lives on in the
        # resume buffer (a thousand per extension), so keep an exact-size copy instead
        return cls(memoryview(orjson.dumps(obj)).tobytes())

    @property
    def text(self) -> str:
        """The JSON as str (REST sessions, the admin trace)."""
        if self._text is None:
            self._text = self.data.decode()
        return self._text

    @property
    def ws(self) -> bytes:
        """The complete WebSocket text frame."""
        if self._ws is None:
            self._ws = ws_text_frame(self.data)
        return self._ws

    @property
    def line(self) -> bytes:
        """The newline-terminated line of the raw TCP transport."""
        if self._line is None:
            self._line = self.data + b"\n"
        return self._line

    def __repr__(self) -> str:
        return f"Frame({self.text})"
