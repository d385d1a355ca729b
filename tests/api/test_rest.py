"""The REST listener: astCTI-compatible form, resource API, events, errors (no PBX needed)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from astcti.api.protocol import MAX_REQUEST_BYTES, REQUESTS
from astcti.store.store import ListenerRow
from tests.api.conftest import LocalDaemon, free_port


async def _login(http: aiohttp.ClientSession, d: LocalDaemon) -> str:
    async with http.post(f"{d.rest_url}/api/v1/login",
                         json={"username": d.user, "password": d.password}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body["token"]


async def test_compat_form_answers_the_protocol_json(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{d.rest_url}/snapshot?extension=101") as resp:
            body = await resp.json()
        # old clients read `result` only: the compatible form always answers 200
        assert resp.status == 200
        assert body["result"] == "error" and body["error"].startswith("not logged in")
        async with http.get(f"{d.rest_url}/login",
                            params={"username": d.user, "password": d.password,
                                    "id": "7"}) as resp:
            login = await resp.json()
        assert login["result"] == "success" and login["id"] == "7" and login["token"]
        headers = {"Authorization": f"Bearer {login['token']}"}
        async with http.get(f"{d.rest_url}/SNAPSHOT?extension=101&payload=json&callto=true",
                            headers=headers) as resp:
            body = await resp.json()
        # unknown parameters are ignored; the extension has no Asterisk here: that is the error
        assert resp.status == 200 and body["result"] == "error"
        assert "payload" not in body["error"] and "101" in body["error"]
        async with http.post(f"{d.rest_url}/nosuchrequest", headers=headers) as resp:
            body = await resp.json()
        assert body["error"].startswith("unknown request 'nosuchrequest'")


async def test_basic_auth_and_form_body(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    auth = {"Authorization": aiohttp.encode_basic_auth(d.user, d.password)}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{d.rest_url}/stopmonitor", data={"extension": "101"},
                             headers=auth) as resp:
            body = await resp.json()
        assert body["error"] == "extension 101 is not monitored by this connection"
        async with http.post(f"{d.rest_url}/api/v1/requests/stopmonitor",
                             json={"extension": "101"},
                             headers={"Authorization": aiohttp.encode_basic_auth(d.user, "wrong")}) as resp:
            body = await resp.json()
        assert resp.status == 401 and body["error"].startswith("login failed")


async def test_resource_api_status_codes(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    api = f"{d.rest_url}/api/v1"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/extensions/101/calls") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"].startswith("not logged in")
        async with http.get(f"{api}/extensions/101/calls",
                            headers={"Authorization": "Bearer not-a-token"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid or expired token: log in again"
        token = await _login(http, d)
        h = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{api}/extensions/999/calls", headers=h) as resp:
            body = await resp.json()
            assert resp.status == 404 and "unknown extension 999" in body["error"], body
        async with http.get(f"{api}/extensions/101/calls", headers=h) as resp:
            assert resp.status == 409  # configured, but no Asterisk link serves it
        async with http.delete(f"{api}/extensions/101/monitor", headers=h) as resp:
            assert resp.status == 409
        async with http.post(f"{api}/requests/resume", headers=h,
                             json={"extension": "101", "lastseq": "x"}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["error"] == "bad field lastseq: expected an integer"
        async with http.post(f"{api}/requests/resume", headers=h,
                             json={"extension": "101"}) as resp:
            assert (await resp.json())["error"] == "missing field lastseq"
        async with http.post(f"{api}/requests/snapshot", headers=h, data=b"{not json",
                             ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"].startswith("malformed JSON")
        for blank in (b"\x0b", b" \r\n"):  # not a JSON document: refused, not read as {}
            async with http.post(f"{api}/requests/directory",
                                 headers={**h, "Content-Type": "application/json"},
                                 data=blank) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"].startswith("malformed JSON")
        async with http.post(f"{api}/requests/directory",
                             headers={**h, "Content-Type": "application/json"},
                             data=b"") as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"{api}/requests/snapshot", headers=h, json=[1, 2]) as resp:
            assert (await resp.json())["error"] == "a request must be a JSON object"
        big = json.dumps({"extension": "101", "pad": "x" * (MAX_REQUEST_BYTES + 10)})
        async with http.post(f"{api}/requests/snapshot",
                             headers={**h, "Content-Type": "application/json"},
                             data=big) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"].startswith("request too large")
        async with http.get(f"{api}/nowhere", headers=h) as resp:
            assert resp.status == 404 and (await resp.json())["result"] == "error"
        async with http.post(f"{api}/requests/frobnicate", headers=h) as resp:
            assert resp.status == 404


async def test_openapi_and_request_list_name_every_request(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{d.rest_url}/api/v1/openapi.json") as resp:
            doc = await resp.json()
        async with http.get(f"{d.rest_url}/api/v1/requests") as resp:
            listed = {r["name"] for r in (await resp.json())["requests"]}
    assert listed == set(REQUESTS)
    for name, spec in REQUESTS.items():
        assert f"/api/v1/requests/{name}" in doc["paths"]
        if spec.resource:
            assert spec.resource[0].lower() in doc["paths"][spec.resource[1]]


async def test_long_poll_returns_when_nothing_happens(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{d.rest_url}/api/v1/events?wait=0") as resp:
            assert resp.status == 401
        token = await _login(http, d)
        async with http.get(f"{d.rest_url}/api/v1/events?wait=0&after=0",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["events"] == [] and body["last"] == 0
        async with http.get(f"{d.rest_url}/api/v1/events?wait=99&token={token}") as resp:
            assert resp.status == 400


async def test_auth_none_listener_serves_legacy_clients(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    port = free_port()
    await d.daemon.listeners.open(ListenerRow(port, "127.0.0.1", "127.0.0.1/32", "astctirest",
                                              "none"))
    d.daemon.seating.map("127.0.0.1", "101")  # the client's seat: its address is its identity
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/stopmonitor?extension=101"
                            "&payload=json&callto=true") as resp:
            body = await resp.json()
    assert body["error"] == "extension 101 is not monitored by this connection"


async def test_toolbar_is_served(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{d.rest_url}/toolbar/") as resp:
            assert resp.status == 200 and "astcti" in (await resp.text()).lower()
        async with http.get(f"{d.rest_url}/toolbar/astcti.js") as resp:
            assert resp.status == 200 and "AstCti" in await resp.text()


async def test_logout_revokes_the_token(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with aiohttp.ClientSession() as http:
        token = await _login(http, d)
        h = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{d.rest_url}/api/v1/requests/logout", headers=h) as resp:
            assert (await resp.json())["result"] == "success"
        async with http.delete(f"{d.rest_url}/api/v1/extensions/101/monitor", headers=h) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid or expired token: log in again"


async def test_slow_partial_http_request_is_cut(local_daemon: LocalDaemon,
                                                monkeypatch) -> None:
    from astcti.api import listeners

    monkeypatch.setattr(listeners, "HTTP_IDLE_TIMEOUT", 0.5)
    port = free_port()
    await local_daemon.daemon.listeners.open(ListenerRow(port, "127.0.0.1", "*", "astctirest"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/v1/requests HTTP/1.1\r\nHost: x")  # and never the rest
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    finally:
        writer.close()


def test_dropped_events_are_counted() -> None:
    from astcti.api.dispatch import Session
    from astcti.api.rest import EVENT_BUFFER, RestSession

    rs = RestSession("k", Session("rest", "127.0.0.1", lambda text: None))
    for i in range(EVENT_BUFFER + 5):
        rs.push(f'{{"n":{i}}}')
    assert rs.lost_after(0) == 5 and rs.lost_after(5) == 0 and rs.lost_after(3) == 2
    assert rs.after(EVENT_BUFFER + 4) == [(EVENT_BUFFER + 5, f'{{"n":{EVENT_BUFFER + 4}}}')]
    empty = RestSession("e", Session("rest", "127.0.0.1", lambda text: None))
    assert empty.lost_after(0) == 0


async def test_event_stream_outlives_the_idle_timeout(local_daemon: LocalDaemon,
                                                      monkeypatch) -> None:
    from astcti.api import listeners, rest

    monkeypatch.setattr(listeners, "HTTP_IDLE_TIMEOUT", 0.3)
    monkeypatch.setattr(rest, "KEEPALIVE", 0.2)
    port = free_port()
    await local_daemon.daemon.listeners.open(ListenerRow(port, "127.0.0.1", "*", "astctirest"))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/api/v1/login",
                             json={"username": local_daemon.user,
                                   "password": local_daemon.password}) as resp:
            token = (await resp.json())["token"]
        async with http.get(f"http://127.0.0.1:{port}/api/v1/events",
                            headers={"Accept": "text/event-stream",
                                     "Authorization": f"Bearer {token}"}) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            keepalives = 0
            while keepalives < 8:  # well past the idle timeout, still streaming
                line = await asyncio.wait_for(resp.content.readline(), 5)
                assert line, "the stream was closed"
                keepalives += line.startswith(b": keepalive")
