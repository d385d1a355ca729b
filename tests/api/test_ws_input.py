"""Bad input on the WebSocket listener gets the protocol's error words, never a crash."""

from __future__ import annotations

import aiohttp

from astcti.api.protocol import MAX_REQUEST_BYTES
from tests.api.conftest import LocalDaemon


async def test_bad_frames_get_clear_errors(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    url = f"ws://127.0.0.1:{d.ports['astctiws']}/"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        async def ask(frame: str | bytes) -> dict:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            return await ws.receive_json(timeout=10)

        assert (await ask('{"id":"1","request":"snapshot","extension":"101"}'))["error"] == \
            "not logged in: send a login request first"
        assert (await ask("{nope"))["error"].startswith("malformed JSON")
        assert (await ask('["a"]'))["error"] == "a request must be a JSON object"
        assert (await ask('{"request":"snapshot"}'))["error"] == "missing field id"
        assert (await ask('{"id":"2","request":"fly"}'))["error"].startswith("unknown request")
        assert (await ask(b"\x00\x01"))["error"].startswith("binary frames are not supported")
        reply = await ask(f'{{"id":"3","request":"login","username":"{d.user}",'
                          f'"password":"{d.password}"}}')
        assert reply["result"] == "success"
        assert (await ask('{"id":"4","request":"snapshot"}'))["error"] == \
            "missing field extension"
        assert (await ask('{"id":"5","request":"snapshot","extension":["101"]}'))["error"] == \
            "bad field extension: expected a string"
        await ws.send_str('{"id":"6","pad":"' + "x" * MAX_REQUEST_BYTES + '"}')
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
