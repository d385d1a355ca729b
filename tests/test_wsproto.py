"""The WebSocket protocol of the astctiws listener, without sockets (RFC 6455 examples)."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astcti import wsproto
from astcti.wsproto import (
    Binary, Close, FrameParser, HandshakeError, Ping, Pong, ProtocolError, Text,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def head(**overrides: str | None) -> bytes:
    headers = {"Host": "127.0.0.1:9003", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
    request = overrides.pop("request", None) or "GET / HTTP/1.1"
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return (request + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) +
            "\r\n").encode()


def masked(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x37\xfa\x21\x3d",
           rsv: int = 0) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    return header + mask + wsproto.unmask(payload, mask)


def test_handshake_accept_key_is_rfc_6455s() -> None:
    shake = wsproto.parse_handshake(head())
    assert shake.path == "/"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in shake.accept()
    assert shake.accept().startswith(b"HTTP/1.1 101 ")


def test_browser_style_headers_are_accepted_and_extensions_declined() -> None:
    shake = wsproto.parse_handshake(head(Connection="keep-alive, Upgrade", Upgrade="WebSocket",
                                         Sec_WebSocket_Extensions="permessage-deflate",
                                         Origin="http://desk", request="GET /ws?x=1 HTTP/1.1"))
    assert shake.path == "/ws"
    assert b"Extensions" not in shake.accept()


@pytest.mark.parametrize("overrides, status, words", [
    ({"request": "POST / HTTP/1.1"}, 405, "only GET"),
    ({"request": "GET / HTTP/1.0"}, 505, "HTTP/1.1"),
    ({"request": "garbage"}, 400, "malformed request line"),
    ({"Upgrade": None}, 426, "connect with a WebSocket client"),
    ({"Sec_WebSocket_Version": "8"}, 426, "version 13"),
    ({"Sec_WebSocket_Key": "short"}, 400, "Sec-WebSocket-Key"),
])
def test_bad_upgrades_get_an_http_error_naming_the_cause(overrides, status, words) -> None:
    with pytest.raises(HandshakeError) as err:
        wsproto.parse_handshake(head(**overrides))
    assert err.value.status == status and words in err.value.text
    assert err.value.response().startswith(f"HTTP/1.1 {status} ".encode())


def test_head_end_waits_for_the_blank_line_and_bounds_the_head() -> None:
    raw = head()
    assert wsproto.head_end(raw[:-2]) == 0
    assert wsproto.head_end(raw + b"\x81") == len(raw)
    with pytest.raises(HandshakeError) as err:
        wsproto.head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * wsproto.MAX_HEAD_BYTES)
    assert err.value.status == 431


def test_frames_split_anywhere_give_the_same_messages() -> None:
    stream = (masked(1, "hé".encode()) + masked(9, b"p") + masked(1, b"ab", fin=False) +
              masked(10, b"q") + masked(0, b"cd") + masked(2, bytes(300)) +
              masked(8, struct.pack("!H", 1000) + b"bye"))
    expected = [Text("hé"), Ping(b"p"), Pong(b"q"), Text("abcd"), Binary(bytes(300)),
                Close(1000, "bye")]
    for cut in range(len(stream)):
        parser = FrameParser(1024)
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == expected
    parser = FrameParser(1024)
    assert [e for byte in stream for e in parser.feed(bytes([byte]))] == expected


def test_a_client_reads_its_servers_frames_split_anywhere() -> None:
    """The ARI link's side: unmasked frames, text as raw bytes; small and 16-bit lengths (the
    usual ARI event) take a fast path that must agree with the general one."""
    stream = (wsproto.frame(wsproto.OP_TEXT, b"x" * 100) + wsproto.frame(wsproto.OP_TEXT,
                                                                       b"y" * 1500) +
              wsproto.frame(wsproto.OP_PING, b"p") + wsproto.frame(wsproto.OP_TEXT, b"z" * 70000))
    expected = [Text(b"x" * 100), Ping(b"p"), Text(b"z" * 70000)]  # type: ignore[arg-type]
    expected.insert(1, Text(b"y" * 1500))  # type: ignore[arg-type]
    for cut in (1, 2, 3, 4, 101, 102, 103, 104, 105, 1606, 1609, 1612):
        parser = FrameParser(1 << 20, masked=False, text_bytes=True)
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == expected
    with pytest.raises(ProtocolError) as err:
        FrameParser(1024, masked=False).feed(wsproto.frame(wsproto.OP_TEXT, bytes(2000))[:4])
    assert err.value.code == wsproto.TOO_BIG


def test_long_payload_lengths() -> None:
    for size in (125, 126, 65535, 65536):
        payload = os.urandom(size // 2).hex()[:size].encode()
        assert FrameParser(1 << 20).feed(masked(1, payload)) == [Text(payload.decode())]


@pytest.mark.parametrize("data, code", [
    (bytes((0x81, 0x02)) + b"hi", wsproto.PROTOCOL_ERROR),  # unmasked
    (masked(1, b"x", rsv=0x40), wsproto.PROTOCOL_ERROR),  # compression bit, not agreed
    (masked(3, b"x"), wsproto.PROTOCOL_ERROR),  # reserved opcode
    (masked(0, b"x"), wsproto.PROTOCOL_ERROR),  # continuation of nothing
    (masked(1, b"a", fin=False) + masked(1, b"b"), wsproto.PROTOCOL_ERROR),
    (masked(9, b"p", fin=False), wsproto.PROTOCOL_ERROR),  # fragmented ping
    (masked(9, bytes(126)), wsproto.PROTOCOL_ERROR),  # control frame too long
    (masked(8, b"\x03"), wsproto.PROTOCOL_ERROR),  # 1-byte close payload
    (masked(8, struct.pack("!H", 999)), wsproto.PROTOCOL_ERROR),  # invalid close code
    (masked(1, b"\xff\xfe"), wsproto.INVALID_DATA),  # not UTF-8
    (masked(1, bytes(2000)), wsproto.TOO_BIG),
    (masked(1, bytes(600), fin=False) + masked(0, bytes(600)), wsproto.TOO_BIG),
])
def test_protocol_violations_close_with_the_right_code(data: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as err:
        FrameParser(1024).feed(data)
    assert err.value.code == code


def test_too_big_is_refused_from_the_header_not_after_buffering_it() -> None:
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 40)
    with pytest.raises(ProtocolError) as err:
        FrameParser(1024).feed(header)
    assert err.value.code == wsproto.TOO_BIG


def test_server_frames() -> None:
    assert wsproto.frame(wsproto.OP_PONG, b"x") == b"\x8a\x01x"
    assert wsproto.close_frame(1008, "slow") == b"\x88\x06\x03\xf0slow"
    assert wsproto.frame(wsproto.OP_TEXT, bytes(200))[:4] == b"\x81\x7e\x00\xc8"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_but_protocol_error(data: bytes) -> None:
    try:
        events = FrameParser(256).feed(data)
    except ProtocolError:
        return
    assert all(isinstance(e, (Text, Binary, Ping, Pong, Close)) for e in events)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_handshakes_are_refused_with_an_http_status(data: bytes) -> None:
    try:
        wsproto.head_end(data)
        wsproto.parse_handshake(data + b"\r\n\r\n")
    except HandshakeError as exc:
        assert 400 <= exc.status < 600
    else:  # only a real upgrade request gets through
        assert base64.b64decode(wsproto.parse_handshake(data + b"\r\n\r\n").key)
