"""The WebSocket protocol (RFC 6455), free of I/O: both ends astcti speaks.

- Server side, the `astctiws` listener (`astcti/api/ws.py`). Why not aiohttp's
  WebSocketResponse: it keeps the whole HTTP machinery of the upgrade request alive for the
  connection's lifetime (about 15 KiB per client before astcti adds anything), and a contact
  centre keeps a thousand clients connected all day. It accepts what browsers and WebSocket
  libraries send (extensions offered are declined: no permessage-deflate, whose per-connection
  zlib state alone is larger than a whole connection here).
- Client side, the ARI events websocket (`astcti/pbx/ari.py`): every ARI event and REST
  response of a call crosses it, and a frame parsed here and handed straight to the tracker
  costs a fraction of a general-purpose client's queue, message objects and task wake-ups.

This module only turns bytes into events and events into bytes; the callers own the sockets.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from typing import Union

from astcti.wire import ws_frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 16 * 1024  # request line + headers of the upgrade request

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# close codes (RFC 6455 section 7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED, INVALID_DATA, POLICY_VIOLATION, TOO_BIG = (
    1000, 1001, 1002, 1003, 1007, 1008, 1009)


class HandshakeError(Exception):
    """The upgrade request is refused with this HTTP status and one line of text."""

    def __init__(self, status: int, reason: str, text: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.text = text
        self.headers = headers

    def response(self) -> bytes:
        return http_response(self.status, self.reason, self.text, self.headers)


class ProtocolError(Exception):
    """The client broke the protocol: close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Handshake:
    path: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    key: str

    def accept(self) -> bytes:
        """The 101 response completing this handshake."""
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                accept_key(self.key).encode() + b"\r\n\r\n")


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def client_request(host: str, target: str, key: str, headers: dict[str, str]) -> bytes:
    """The upgrade request a client sends (`key`: 16 random bytes, base64)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def check_response(head: bytes, key: str) -> None:
    """Raise HandshakeError (status, reason) unless `head` is the server's 101 for `key`."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HandshakeError(502, "Bad Gateway", "not an HTTP response")
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    if status != 101:
        raise HandshakeError(status, reason, f"{status} {reason}".strip())
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError(502, "Bad Gateway", "wrong Sec-WebSocket-Accept")


def http_response(status: int, reason: str, text: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 response with a plain-text body, closing the connection."""
    body = (text + "\n").encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


def head_end(buffer: bytes | bytearray) -> int:
    """Length of the complete request head in `buffer` (0: not complete yet)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise HandshakeError(431, "Request Header Fields Too Large",
                                 f"request head over {MAX_HEAD_BYTES} bytes")
        return 0
    if end + 4 > MAX_HEAD_BYTES:
        raise HandshakeError(431, "Request Header Fields Too Large",
                             f"request head over {MAX_HEAD_BYTES} bytes")
    return end + 4


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",")}


