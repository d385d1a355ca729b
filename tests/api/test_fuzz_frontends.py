"""Generated bad requests over raw TCP and REST: a well-formed answer each, the daemon serving.

The daemon is linked to the lab's Asterisk (tests/api/conftest.py `linked_daemon`): the
requests that pass validation and the user's rights reach call control, ACD and user data."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import aiohttp
import pytest

from tests.api.conftest import FUZZ_NUMBERS, LocalDaemon
from tests.fuzz import bad_requests, well_formed

pytestmark = pytest.mark.lab

COUNT = 10000  # per interface (issue 9)


async def test_tcp_fuzz(linked_daemon: LocalDaemon) -> None:
    d = linked_daemon
    reader, writer = await asyncio.open_connection("127.0.0.1", d.ports["astctiapi"],
                                                   limit=2**20)
    login = json.dumps({"id": "L", "request": "login", "username": d.user,
                        "password": d.password})
    writer.write(login.encode() + b"\n")
    assert json.loads(await reader.readline())["result"] == "success"
    fails = 0
    errors: set[str] = set()
    try:
        for raw in bad_requests(COUNT, seed=6, allow_login=False, numbers=FUZZ_NUMBERS):
            if not raw.strip():
                continue  # a blank line is no request: the server skips it without answer
            assert "\n" not in raw  # JSON text escapes newlines: one request, one line
            writer.write(raw.encode() + b"\n")
            await writer.drain()
            while True:  # skip events (a fuzzed startmonitor may succeed, calls follow)
                reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
                if reply.get("msgtype") == "response":
                    break
            assert well_formed(reply), (raw, reply)
            assert "internal error" not in reply["error"], (raw, reply)
            fails += reply["result"] == "error"
            errors.add(reply["error"])
            if reply["result"] == "success" and '"logout"' in raw:
                writer.write(login.encode() + b"\n")
                await reader.readline()
    finally:
        writer.close()
    assert fails > COUNT * 0.8
    assert_services_reached(errors)


def assert_services_reached(errors: set[str]) -> None:
    """Garbage got past validation and the rights check into the services, on real Asterisk."""
    assert any(e.startswith("invalid call id") for e in errors)  # call control
    assert any("does not exist on Asterisk" in e for e in errors)  # ACD asked Asterisk
    assert any(e.startswith("not allowed: user agent") for e in errors)  # the rights check


async def test_rest_fuzz(linked_daemon: LocalDaemon) -> None:
    d = linked_daemon
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{d.rest_url}/api/v1/login",
                             json={"username": d.user, "password": d.password}) as resp:
            token = (await resp.json())["token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        statuses: dict[int, int] = {}
        errors: set[str] = set()
        generated = bad_requests(COUNT, seed=7, allow_login=False, numbers=FUZZ_NUMBERS)
        for i, raw in enumerate(generated):
            try:
                name = str(json.loads(raw).get("request") or "snapshot")
            except (ValueError, AttributeError):
                name = "snapshot"
            if i % 2:  # the resource API with the raw text as body
                url = f"{d.rest_url}/api/v1/requests/{quote(name, safe='')}"
                async with http.post(url, data=raw.encode(), headers=headers) as resp:
                    status, reply = resp.status, await resp.json(content_type=None)
                assert status < 500, (raw, status, reply)
            else:  # the astCTI form with the fields as query parameters
                try:
                    fields = {k: v if isinstance(v, str) else json.dumps(v)
                              for k, v in json.loads(raw).items() if k != "request"}
                except (ValueError, AttributeError):
                    fields = {"junk": raw}
                async with http.get(f"{d.rest_url}/{quote(name, safe='')}", params=fields,
                                    headers=headers) as resp:
                    status, reply = resp.status, await resp.json(content_type=None)
                assert status in (200, 404), (raw, status, reply)
            statuses[status] = statuses.get(status, 0) + 1
            reply.setdefault("id", "")
            assert well_formed(reply), (raw, reply)
            assert "internal error" not in reply["error"], (raw, reply)
            errors.add(reply["error"])
            if reply["result"] == "success" and name == "logout":
                async with http.post(f"{d.rest_url}/api/v1/login",
                                     json={"username": d.user, "password": d.password}) as resp:
                    headers["Authorization"] = f"Bearer {(await resp.json())['token']}"
    assert statuses.get(400, 0) > 0 and statuses.get(200, 0) > 0 and statuses.get(403, 0) > 0
    assert_services_reached(errors)
