"""Authentication in a running daemon: failed logins are rate-limited and logged, no secrets."""

from __future__ import annotations

import asyncio

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.harness import ExtraDaemon, free_port

pytestmark = pytest.mark.lab


async def test_failed_logins_are_rate_limited_and_logged(lab: Lab, tmp_path) -> None:
    daemon = ExtraDaemon(lab, tmp_path, ari_port=lab.config.ari_port, ws_port=free_port())
    await asyncio.to_thread(daemon.start)
    url = f"ws://127.0.0.1:{daemon.ws_port}/"
    c = lab.config
    try:
        client = await CtiClient.websocket(url)
        errors = []
        for i in range(6):
            reply = await client.request("login", check=False, username=c.astcti_user,
                                         password=f"guess-{i}")
            errors.append(reply["error"])
        assert errors[:5] == ["login failed: wrong username, password or token"] * 5
        assert errors[5].startswith("too many failed logins: retry in")
        # even the right password is refused while the address is blocked
        reply = await client.request("login", check=False, username=c.astcti_user,
                                     password=c.astcti_password)
        assert reply["error"].startswith("too many failed logins")
        token_try = await client.request("login", check=False, token="forged")
        assert token_try["result"] == "error"
        await client.close()
        log = daemon.log()
        assert log.count("failed login for user 'agent' from 127.0.0.1") == 5
        assert "refused: too many failures" in log
        assert "guess-" not in log and c.astcti_password not in log
        assert c.ari_password not in log
    finally:
        await asyncio.to_thread(daemon.stop)


async def test_header_login_and_token_reuse(lab: Lab) -> None:
    c = lab.config
    first = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    token = (await first.request("login", username=c.astcti_user,
                                 password=c.astcti_password))["token"]
    await first.close()
    again = await CtiClient.websocket(c.ws_url, token=token)
    assert (await again.request("snapshot", extension="101"))["result"] == "success"
    await again.close()
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(c.ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_json({"id": "1", "request": "snapshot", "extension": "101"})
            assert (await ws.receive_json())["result"] == "success"
