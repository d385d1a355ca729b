"""Issue 3 in the lab: the client's view stays right across Asterisk and astcti restarts."""

from __future__ import annotations

import asyncio

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab


async def test_asterisk_restart_mid_call(lab: Lab, cti) -> None:
    client: CtiClient = await cti()
    await client.request("startmonitor", extension="101")
    lab.start_phone("101", Phone(answer_after_ms=300))
    caller = lab.call("101", talk_ms=60000)
    try:
        est = await client.expect("established", extension="101")
        await asyncio.to_thread(lab.restart_asterisk, True)  # kill -9, then start again
        down = await client.expect("linkdown", extension="101", timeout=30)
        assert down["link"] == "acti_tlink_01" and down["reason"]
        cleared = await client.expect("connectioncleared", extension="101", timeout=60)
        assert cleared["callid"] == est["callid"] and cleared["resync"] is True
        await client.expect("linkup", extension="101", timeout=60)
        snap = await client.request("snapshot", extension="101")
        assert snap["calls"] == []
    finally:
        caller.stop()
        lab.stop_phone("101")
    # the monitor keeps working for the next call, with no new startmonitor
    lab.start_phone("101", Phone(answer_after_ms=300))
    try:
        caller = lab.call("101", talk_ms=500)
        delivered = await client.expect("delivered", extension="101", timeout=30)
        await client.expect("connectioncleared", extension="101", callid=delivered["callid"])
        await asyncio.to_thread(caller.wait, 30)
    finally:
        lab.stop_phone("101")


async def test_call_control_view_after_astcti_restart(lab: Lab, cti) -> None:
    lab.start_phone("102", Phone(answer_after_ms=300))
    caller = lab.call("102", caller="0611223344", talk_ms=6000)  # outlives the restart
    try:
        first: CtiClient = await cti()
        await first.request("startmonitor", extension="102")
        est = await first.expect("established", extension="102")
        await first.close()
        await asyncio.to_thread(lab.stop_astcti, True)  # kill -9
        await asyncio.to_thread(lab.start_astcti)
        again: CtiClient = await cti()
        await again.request_until_ok("startmonitor", extension="102")  # link up after listeners
        snap = await again.request("snapshot", extension="102")
        assert [(c["callid"], c["state"], c["calling"]) for c in snap["calls"]] == [
            (est["callid"], "connected", "0611223344")]
        # the customer hangs up (SIPp sends BYE at the end of its talk time)
        cleared = await again.expect("connectioncleared", extension="102", timeout=30)
        assert cleared["callid"] == est["callid"]
    finally:
        caller.stop()
        lab.stop_phone("102")
