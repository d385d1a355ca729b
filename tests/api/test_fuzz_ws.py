"""10,000 generated bad requests over the WebSocket: well-formed errors, daemon up, flat memory."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.fuzz import bad_requests, well_formed
from tests.lab import Lab
from tests.lab.harness import ExtraDaemon, free_port

pytestmark = pytest.mark.lab


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _session(port: int, lab: Lab):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/")
    await ws.send_str(json.dumps({"id": "L", "request": "login", "username": lab.config.astcti_user,
                                  "password": lab.config.astcti_password}))
    assert json.loads((await ws.receive(timeout=10)).data)["result"] == "success"
    return http, ws


async def _blast(port: int, lab: Lab, requests: list[str]) -> dict[str, int]:
    http, ws = await _session(port, lab)
    counts = {"success": 0, "error": 0}
    try:
        for raw in requests:
            await ws.send_str(raw)
            while True:  # skip events (a fuzzed startmonitor may succeed)
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.TEXT, (raw, msg)
                reply = json.loads(msg.data)
                if reply.get("msgtype") == "response":
                    break
            assert well_formed(reply), (raw, reply)
            assert "internal error" not in reply["error"], (raw, reply)
            counts[reply["result"]] += 1
            if reply["result"] == "success" and json.loads(raw).get("request") == "logout":
                await ws.send_str(json.dumps({"id": "L", "request": "login", "username":
                                              lab.config.astcti_user,
                                              "password": lab.config.astcti_password}))
                await ws.receive(timeout=10)
    finally:
        await ws.close()
        await http.close()
    return counts


async def test_ws_fuzz(lab: Lab, tmp_path) -> None:
    """Linked to the lab's Asterisk, the user an agent on the lab's fuzz endpoints (nobody
    listens on their contact): garbage reaches call control, ACD and user data, and nothing
    rings anyone."""
    from astcti.store import Store
    from tests.api.conftest import FUZZ_EXTENSIONS, FUZZ_NUMBERS
    from tests.lab.ari import force_clean

    daemon = ExtraDaemon(lab, tmp_path, ari_port=lab.config.ari_port, ws_port=free_port(),
                         extensions=FUZZ_EXTENSIONS)
    store = Store.open(daemon.db)
    try:
        store.update_user(lab.config.astcti_user, role="agent", extensions=FUZZ_EXTENSIONS)
    finally:
        store.close()
    await asyncio.to_thread(daemon.start)
    try:
        # logins are fuzzed by the dispatcher test; here they would trip the rate limit
        requests = list(bad_requests(12000, seed=99, allow_login=False,
                                     numbers=FUZZ_NUMBERS))
        warm = await _blast(daemon.ws_port, lab, requests[:2000])
        before = rss_kib(daemon.proc.pid)
        chunks = [requests[2000 + i::4] for i in range(4)]  # 4 clients at once
        results = await asyncio.gather(*(_blast(daemon.ws_port, lab, c) for c in chunks))
        after = rss_kib(daemon.proc.pid)
        fails = warm["error"] + sum(r["error"] for r in results)
        assert fails >= 10000
        assert daemon.proc.poll() is None
        assert after - before < 8 * 1024, f"RSS grew from {before} to {after} KiB"
        assert "Traceback" not in daemon.log()
    finally:
        await asyncio.to_thread(daemon.stop)
        for ext in FUZZ_EXTENSIONS:
            lab.rx(f"queue remove member Local/{ext}@astcti-agent/n from support")
        force_clean(lab)
