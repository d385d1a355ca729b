"""Third-party call control in the lab: real Asterisk, SIPp phones and customer, astcti daemon.

Every test checks what a person would notice (the INVITE a phone got, DTMF it received, who
talks with whom in which bridge, music on hold), the events a monitoring client got with one
stable callid, and that Asterisk holds no channel or bridge afterwards (`clean_asterisk`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from astcti.client import CtiClient
from tests.e2e.helpers import (
    bridge_members as _bridge_members, customer_talking_to as _customer_talking_to,
    expect as _expect, header as _header, monitor as _monitor, monitor_when_served,
    stop as _stop,
)
from tests.lab import Lab
from tests.lab.ari import ari, bridges, channels, wait_for
from tests.lab.sipp import PHONE_TYPES, Phone, SippProcess, phone_process

pytestmark = pytest.mark.lab

AGENT = PHONE_TYPES["desk"]  # desk phone honouring auto-answer


async def test_makecall_calls_the_agent_with_auto_answer_then_the_destination(
        lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=500))
    try:
        reply = await client.request("makecall", extension="101", destination="102",
                                     userdata={"crm": "T-42"})
        callid = reply["callid"]
        for name in ("serviceinitiated", "originated", "delivered", "established"):
            event = await _expect(client, name, "101", timeout=20)
            assert event["callid"] == callid, event
        est_far = await _expect(client, "established", "102")
        assert est_far["callid"] == callid and est_far["calling"] == "101"
        invite = lab.phones["101"].received("INVITE")[0]
        assert "answer-after=0" in _header(invite, "Call-Info")
        assert "info=alert-autoanswer" in _header(invite, "Alert-Info")
        assert _header(invite, "Answer-Mode") == "Auto"
        assert _header(invite, "P-Auto-answer") == "normal"
        far_invite = lab.phones["102"].received("INVITE")[0]
        assert "sip:101@" in _header(far_invite, "From")  # the agent's caller id
        assert _bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]
        await client.request("hangup", extension="101", callid=callid)
        cleared = await _expect(client, "connectioncleared", "102")
        assert cleared["callid"] == callid
    finally:
        _stop(lab)


async def test_makecall_to_an_outside_number_goes_through_the_dialplan(
        lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101")
    lab.start_phone("101", AGENT)
    c = lab.config
    outside = phone_process("outside", c.trunk_port, Phone(answer_after_ms=300,
                                                           hangup_after_ms=2000),
                            lab.workdir, c.sip_port,
                            media_port=36000 + c.port_offset).listen(c.trunk_port)
    try:
        reply = await client.request("makecall", extension="101", destination="95550001")
        for name in ("originated", "delivered", "established"):
            event = await _expect(client, name, "101", timeout=20)
            assert event["callid"] == reply["callid"], event
        assert event["called"] == "95550001"
        invite = wait_for(lambda: outside.received("INVITE"), what="INVITE on the trunk")[0]
        assert invite.startswith("INVITE sip:5550001@")  # routed by the dialplan's 9 prefix
        assert "sip:101@" in _header(invite, "From")
        cleared = await _expect(client, "connectioncleared", "101", timeout=20)
        assert cleared["callid"] == reply["callid"]
    finally:
        outside.stop()
        _stop(lab)


async def test_hold_plays_music_to_the_other_party_and_retrieve_reconnects(
        lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    try:
        callid = (await client.request("makecall", extension="101", destination="102"))["callid"]
        await _expect(client, "established", "101", timeout=20)
        await client.request("hold", extension="101", callid=callid)
        held = await _expect(client, "held", "101")
        assert held["callid"] == callid and held["holding"] == "101"
        assert (await _expect(client, "held", "102"))["holding"] == "101"
        assert _bridge_members(lab) == [{"PJSIP/102"}]  # the agent hears silence, alone
        # ARI plays a bridge's music on hold through an Announcer channel in that bridge
        wait_for(lambda: "Announcer/ARI_MOH" in lab.rx("core show channels"),
                 what="music on hold playing")
        assert "2 stasis" in " ".join(lab.rx("bridge show all").split())
        snap = await client.request("snapshot", extension="101")
        assert snap["calls"][0]["state"] == "held"
        bad = await client.request("hold", extension="101", callid=callid, check=False)
        assert bad["error"] == "no active call"
        await client.request("retrieve", extension="101", callid=callid)
        assert (await _expect(client, "retrieved", "101"))["callid"] == callid
        assert _bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]
        wait_for(lambda: "ARI_MOH" not in lab.rx("core show channels"),
                 what="music on hold stopped")
        bad = await client.request("retrieve", extension="101", callid=callid, check=False)
        assert bad["error"] == "no held call"
        await client.request("hangup", extension="101", callid=callid)
        await _expect(client, "connectioncleared", "102")
    finally:
        _stop(lab)


async def test_dtmf_reaches_the_far_phone_as_sip_info(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101")
    lab.start_phone("101", AGENT)
    lab.start_phone("104", Phone(answer_after_ms=300))  # endpoint 104: dtmf_mode=info
    try:
        callid = (await client.request("makecall", extension="101", destination="104"))["callid"]
        await _expect(client, "established", "101", timeout=20)
        await client.request("dtmf", extension="101", callid=callid, digits="12#")
        infos = wait_for(lambda: len(lab.phones["104"].received("INFO")) >= 3 and
                         lab.phones["104"].received("INFO"), what="three SIP INFO")
        signals = [line.split("=", 1)[1].strip() for info in infos for line in info.splitlines()
                   if line.startswith("Signal=")]
        assert signals == ["1", "2", "#"]
        bad = await client.request("dtmf", extension="101", callid=callid, digits="12x",
                                   check=False)
        assert bad["result"] == "error" and "invalid DTMF" in bad["error"]
        await client.request("hangup", extension="101", callid=callid)
        await _expect(client, "connectioncleared", "101")
    finally:
        _stop(lab)


async def _consult(lab: Lab, client: CtiClient) -> tuple[SippProcess, str, str]:
    """Customer talking to 101; 101 consults 102 (answered)."""
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer, held = await _customer_talking_to(lab, client, "101")
    reply = await client.request("consultation", extension="101", callid=held,
                                 destination="102")
    active = reply["callid"]
    assert active != held
    assert (await _expect(client, "held", "101"))["callid"] == held
    est = await _expect(client, "established", "101", timeout=20)
    assert est["callid"] == active
    await _expect(client, "established", "102", timeout=20)
    return customer, held, active


async def test_consultation_alternate_alternate_transfer(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    customer = None
    try:
        customer, held, active = await _consult(lab, client)
        # `established` says 102 answered; astcti bridges it on the same event, a moment later
        wait_for(lambda: sorted(map(sorted, _bridge_members(lab))) == [["PJSIP/101", "PJSIP/102"],
                                                                      ["PJSIP/trunk"]],
                 what="the consultation bridged, the customer held alone")
        await client.request("alternate", extension="101", activecallid=active, heldcallid=held)
        assert (await _expect(client, "held", "101"))["callid"] == active
        assert (await _expect(client, "retrieved", "101"))["callid"] == held
        await client.request("alternate", extension="101", activecallid=held, heldcallid=active)
        assert (await _expect(client, "held", "101"))["callid"] == held
        assert (await _expect(client, "retrieved", "101"))["callid"] == active
        await client.request("transfer", extension="101", activecallid=active, heldcallid=held)
        transferred = await _expect(client, "transferred", "101")
        assert transferred["transferring"] == "101"
        assert "0912345678" in transferred["parties"] and "102" in transferred["parties"]
        assert (await _expect(client, "transferred", "102"))["transferring"] == "101"
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer bridged with 102")
        assert not [c for c in channels(lab) if c["name"].startswith("PJSIP/101-")]
        await client.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_consultation_conference_hangup(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    customer = None
    try:
        customer, held, active = await _consult(lab, client)
        await client.request("conference", extension="101", activecallid=active,
                             heldcallid=held)
        conf = await _expect(client, "conferenced", "101")
        assert conf["callid"] == held and conf["controller"] == "101"
        assert {"101", "102", "0912345678"} <= set(conf["parties"])
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/102"}],
                 what="three parties in one bridge")
        await client.request("hangup", extension="101", callid=held)
        await _expect(client, "connectioncleared", "101")
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer and 102 still talking")
        await client.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0
        await _expect(client, "connectioncleared", "102", timeout=20)
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_reconnect_drops_the_consultation(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    customer = None
    try:
        customer, held, active = await _consult(lab, client)
        await client.request("reconnect", extension="101", activecallid=active, heldcallid=held)
        assert (await _expect(client, "connectioncleared", "102"))["callid"] == active
        assert (await _expect(client, "retrieved", "101"))["callid"] == held
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101"}],
                 what="customer back with 101")
        bad = await client.request("reconnect", extension="101", activecallid=held,
                                   heldcallid=active, check=False)
        assert bad["error"] in ("no held call", "invalid call id")
        bad = await client.request("transfer", extension="101", activecallid=held,
                                   heldcallid=held, check=False)
        assert bad["error"] == "no held call"
        await client.request("hangup", extension="101", callid=held)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_single_step_transfer(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        customer, callid = await _customer_talking_to(lab, client, "101")
        await client.request("transfer", extension="101", callid=callid, destination="102")
        transferred = await _expect(client, "transferred", "101")
        assert transferred["callid"] == callid and "102" in transferred["parties"]
        est = await _expect(client, "established", "102", timeout=20)
        assert est["callid"] == callid  # the customer's call keeps its id
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer bridged with 102")
        await client.request("hangup", extension="102", callid=callid)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_single_step_transfer_not_taken_rings_the_agent_again(lab: Lab, cti,
                                                                    clean_asterisk) -> None:
    client = await _monitor(cti, "101", "103")
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("103", Phone(reject=486))  # the destination is busy
    customer = None
    try:
        customer, callid = await _customer_talking_to(lab, client, "101")

        def dialogs() -> set[str]:  # re-INVITEs (connected line updates) do not count
            return {_header(i, "Call-ID") for i in lab.phones["101"].received("INVITE")}

        dialogs_before = dialogs()
        await client.request("transfer", extension="101", callid=callid, destination="103")
        await _expect(client, "transferred", "101")
        recalled = await _expect(client, "established", "101", timeout=30)
        assert recalled["callid"] == callid  # the customer's call came back to the agent
        assert len(dialogs() - dialogs_before) == 1  # the phone was rung once more
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101"}],
                 what="customer bridged with 101 again")
        assert customer.alive()
        await client.request("hangup", extension="101", callid=callid)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_single_step_conference(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        customer, callid = await _customer_talking_to(lab, client, "101")
        await client.request("conference", extension="101", callid=callid, destination="102")
        conf = await _expect(client, "conferenced", "101", timeout=20)
        assert conf["callid"] == callid and "102" in conf["parties"]
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/102"}],
                 what="three parties in one bridge")
        await client.request("hangup", extension="101", callid=callid)
        await _expect(client, "connectioncleared", "101")
        await client.request("hangup", extension="102", callid=callid)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_answer_reoffers_the_call_with_auto_answer(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101")
    lab.start_phone("101", Phone(answer_after_ms=None, auto_answer=True))  # rings until told
    customer = None
    try:
        customer = lab.call("101", talk_ms=2000)
        delivered = await _expect(client, "delivered", "101", timeout=20)
        await client.request("answer", extension="101", callid=delivered["callid"])
        est = await _expect(client, "established", "101", timeout=20)
        assert est["callid"] == delivered["callid"]
        invites = [i for i in lab.phones["101"].received("INVITE")
                   if ";tag=" not in _header(i, "To")]  # new calls, not re-INVITEs
        assert len(invites) == 2 and "answer-after=0" in _header(invites[1], "Call-Info")
        assert "answer-after=0" not in _header(invites[0], "Call-Info")
        assert [e["event"] for e in client.events if e["event"] != "delivered"][:1] == \
            ["established"]  # the re-offer is invisible to the client
        assert await asyncio.to_thread(customer.wait, 20) == 0
        await _expect(client, "connectioncleared", "101")
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_bad_requests_fail_cleanly(lab: Lab, cti, clean_asterisk) -> None:
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    try:
        async def fail(request: str, **fields: Any) -> str:
            reply = await client.request(request, check=False, **fields)
            assert reply["result"] == "error", reply
            return reply["error"]

        assert await fail("hold", extension="101", callid="nosuchcall") == "invalid call id"
        assert await fail("makecall", extension="101", destination="77777") == \
            "destination not obtainable"
        assert "missing field" in await fail("makecall", extension="101")
        assert "unknown extension 199" in await fail("makecall", extension="199",
                                                     destination="102")
        callid = (await client.request("makecall", extension="101", destination="102"))["callid"]
        await _expect(client, "established", "101", timeout=20)
        assert await fail("hold", extension="102", callid="nosuchcall") == "invalid call id"
        assert await fail("retrieve", extension="101", callid=callid) == "no held call"
        assert await fail("reconnect", extension="101", activecallid=callid,
                          heldcallid=callid) == "no held call"
        assert "missing fields" in await fail("transfer", extension="101", callid=callid)
        assert await fail("consultation", extension="101", callid=callid,
                          destination="77777") == "destination not obtainable"
        assert "invalid DTMF" in await fail("dtmf", extension="101", callid=callid,
                                            digits="1;2")
        assert _bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]  # nothing was disturbed
        await client.request("hangup", extension="101", callid=callid)
        await _expect(client, "connectioncleared", "102")
        assert await fail("hangup", extension="101", callid=callid) == "invalid call id"
    finally:
        _stop(lab)


async def test_calls_still_work_when_astcti_is_down(lab: Lab, cti, clean_asterisk) -> None:
    """STASISSTATUS=FAILED: the dialplan dials directly."""
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.stop_astcti()
    try:
        customer = lab.call("101", talk_ms=1000)
        assert await asyncio.to_thread(customer.wait, 30) == 0
        assert lab.phones["101"].received("INVITE")
        assert not bridges(lab)
    finally:
        lab.start_astcti()
        await monitor_when_served(cti, "101")  # back in service for the next test
        _stop(lab)


async def test_hold_from_the_phone_itself(lab: Lab, cti, clean_asterisk) -> None:
    """The agent presses hold on the phone (re-INVITE sendonly), then takes the call back."""
    client = await _monitor(cti, "101")
    lab.start_phone("101", Phone(answer_after_ms=300, hold_after_ms=1500, hold_ms=1500))
    customer = None
    try:
        customer, callid = await _customer_talking_to(lab, client, "101", talk_ms=8000)
        held = await _expect(client, "held", "101")
        assert held["callid"] == callid and held["holding"] == "101"
        retrieved = await _expect(client, "retrieved", "101")
        assert retrieved["callid"] == callid
        assert await asyncio.to_thread(customer.wait, 30) == 0
        await _expect(client, "connectioncleared", "101")
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_blind_transfer_from_the_phone_itself(lab: Lab, cti, clean_asterisk) -> None:
    """The agent's phone sends REFER: the customer ends up talking to 102, events follow."""
    client = await _monitor(cti, "101", "102")
    lab.start_phone("101", Phone(answer_after_ms=300, refer_to="102", refer_after_ms=1500))
    lab.start_phone("102", Phone(answer_after_ms=300))
    customer = None
    try:
        customer, callid = await _customer_talking_to(lab, client, "101", talk_ms=30000)
        transferred = await _expect(client, "transferred", "101")
        assert transferred["callid"] == callid and transferred["transferring"] == "101"
        assert (await _expect(client, "connectioncleared", "101"))["cause"] == "transferred"
        est = await _expect(client, "established", "102")
        wait_for(lambda: any({"PJSIP/trunk", "PJSIP/102"} <= m or
                             ("PJSIP/trunk" in m and any(n.startswith("Local/") for n in m))
                             for m in _bridge_members(lab)), what="customer reaches 102")
        await client.request("hangup", extension="102", callid=est["callid"])
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_held_call_survives_an_astcti_restart(lab: Lab, cti, clean_asterisk) -> None:
    """kill -9 astcti while a call is held: the restarted daemon finds the held call in
    Asterisk (bridges, and the holding leg's ASTCTI_HOLDING variable) and can retrieve it."""
    client = await _monitor(cti, "101")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    try:
        callid = (await client.request("makecall", extension="101", destination="102"))["callid"]
        await _expect(client, "established", "101")
        await client.request("hold", extension="101", callid=callid)
        await _expect(client, "held", "101")
        await asyncio.to_thread(lab.stop_astcti, True)
        await asyncio.to_thread(lab.start_astcti)
        again: CtiClient = await cti()
        await again.request_until_ok("startmonitor", extension="101")  # link up after listeners
        snap = await again.request("snapshot", extension="101")
        assert [(c["callid"], c["state"]) for c in snap["calls"]] == [(callid, "held")]
        await again.request("retrieve", extension="101", callid=callid)
        assert (await _expect(again, "retrieved", "101"))["callid"] == callid
        assert _bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]
        await again.request("hangup", extension="101", callid=callid)
        await _expect(again, "connectioncleared", "101")
    finally:
        _stop(lab)