def parse_handshake(head: bytes) -> Handshake:
    """Check an upgrade request head (through its blank line) and return what it asks for."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes anything)
        raise HandshakeError(400, "Bad Request", "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HandshakeError(400, "Bad Request", "malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HandshakeError(505, "HTTP Version Not Supported", "WebSocket needs HTTP/1.1")
    if method != "GET":
        raise HandshakeError(405, "Method Not Allowed", "only GET upgrades to a WebSocket",
                             (("Allow", "GET"),))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise HandshakeError(400, "Bad Request", "malformed header line")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "websocket" not in _tokens(headers.get("upgrade", "")) or \
            "upgrade" not in _tokens(headers.get("connection", "")):
        raise HandshakeError(426, "Upgrade Required",
                             "this port speaks WebSocket (astctiws): connect with a WebSocket"
                             " client", (("Upgrade", "websocket"), ("Connection", "Upgrade")))
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "Upgrade Required", "WebSocket version 13 only",
                             (("Sec-WebSocket-Version", "13"),))
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except ValueError:
        raise HandshakeError(400, "Bad Request", "invalid Sec-WebSocket-Key") from None
    path = target.split("?", 1)[0]
    return Handshake(path, headers, key)


# -- frames -----------------------------------------------------------------------------------
frame = ws_frame  # a final, unmasked frame (server to client)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:123])


def masked_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """A final frame from a client: masked with the 4-byte `key` (fresh for every frame)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + key + unmask(payload, key)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask key, at C speed through big integers."""
    n = len(payload)
    if n == 0:
        return payload
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


# (slots, not frozen: a frozen dataclass pays object.__setattr__ per field on every frame)
@dataclass(slots=True)
class Text:
    data: str


@dataclass(slots=True)
class Binary:
    data: bytes


@dataclass(slots=True)
class Ping:
    data: bytes


@dataclass(slots=True)
class Pong:
    data: bytes


@dataclass(slots=True)
class Close:
    code: int  # 1005: the client sent no code
    reason: str


Event = Union[Text, Binary, Ping, Pong, Close]


def _valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) \
        or 3000 <= code <= 4999


class FrameParser:
    """Frames in, events out; raises ProtocolError on anything RFC 6455 forbids. A server
    parses its clients' frames (`masked`, the default); a client its server's (unmasked), and
    may ask for text messages as raw UTF-8 bytes (`text_bytes`: orjson parses them as they are)."""

    __slots__ = ("max_message", "masked", "text_bytes", "_buffer", "_parts", "_size",
                 "_opcode")

    def __init__(self, max_message: int, *, masked: bool = True,
                 text_bytes: bool = False) -> None:
        self.max_message = max_message
        self.masked = masked
        self.text_bytes = text_bytes
        self._buffer = b""
        self._parts: list[bytes] = []  # fragments of a message in progress
        self._size = 0
        self._opcode = 0  # opcode of the message in progress (0: none)

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        masked = self.masked
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 == 0x81 and b1 <= 126 and not masked and not self._opcode:
                # the common case on the client side: a whole unfragmented text frame under
                # 64 KiB (an ARI event: most are 0.5-3 KiB, so a 16-bit length)
                if b1 < 126:
                    start = pos + 2
                    at = start + b1
                else:
                    if end - pos < 4:
                        break
                    start = pos + 4
                    at = start + ((buf[pos + 2] << 8) | buf[pos + 3])
                    if at - start > self.max_message:
                        raise ProtocolError(TOO_BIG, f"message over {self.max_message} bytes")
                if at > end:
                    break
                message = buf[start:at]
                pos = at
                if self.text_bytes:
                    events.append(Text(message))  # type: ignore[arg-type]
                    continue
                try:
                    events.append(Text(message.decode("utf-8")))
                except UnicodeDecodeError:
                    raise ProtocolError(INVALID_DATA, "text frame is not UTF-8") from None
                continue
            fin, rsv, opcode = b0 & 0x80, b0 & 0x70, b0 & 0x0F
            if rsv:
                raise ProtocolError(PROTOCOL_ERROR, "reserved bits set (no extension agreed)")
            if bool(b1 & 0x80) != masked:
                raise ProtocolError(PROTOCOL_ERROR, "client frames must be masked" if masked
                                    else "server frames must not be masked")
            length = b1 & 0x7F
            at = pos + 2
            if length == 126:
                if end - at < 2:
                    break
                length = (buf[at] << 8) | buf[at + 1]
                at += 2
            elif length == 127:
                if end - at < 8:
                    break
                length = struct.unpack_from("!Q", buf, at)[0]
                at += 8
            control = opcode >= 0x8
            if control:
                if length > 125 or not fin:
                    raise ProtocolError(PROTOCOL_ERROR, "invalid control frame")
            elif self._size + length > self.max_message:
                raise ProtocolError(TOO_BIG, f"message over {self.max_message} bytes")
            keylen = 4 if masked else 0
            if end - at < keylen + length:
                break
            if keylen:
                payload = unmask(buf[at + 4:at + 4 + length], buf[at:at + 4])
            else:
                payload = buf[at:at + length]
            pos = at + keylen + length
            if control:
                events.append(self._control(opcode, payload))
                continue
            if opcode == OP_CONT:
                if not self._opcode:
                    raise ProtocolError(PROTOCOL_ERROR, "continuation without a message")
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._opcode:
                    raise ProtocolError(PROTOCOL_ERROR, "new message inside a fragmented one")
                self._opcode = opcode
            else:
                raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            self._parts.append(payload)
            self._size += length
            if fin:
                message = b"".join(self._parts) if len(self._parts) > 1 else self._parts[0]
                kind, self._opcode, self._parts, self._size = self._opcode, 0, [], 0
                if kind == OP_TEXT:
                    if self.text_bytes:  # validated by whoever parses it (orjson does)
                        events.append(Text(message))  # type: ignore[arg-type]
                        continue
                    try:
                        events.append(Text(message.decode("utf-8")))
                    except UnicodeDecodeError:
                        raise ProtocolError(INVALID_DATA, "text frame is not UTF-8") from None
                else:
                    events.append(Binary(message))
        self._buffer = buf[pos:] if pos < end else b""
        if len(self._buffer) > self.max_message + 14:
            raise ProtocolError(TOO_BIG, f"message over {self.max_message} bytes")
        return events

    @staticmethod
    def _control(opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode != OP_CLOSE:
            raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not payload:
            return Close(1005, "")
        if len(payload) == 1:
            raise ProtocolError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = struct.unpack_from("!H", payload)[0]
        if not _valid_close_code(code):
            raise ProtocolError(PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_DATA, "close reason is not UTF-8") from None
        return Close(code, reason)
