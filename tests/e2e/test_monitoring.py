"""Issue 3 in the lab: real SIPp calls through Asterisk, events seen by WebSocket clients."""

from __future__ import annotations

import asyncio

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab


async def _wait(proc, timeout: float = 60) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


async def test_inbound_call_delivered_established_cleared(lab: Lab, cti) -> None:
    client: CtiClient = await cti()
    await client.request("startmonitor", extension="101")
    lab.start_phone("101", Phone(answer_after_ms=800))
    try:
        caller = lab.call("101", caller="0912345678", talk_ms=1500)
        delivered = await client.expect("delivered", extension="101")
        assert delivered["calling"] == "0912345678" and delivered["called"] == "101"
        assert delivered["alerting"] == "101"
        established = await client.expect("established", extension="101")
        cleared = await client.expect("connectioncleared", extension="101")
        assert delivered["callid"] == established["callid"] == cleared["callid"]
        assert established["answering"] == "101" and cleared["cause"] == "normal"
        assert delivered["seq"] < established["seq"] < cleared["seq"]
        assert await _wait(caller) == 0
        assert lab.phones["101"].received("INVITE")
        # nothing else about 101 between them (callcleared and idle follow connectioncleared
        # closely: wait for them rather than race the socket); the caller hung up first, so
        # 101 hears that party leave (partycleared) before its own connection clears
        await client.expect("idle", extension="101")
        names = [e["event"] for e in client.events if e.get("callid") == delivered["callid"]]
        assert names == ["delivered", "established", "partycleared", "connectioncleared",
                         "callcleared", "idle"]
        snap = await client.request("snapshot", extension="101")
        assert snap["calls"] == []
    finally:
        lab.stop_phone("101")


async def test_internal_call_has_one_callid_on_both_extensions(lab: Lab, cti) -> None:
    a: CtiClient = await cti()
    b: CtiClient = await cti()
    await a.request("startmonitor", extension="101")
    await b.request("startmonitor", extension="102")
    lab.start_phone("102", Phone(answer_after_ms=800))
    try:
        dialer = lab.dial_from("101", "102", talk_ms=1500)
        init = await a.expect("serviceinitiated", extension="101")
        orig = await a.expect("originated", extension="101")
        assert (orig["calling"], orig["called"]) == ("101", "102")
        deliv_a = await a.expect("delivered", extension="101")
        assert deliv_a["alerting"] == "102"
        est_a = await a.expect("established", extension="101")
        deliv_b = await b.expect("delivered", extension="102")
        est_b = await b.expect("established", extension="102")
        assert deliv_b["calling"] == "101" and deliv_b["called"] == "102"
        callids = {init["callid"], orig["callid"], deliv_a["callid"], est_a["callid"],
                   deliv_b["callid"], est_b["callid"]}
        assert len(callids) == 1
        await a.expect("connectioncleared", extension="101")
        await b.expect("connectioncleared", extension="102")
        assert await _wait(dialer) == 0
        # each connection only got its own extension's events
        assert {e["extension"] for e in a.events} == {"101"}
        assert {e["extension"] for e in b.events} == {"102"}
    finally:
        lab.stop_phone("102")


@pytest.mark.parametrize("callee, phone, cause", [
    ("103", Phone(reject=486), "busy"),
    ("104", Phone(answer_after_ms=None), "noanswer"),
])
async def test_busy_and_no_answer_give_failed(lab: Lab, cti, callee: str, phone: Phone,
                                              cause: str) -> None:
    client: CtiClient = await cti()
    await client.request("startmonitor", extension="101")
    await client.request("startmonitor", extension=callee)
    lab.start_phone(callee, phone)
    try:
        dialer = lab.dial_from("101", callee, talk_ms=1000)
        failed = await client.expect("failed", extension="101", timeout=30)
        assert (failed["failing"], failed["called"], failed["cause"]) == (callee, callee, cause)
        cleared = await client.expect("connectioncleared", extension="101", timeout=30)
        assert cleared["callid"] == failed["callid"]
        callee_cleared = [e for e in client.events
                          if e["extension"] == callee and e["event"] == "connectioncleared"]
        assert callee_cleared and callee_cleared[0]["cause"] == cause
        await _wait(dialer)
    finally:
        lab.stop_phone(callee)


async def test_monitor_bookkeeping(lab: Lab, cti) -> None:
    client: CtiClient = await cti()
    await client.request("startmonitor", extension="101")
    again = await client.request("startmonitor", extension="101", check=False)
    assert again["result"] == "error" and "already monitored" in again["error"]
    never = await client.request("stopmonitor", extension="102", check=False)
    assert never["result"] == "error" and "not monitored" in never["error"]
    unknown = await client.request("startmonitor", extension="199", check=False)
    assert unknown["result"] == "error"
    assert unknown["error"].startswith("unknown extension 199: add it with `add extension 199")
    await client.request("stopmonitor", extension="101")
    # after stopmonitor, a call to 101 brings no event to this connection
    other: CtiClient = await cti()
    await other.request("startmonitor", extension="101")
    lab.start_phone("101", Phone(answer_after_ms=300))
    try:
        caller = lab.call("101", talk_ms=500)
        await other.expect("connectioncleared", extension="101")
        await _wait(caller)
        assert [e for e in client.events if e.get("extension") == "101"
                and e["event"] != "linkup"] == []
    finally:
        lab.stop_phone("101")