async def test_held_party_hangs_up_before_the_transfer(lab: Lab, cti, clean_asterisk) -> None:
    """The customer hangs up while held for a consultation: the transfer then fails cleanly and
    the consultation goes on."""
    client = await _monitor(cti, "101", "102")
    customer = None
    try:
        customer, held, active = await _consult(lab, client)
        trunk = next(c for c in channels(lab) if c["name"].startswith("PJSIP/trunk-"))
        ari(lab, "DELETE", f"channels/{trunk['id']}")  # as if the customer hung up
        cleared = await _expect(client, "connectioncleared", "101")
        assert cleared["callid"] == held
        bad = await client.request("transfer", extension="101", activecallid=active,
                                   heldcallid=held, check=False)
        assert bad["error"] == "invalid call id"
        assert _bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]  # consultation goes on
        await client.request("hangup", extension="101", callid=active)
        await _expect(client, "connectioncleared", "102")
    finally:
        _stop(lab, *([customer] if customer else []))


async def test_queue_call_through_the_agent_shim_is_controllable(lab: Lab, cti,
                                                                 clean_asterisk) -> None:
    """A queue member added as Local/101@astcti-agent/n: the queue's call reaches 101 through
    astcti's Stasis app, so hold works on it (the customer hears music on hold)."""
    c = lab.config

    # the queue helper takes its inputs as channel variables (JSON body): raw HTTP here
    import base64
    import json
    import urllib.request

    def helper(action: str) -> None:
        body = json.dumps({"variables": {"QNAME": c.queue, "QIFACE": "Local/101@astcti-agent/n",
                                         "QSTATEIFACE": "PJSIP/101", "QMEMBERNAME": "101"}})
        req = urllib.request.Request(
            f"{c.ari_url}/ari/channels?endpoint=Local/{action}@astcti-queue&app={c.ari_app}-helper",
            data=body.encode(), method="POST", headers={"Content-Type": "application/json"})
        token = base64.b64encode(f"{c.ari_user}:{c.ari_password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        urllib.request.urlopen(req, timeout=5).read()

    client = await _monitor(cti, "101")
    lab.start_phone("101", Phone(answer_after_ms=300))
    customer = None
    helper("add")
    try:
        wait_for(lambda: "Local/101@astcti-agent" in lab.rx(f"queue show {c.queue}"),
                 what="shim member in the queue")
        customer = lab.call(c.queue_number, talk_ms=30000)
        est = await _expect(client, "established", "101")
        callid = est["callid"]
        await client.request("hold", extension="101", callid=callid)
        assert (await _expect(client, "held", "101"))["callid"] == callid
        wait_for(lambda: "Announcer/ARI_MOH" in lab.rx("core show channels"),
                 what="music on hold to the queue's caller")
        await client.request("retrieve", extension="101", callid=callid)
        await _expect(client, "retrieved", "101")
        await client.request("hangup", extension="101", callid=callid)
        await _expect(client, "connectioncleared", "101")
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        helper("remove")
        _stop(lab, *([customer] if customer else []))


async def test_call_answered_while_astcti_is_away_is_bridged_on_return(lab: Lab, cti,
                                                                       clean_asterisk) -> None:
    """astcti dies while the agent's phone rings; the agent answers meanwhile. The restarted
    daemon ties the legs together by their linkedid and bridges them: the call goes on."""
    lab.start_phone("101", Phone(answer_after_ms=2500))
    customer = None
    try:
        client = await _monitor(cti, "101")
        customer = lab.call("101", talk_ms=6000)
        await _expect(client, "delivered", "101")
        await asyncio.to_thread(lab.stop_astcti, True)  # kill -9 while 101 rings
        wait_for(lambda: any(c["name"].startswith("PJSIP/101-") and c["state"] == "Up"
                             for c in channels(lab)), what="101 answered while astcti is away")
        assert not bridges(lab)
        await asyncio.to_thread(lab.start_astcti)
        wait_for(lambda: _bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101"}],
                 what="customer and 101 bridged by the restarted astcti")
        assert await asyncio.to_thread(customer.wait, 30) == 0  # the customer talked, hung up
    finally:
        _stop(lab, *([customer] if customer else []))
