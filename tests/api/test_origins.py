"""Browsers cannot be turned against astcti: foreign origins are refused on HTTP and WebSocket
(CSRF on an auth=none listener's `GET /makecall`, cross-site WebSocket), astcti's own pages
and the origins of `acti_origins` are allowed, and clients that are not browsers never notice.
The last test drives a real Chromium from a page of another site."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from astcti.admin.language import Context, execute, tokenize
from astcti.api import ws as ws_transport
from astcti.errors import ConfigError
from astcti.store.store import ListenerRow
from tests.api.conftest import LocalDaemon, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def _admin(d: LocalDaemon, line: str) -> str:
    assert d.daemon.store is not None
    return await execute(tokenize(line), Context(d.daemon.store, d.daemon))


async def _status(url: str, method: str = "GET", **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, (body, dict(resp.headers))


async def test_auth_none_listener_needs_an_allow_list(local_daemon: LocalDaemon) -> None:
    listeners = local_daemon.daemon.listeners
    assert listeners is not None
    port = free_port()
    with pytest.raises(ConfigError, match="auth=none needs an allow list"):
        await listeners.open(ListenerRow(port, "127.0.0.1", "*", "astctirest", "none"))
    assert port not in listeners.running
    with pytest.raises(Exception, match="add --force"):
        await _admin(local_daemon, f"add tcp {port} 127.0.0.1 * custom astctirest auth=none")
    out = await _admin(local_daemon,
                       f"add tcp {port} 127.0.0.1 * custom astctirest auth=none --force")
    assert "listening now" in out and "(forced)" in out
    assert port in listeners.running


async def test_foreign_browser_origins_are_refused(local_daemon: LocalDaemon, caplog) -> None:
    d = local_daemon
    port = free_port()
    await _admin(d, f"add tcp {port} 127.0.0.1 127.0.0.1/32 custom astctirest auth=none")
    url = f"http://127.0.0.1:{port}/makecall?extension=101&destination=0112345678"
    reached: list[Any] = []
    d.daemon.dispatcher.tap = lambda session, raw, reply: reached.append(raw)
    with caplog.at_level(logging.WARNING):
        for headers in ({"Origin": "https://evil.example"},
                        {"Referer": "https://evil.example/page.html"},
                        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
                        {"Origin": "null"}):
            status, (body, _h) = await _status(url, **headers)
            assert status == 403, headers
            assert body["result"] == "error" and body["error"].startswith("browser request from")
            assert body["error"].endswith("add its origin to parameter acti_origins if its"
                                          " pages may use astcti")
    assert reached == []  # refused before the dispatcher: nothing was dialled
    assert "browser request from https://evil.example refused" in caplog.text
    # not a browser (no Origin, Referer or Sec-Fetch-Site): it reaches the dispatcher, which
    # judges the (unseated) address as usual
    status, (body, _h) = await _status(url)
    assert status == 200 and len(reached) == 1
    assert body["error"].startswith("not allowed: user address 127.0.0.1 may not act on"
                                    " extension 101")
    # astcti's own pages: same origin, and another REST listener's origin on the same host
    own = f"http://127.0.0.1:{port}"
    assert (await _status(url, Origin=own, **{"Sec-Fetch-Site": "same-origin"}))[0] == 200
    assert (await _status(url, Origin=d.rest_url))[0] == 200


async def test_acti_origins_allows_a_crm_page_with_cors(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    crm = "https://crm.example.com"
    url = f"{d.rest_url}/api/v1/openapi.json"
    assert (await _status(url, Origin=crm))[0] == 403
    assert "applied to every HTTP and WebSocket listener" in await _admin(
        d, f"update parameter acti_origins {crm}/")
    status, (_body, headers) = await _status(url, Origin=crm)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == crm
    status, (_body, headers) = await _status(url, "OPTIONS", Origin=crm,
                                             **{"Access-Control-Request-Method": "POST"})
    assert status == 204 and "Authorization" in headers["Access-Control-Allow-Headers"]
    assert (await _status(url, Origin="https://crm.example.com.evil.example"))[0] == 403


async def test_websocket_checks_origin_and_login_deadline(local_daemon: LocalDaemon,
                                                          monkeypatch) -> None:
    d = local_daemon
    url = f"ws://127.0.0.1:{d.ports['astctiws']}/"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        # the toolbar's page (a REST listener of this astcti) may open a WebSocket
        async with http.ws_connect(url, headers={"Origin": d.rest_url}) as ws:
            await ws.send_json({"id": "1", "request": "snapshot", "extension": "101"})
            assert (await ws.receive_json())["error"] == \
                "not logged in: send a login request first"
        # a connection that never logs in is closed, like TCP's
        monkeypatch.setattr(ws_transport, "LOGIN_TIMEOUT", 0.5)
        async with http.ws_connect(url) as ws:
            message = await asyncio.wait_for(ws.receive_json(), 10)
            assert message["error"] == "login timeout: send a login request within 0.5 s"
            closing = await asyncio.wait_for(ws.receive(), 10)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.POLICY_VIOLATION


EVIL_PAGE = """<!doctype html><title>loading</title>
<img id="pixel" src="{rest}/makecall?extension=101&destination=0112345678">
<script>
const done = new Set();
function finish(what) {{ done.add(what); if (done.size === 3) document.title = "done"; }}
document.getElementById("pixel").onerror = () => finish("img");
fetch("{rest}/makecall", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
  body: "extension=101&destination=0112345678"}}).finally(() => finish("fetch"));
const ws = new WebSocket("{ws}");
ws.onopen = () => ws.send(JSON.stringify({{id: "1", request: "login", username: "agent",
  password: "guess"}}));
ws.onclose = () => finish("ws");
</script>"""


async def test_a_real_browser_on_another_site_cannot_place_calls(local_daemon: LocalDaemon,
                                                                 caplog) -> None:
    """Chromium opens a page of another site that fires astcti's click-to-call URL (an image,
    a no-cors POST) at an auth=none listener and opens a WebSocket: nothing reaches the
    dispatcher."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make venv` installs it (apt-get install chromium)")
    from playwright.async_api import async_playwright

    d = local_daemon
    port = free_port()
    await _admin(d, f"add tcp {port} 127.0.0.1 127.0.0.1/32 custom astctirest auth=none")
    reached: list[Any] = []
    d.daemon.dispatcher.tap = lambda session, raw, reply: reached.append(raw)
    page_port = free_port()
    evil = web.Application()
    html = EVIL_PAGE.format(rest=f"http://127.0.0.1:{port}",
                            ws=f"ws://127.0.0.1:{d.ports['astctiws']}/")

    async def page_of_another_site(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    evil.router.add_get("/", page_of_another_site)
    runner = web.AppRunner(evil)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", page_port).start()
    profile = tempfile.mkdtemp(prefix="astcti-chromium-")
    try:
        with caplog.at_level(logging.WARNING):
            async with async_playwright() as pw:
                context = await pw.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True,
                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
                page = context.pages[0] if context.pages else await context.new_page()
                # localhost is another site than 127.0.0.1 for the browser
                await page.goto(f"http://localhost:{page_port}/")
                await page.wait_for_function("document.title === 'done'", timeout=20000)
                await context.close()
        assert reached == []
        refusals = [r.getMessage() for r in caplog.records
                    if "browser request from http://localhost" in r.getMessage()]
        assert len(refusals) >= 3, refusals  # the image, the POST and the WebSocket
    finally:
        await runner.cleanup()
        shutil.rmtree(profile, ignore_errors=True)
