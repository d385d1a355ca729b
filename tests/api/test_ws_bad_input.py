"""Issue 3 bad input over the WebSocket: each a `fail` (or a close with a reason), nothing breaks."""

from __future__ import annotations

import json

import aiohttp
import pytest

from astcti.client import CtiClient
from tests.lab import Lab

pytestmark = pytest.mark.lab


async def _raw(lab: Lab) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(lab.config.ws_url)
    return session, ws


async def _ask(ws: aiohttp.ClientWebSocketResponse, payload: str | bytes) -> dict:
    if isinstance(payload, bytes):
        await ws.send_bytes(payload)
    else:
        await ws.send_str(payload)
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    reply = json.loads(msg.data)
    assert reply["msgtype"] == "response" and reply["result"] == "error", reply
    return reply


async def test_requests_before_login_and_wrong_password(lab: Lab) -> None:
    session, ws = await _raw(lab)
    try:
        reply = await _ask(ws, json.dumps({"id": "1", "request": "startmonitor",
                                           "extension": "101"}))
        assert reply["id"] == "1" and reply["error"] == "not logged in: send a login request first"
        reply = await _ask(ws, json.dumps({"id": "2", "request": "login", "username":
                                           lab.config.astcti_user, "password": "wrong"}))
        assert reply["error"].startswith("login failed")
        assert "wrong" not in open(lab.config.astcti_log).read().split("failed login")[-1][:200]
    finally:
        await ws.close()
        await session.close()


@pytest.mark.parametrize("payload, words", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "a request must be a JSON object"),
    ('{"request": "snapshot", "extension": "101"}', "missing field id"),
    ('{"id": "7"}', "missing field request"),
    ('{"id": "7", "request": "fly"}', "unknown request 'fly'"),
    ('{"id": "7", "request": "startmonitor"}', "missing field extension"),
    ('{"id": "7", "request": "startmonitor", "extension": {"a": 1}}',
     "bad field extension: expected a string"),
    ('{"id": "7", "request": "startmonitor", "extension": "10 1"}', "bad field extension"),
    ('{"id": "7", "request": "resume", "extension": "101", "lastseq": "x"}',
     "bad field lastseq: expected an integer"),
    ('{"id": {"x": 1}, "request": "snapshot"}', "bad field id"),
    ('{"id": "' + "9" * 100 + '", "request": "snapshot"}', "bad field id"),
    (b'{"id": "1"}', "binary frames are not supported"),
])
async def test_bad_requests_fail_with_words(lab: Lab, payload: str | bytes, words: str) -> None:
    client = await CtiClient.websocket(lab.config.ws_url, lab.config.astcti_user,
                                       lab.config.astcti_password)
    await client.close()
    session, ws = await _raw(lab)
    try:
        await ws.send_str(json.dumps({"id": "L", "request": "login",
                                      "username": lab.config.astcti_user,
                                      "password": lab.config.astcti_password}))
        assert json.loads((await ws.receive(timeout=10)).data)["result"] == "success"
        reply = await _ask(ws, payload)
        assert words in reply["error"]
        # the connection still works
        await ws.send_str(json.dumps({"id": "ok", "request": "snapshot", "extension": "101"}))
        ok = json.loads((await ws.receive(timeout=10)).data)
        assert ok["id"] == "ok" and ok["result"] == "success"
    finally:
        await ws.close()
        await session.close()


async def test_oversized_frame_closes_with_reason_and_daemon_serves(lab: Lab, cti) -> None:
    session, ws = await _raw(lab)
    try:
        await ws.send_str(json.dumps({"id": "1", "request": "login", "username": "x" * 70000}))
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1009
    finally:
        await ws.close()
        await session.close()
    client: CtiClient = await cti()
    assert (await client.request("snapshot", extension="101"))["result"] == "success"
