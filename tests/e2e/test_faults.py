"""Link faults in the lab: a network cut neither side notices, and clients that resume."""

from __future__ import annotations

import asyncio

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.harness import ExtraDaemon, free_port
from tests.lab.proxy import FaultyProxy
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab


@pytest.fixture
async def proxied(lab: Lab, tmp_path):
    """A second astcti whose ARI link goes through a proxy that can stall (heartbeat 1 s)."""
    proxy = await FaultyProxy(lab.config.ari_port).start()
    daemon = ExtraDaemon(lab, tmp_path, ari_port=proxy.port, ws_port=free_port(), heartbeat=1)
    await asyncio.to_thread(daemon.start)
    yield proxy, daemon
    await asyncio.to_thread(daemon.stop)
    await proxy.close()


async def _client(lab: Lab, port: int) -> CtiClient:
    c = lab.config
    client = await CtiClient.websocket(f"ws://127.0.0.1:{port}/", c.astcti_user, c.astcti_password)
    await client.request_until_ok("startmonitor", extension="101")
    return client


async def test_silent_network_cut_is_detected_reported_and_resynced(lab: Lab, proxied) -> None:
    proxy, daemon = proxied
    client = await _client(lab, daemon.ws_port)
    lab.start_phone("101", Phone(answer_after_ms=200))
    try:
        caller = lab.call("101", talk_ms=4000)
        est = await client.expect("established", extension="101")
        proxy.stall()  # TCP stays open, nothing flows: only the heartbeat can tell
        down = await client.expect("linkdown", extension="101", timeout=20)
        assert "closed" in down["reason"] or "failed" in down["reason"]
        refused = await client.request("snapshot", extension="101", check=False)
        assert refused["result"] == "error" and "link is down" in refused["error"]
        await asyncio.to_thread(caller.wait, 30)  # the call ends while astcti is blind
        proxy.heal()
        await client.expect("linkup", extension="101", timeout=40)
        cleared = [e for e in client.events if e["event"] == "connectioncleared"]
        assert [(e["callid"], e["resync"]) for e in cleared] == [(est["callid"], True)]
        # and the next call is seen live
        caller = lab.call("101", talk_ms=500)
        delivered = await client.expect("delivered", extension="101", timeout=20)
        assert delivered["callid"] != est["callid"]
        await client.expect("connectioncleared", extension="101", callid=delivered["callid"])
        await asyncio.to_thread(caller.wait, 30)
        assert "link down" in daemon.log()
    finally:
        await client.close()
        lab.stop_phone("101")


async def test_resume_replays_exactly_what_was_missed(lab: Lab, cti) -> None:
    first: CtiClient = await cti()
    await first.request("startmonitor", extension="102")
    lab.start_phone("102", Phone(answer_after_ms=200))
    try:
        caller = lab.call("102", talk_ms=300)
        await first.expect("idle", extension="102", timeout=20)  # the call's last event
        await asyncio.to_thread(caller.wait, 30)
        lastseq = first.events[-1]["seq"]
        await first.close()
        watcher: CtiClient = await cti()  # only to know when astcti has seen the call end
        await watcher.request("startmonitor", extension="102")
        caller = lab.call("102", talk_ms=300)  # while the client is away
        await watcher.expect("callcleared", extension="102", timeout=20)
        await asyncio.to_thread(caller.wait, 30)
        again: CtiClient = await cti()
        reply = await again.request("resume", extension="102", lastseq=lastseq)
        assert reply["resync"] is False
        missed = [e for e in again.events if e.get("msgtype") == "event"]
        assert [e["seq"] for e in missed] == list(range(lastseq + 1, reply["seq"] + 1))
        assert [e["event"] for e in missed] == ["delivered", "established", "partycleared",
                                                "connectioncleared", "callcleared", "idle"]
        # and it is monitoring again
        again.drain()
        caller = lab.call("102", talk_ms=300)
        live = await again.expect("delivered", extension="102", timeout=20)
        assert live["seq"] == reply["seq"] + 1
        await asyncio.to_thread(caller.wait, 30)
    finally:
        lab.stop_phone("102")


async def test_resume_too_late_gives_resync_and_snapshot(lab: Lab, tmp_path) -> None:
    daemon = ExtraDaemon(lab, tmp_path, ari_port=lab.config.ari_port, ws_port=free_port(),
                         parameters={"acti_resume_size": "2"})
    await asyncio.to_thread(daemon.start)
    lab.start_phone("101", Phone(answer_after_ms=200))
    try:
        client = await _client(lab, daemon.ws_port)
        caller = lab.call("101", talk_ms=300)
        await client.expect("callcleared", extension="101", timeout=20)
        await asyncio.to_thread(caller.wait, 30)
        reply = await client.request("resume", extension="101", lastseq=1)
        assert reply["resync"] is True and reply["calls"] == []
        await client.close()
    finally:
        lab.stop_phone("101")
        await asyncio.to_thread(daemon.stop)
