"""Call control cases proven with real calls: a queue call transferred with its user data, an
attended transfer made on the phone (REFER with Replaces), a consultation across an astcti
kill -9, RFC 4733 DTMF at the far phone, concurrent requests (no global lock).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from tests.e2e.helpers import (
    bridge_members, customer_talking_to, dialogs, expect, monitor, monitor_when_served, stop,
)
from tests.lab import Lab
from tests.lab.ari import channels, force_clean, wait_for
from tests.lab.sipp import PHONE_TYPES, Phone

pytestmark = pytest.mark.lab

IVR_DATA = {"account": "4711", "ivr": "billing"}  # set by the lab dialplan on 601
AGENT_ID = "7012"


async def test_queue_call_transferred_to_another_agent_keeps_its_user_data(
        lab: Lab, cti, clean_asterisk) -> None:
    """A customer goes through the IVR (user data) and queue `support` to agent 101 (a
    single-line phone, member through astcti's shim); 101 adds data, consults 102 and
    transfers: 102 gets the call with all the data, the customer talks to 102."""
    client = await monitor(cti, "101", "102")
    lab.start_phone("101", PHONE_TYPES["single-line"])
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        await client.request("acdlogin", extension="101", agentid=AGENT_ID, groups="support")
        await client.request("acdsetstate", extension="101", agentid=AGENT_ID, state="ready")
        customer = lab.call("601", talk_ms=40000)
        est = await expect(client, "established", "101", timeout=30)
        held = est["callid"]
        assert est["lastredirection"] == "support" and est["userdata"] == IVR_DATA
        await client.request("userdata", extension="101", callid=held,
                             data={"crm": "case-77"})
        active = (await client.request("consultation", extension="101", callid=held,
                                       destination="102"))["callid"]
        delivered = await expect(client, "delivered", "102", callid=active)
        assert delivered["userdata"] == {**IVR_DATA, "crm": "case-77"}
        await expect(client, "established", "102", callid=active)
        await expect(client, "established", "101", callid=active)
        await client.request("transfer", extension="101", activecallid=active,
                             heldcallid=held)
        transferred = await expect(client, "transferred", "102", callid=active)
        assert transferred["userdata"] == {**IVR_DATA, "crm": "case-77"}
        assert transferred["transferring"] == "101"
        assert (await expect(client, "connectioncleared", "101"))["cause"] == "transferred"
        # the customer (behind the queue's Local channel) now talks to 102
        wait_for(lambda: any("PJSIP/102" in m and any(n.startswith("Local/101@astcti-agent")
                                                       for n in m)
                             for m in bridge_members(lab)), what="customer bridged with 102")
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="102", callid=active)
        cleared = await expect(client, "connectioncleared", "102", callid=active)
        assert cleared["userdata"]["crm"] == "case-77"
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        await client.request("acdlogout", extension="101", agentid=AGENT_ID, check=False)
        lab.rx("queue remove member Local/101@astcti-agent/n from support")
        stop(lab, *([customer] if customer else []))


async def test_attended_transfer_made_on_the_phone(lab: Lab, cti, clean_asterisk) -> None:
    """The agent's phone holds the customer, calls 102 itself and transfers with REFER +
    Replaces: `transferred` names the customer and 102, the customer talks to 102."""
    client = await monitor(cti, "101", "102")
    lab.start_phone("101", Phone(answer_after_ms=300, attended_to="102",
                                 attended_after_ms=1500))
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        customer, callid = await customer_talking_to(lab, client, "101", talk_ms=40000)
        assert (await expect(client, "held", "101", timeout=20))["callid"] == callid
        consult = await expect(client, "established", "101", timeout=20)
        assert consult["callid"] != callid and consult["called"] == "102"
        est102 = await expect(client, "established", "102", timeout=20)
        transferred = await expect(client, "transferred", "101", timeout=20)
        assert transferred["transferring"] == "101"
        assert set(transferred["parties"]) == {"0912345678", "102"}
        target = await expect(client, "transferred", "102", timeout=20)
        assert target["transferring"] == "101" and target["callid"] == est102["callid"]
        causes = [(await expect(client, "connectioncleared", "101", timeout=20))
                  for _ in range(2)]
        assert {c["cause"] for c in causes} == {"transferred"}
        assert {c["callid"] for c in causes} == {callid, consult["callid"]}
        wait_for(lambda: not [c for c in channels(lab) if c["name"].startswith("PJSIP/101-")],
                 what="the transferring phone's calls ended")
        # the customer and 102 are joined (Asterisk links astcti's two bridges)
        await asyncio.sleep(1)
        assert customer.alive()
        await client.request("hangup", extension="102", callid=est102["callid"])
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        stop(lab, *([customer] if customer else []))


async def test_consultation_survives_an_astcti_kill_and_completes(lab: Lab, cti,
                                                                  clean_asterisk) -> None:
    """kill -9 astcti in the middle of a consultation (single-line phone): the restarted
    daemon finds the held call and the consultation on the agent's one leg, and the
    transfer completes."""
    client = await monitor(cti, "101", "102")
    lab.start_phone("101", PHONE_TYPES["single-line"])
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        customer, held = await customer_talking_to(lab, client, "101", talk_ms=40000)
        active = (await client.request("consultation", extension="101", callid=held,
                                       destination="102"))["callid"]
        await expect(client, "established", "101", callid=active)
        await asyncio.to_thread(lab.stop_astcti, True)
        await asyncio.to_thread(lab.start_astcti)
        again = await monitor_when_served(cti, "101")
        snap = await again.request("snapshot", extension="101")
        assert {c["callid"]: c["state"] for c in snap["calls"]} == {held: "held",
                                                                   active: "connected"}
        await again.request("startmonitor", extension="102")
        await again.request("alternate", extension="101", activecallid=active,
                            heldcallid=held)
        await expect(again, "retrieved", "101", callid=held)
        await again.request("alternate", extension="101", activecallid=held,
                            heldcallid=active)
        await expect(again, "retrieved", "101", callid=active)
        await again.request("transfer", extension="101", activecallid=active,
                            heldcallid=held)
        await expect(again, "transferred", "101")
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer bridged with 102")
        assert len(dialogs(lab.phones["101"])) == 1
        await again.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        stop(lab, *([customer] if customer else []))


def _rtp_events(sock: socket.socket, until: float) -> list[str]:
    """RFC 4733 telephone-events (payload type 101) received, one per digit."""
    digits: list[str] = []
    seen: set[int] = set()
    names = "0123456789*#ABCD"
    while time.monotonic() < until:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        if len(data) < 16 or data[1] & 0x7F != 101:
            continue
        timestamp = struct.unpack("!I", data[4:8])[0]
        event = data[12]
        if timestamp not in seen and event < len(names):
            seen.add(timestamp)
            digits.append(names[event])
    return digits


async def test_dtmf_reaches_the_far_phone_as_rfc4733_events(lab: Lab, cti,
                                                            clean_asterisk) -> None:
    """102 (dtmf_mode rfc4733) announces this test's own RTP port: the digits astcti sends
    arrive there as telephone-event packets."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    client = await monitor(cti, "101")
    lab.start_phone("101", PHONE_TYPES["desk"])
    lab.start_phone("102", Phone(answer_after_ms=300, sdp_port=sink.getsockname()[1]))
    try:
        callid = (await client.request("makecall", extension="101",
                                       destination="102"))["callid"]
        await expect(client, "established", "101", callid=callid)
        await client.request("dtmf", extension="101", callid=callid, digits="12#")
        digits = await asyncio.to_thread(_rtp_events, sink, time.monotonic() + 5)
        assert digits[:3] == ["1", "2", "#"]
        await client.request("hangup", extension="101", callid=callid)
        await expect(client, "connectioncleared", "101")
    finally:
        sink.close()
        stop(lab)


async def test_concurrent_requests_on_two_agents_and_on_one_call(lab: Lab, cti,
                                                                 clean_asterisk) -> None:
    """Requests from separate clients at the same moment (one session answers its requests
    in order): holds on two agents' calls both work; two retrieves of one call: one does it,
    the other says why not; two answers of one ringing call ring the phone once more, not
    twice."""
    force_clean(lab)
    client = await monitor(cti, "101", "102", "103")
    a, b = await cti(), await cti()
    lab.start_phone("101", PHONE_TYPES["single-line"])
    lab.start_phone("102", PHONE_TYPES["single-line"])
    lab.start_phone("103", Phone(answer_after_ms=None, auto_answer=True))
    c = lab.config
    procs = []
    try:
        procs.append(lab.call("101", talk_ms=40000, local_port=c.trunk_ports[1]))
        procs.append(lab.call("102", talk_ms=40000, local_port=c.trunk_ports[2]))
        call1 = (await expect(client, "established", "101"))["callid"]
        call2 = (await expect(client, "established", "102"))["callid"]
        replies = await asyncio.gather(
            a.request("hold", extension="101", callid=call1, check=False),
            b.request("hold", extension="102", callid=call2, check=False))
        assert [r["result"] for r in replies] == ["success", "success"]
        await expect(client, "held", "101", callid=call1)
        await expect(client, "held", "102", callid=call2)
        replies = await asyncio.gather(
            a.request("retrieve", extension="101", callid=call1, check=False),
            b.request("retrieve", extension="101", callid=call1, check=False))
        assert sorted(r["result"] for r in replies) == ["error", "success"]
        assert [r["error"] for r in replies if r["result"] == "error"] == ["no held call"]
        await expect(client, "retrieved", "101", callid=call1)
        procs.append(lab.call("103", talk_ms=3000, local_port=c.trunk_ports[3]))
        delivered = await expect(client, "delivered", "103")
        replies = await asyncio.gather(*[
            who.request("answer", extension="103", callid=delivered["callid"], check=False)
            for who in (a, b)])
        assert [r["result"] for r in replies] == ["success", "success"]
        await expect(client, "established", "103", callid=delivered["callid"])
        assert len(dialogs(lab.phones["103"])) == 2  # rung, then offered again ONCE
        await client.request("hangup", extension="101", callid=call1)
        await client.request("hangup", extension="102", callid=call2)
        for proc in procs:
            assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        stop(lab, *procs)
