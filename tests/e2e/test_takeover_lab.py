"""Stasis on demand: calls rung by the PBX's own Dial()/Queue() (FreePBX 17's dial path, or a
plain Dial route) are taken into astcti's app when a client asks to control them, and then
every request works on them. Real calls, both lab flavours; Asterisk is left clean.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from astcti.client import CtiClient
from tests.e2e.helpers import (
    bridge_members, dialogs, expect, header, monitor_when_served, set_answer, stop,
)
from tests.lab import Lab
from tests.lab.ari import channels, force_clean, wait_clean, wait_for
from tests.lab.sipp import PHONE_TYPES, Phone, SippProcess, phone_process

pytestmark = pytest.mark.lab

AGENT = PHONE_TYPES["desk"]


@pytest.fixture(params=["freepbx", "asterisk"])
def pbx(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, str]]:
    """(lab, the number a customer dials to reach 101 without astcti-dial): FreePBX's own dial
    path, or the plain lab's plain Dial() route (8 + extension)."""
    lab: Lab = request.getfixturevalue("freepbx_lab" if request.param == "freepbx" else "lab")
    for _ in _left_clean(lab):
        yield lab, ("" if request.param == "freepbx" else "8")


@pytest.fixture
def freepbx(freepbx_lab: Lab) -> Iterator[Lab]:
    yield from _left_clean(freepbx_lab)


def _left_clean(lab: Lab) -> Iterator[Lab]:
    """`lab` for one test that must leave Asterisk clean (no channel, no bridge: it fails
    otherwise); phones stopped and Asterisk cleaned afterwards whatever happened."""
    force_clean(lab)
    try:
        yield lab
        wait_clean(lab)
    finally:
        stop(lab)
        force_clean(lab)


@pytest.fixture
async def client_of() -> AsyncIterator:
    clients: list[CtiClient] = []

    async def connect(lab: Lab, *extensions: str) -> CtiClient:
        c = lab.config
        client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
        clients.append(client)
        for ext in extensions:
            await client.request("startmonitor", extension=ext)
        return client

    yield connect
    for client in clients:
        await client.close()


@asynccontextmanager
async def _queue_call_at_member(lab: Lab, client: CtiClient,
                                talk_ms: int) -> AsyncIterator[tuple[SippProcess, dict[str, Any]]]:
    """Agent 7103 at 103 ready in FreePBX's queue (a FreePBX-form Local member), a customer
    through the IVR delivered there: (customer, delivered). Afterwards the agent is logged out
    and the member removed, so the next test finds the queue as it was."""
    c = lab.config
    try:
        await client.request("acdlogin", extension="103", agentid="7103", groups=c.queue)
        await client.request("acdsetstate", extension="103", agentid="7103", state="ready")
        await expect(client, "agentready", "103")
        customer = lab.call(c.ivr_number, talk_ms=talk_ms)
        delivered = await expect(client, "delivered", "103", timeout=30)
        assert delivered["lastredirection"] == c.queue
        yield customer, delivered
    finally:
        await client.request("acdlogout", extension="103", agentid="7103", check=False)
        lab.rx(f"queue remove member Local/103@from-queue/n from {c.queue}")


async def _customer_calls_agent(lab: Lab, prefix: str,
                                client_of) -> tuple[CtiClient, SippProcess]:
    """A client monitoring 101 (the agent's desk phone) and 102 (answers); a customer dials
    101 the PBX's own way (`prefix`: see `pbx`), for a call of half a minute."""
    client = await client_of(lab, "101", "102")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    return client, lab.call(prefix + "101", talk_ms=30000)


async def _hold_retrieve_hang_up(lab: Lab, client: CtiClient, ext: str, timeout: float) -> None:
    """The call established at `ext` (within `timeout`) is held, the trunk's party left alone
    in a bridge, retrieved, then hung up by the agent: a taken-over call served like astcti's
    own."""
    callid = (await expect(client, "established", ext, timeout=timeout))["callid"]
    await client.request("hold", extension=ext, callid=callid)
    assert (await expect(client, "held", ext))["callid"] == callid
    assert bridge_members(lab) == [{"PJSIP/trunk"}]
    await client.request("retrieve", extension=ext, callid=callid)
    await expect(client, "retrieved", ext)
    await client.request("hangup", extension=ext, callid=callid)


def _not_in_stasis(lab: Lab, prefix: str) -> bool:
    return any(c["name"].startswith(prefix) and c["dialplan"]["app_name"] != "Stasis"
               for c in channels(lab))


async def test_dial_call_is_held_retrieved_consulted_and_transferred(pbx, client_of) -> None:
    lab, prefix = pbx
    client, customer = await _customer_calls_agent(lab, prefix, client_of)
    delivered = await expect(client, "delivered", "101")
    callid = (await expect(client, "established", "101"))["callid"]
    assert callid == delivered["callid"]
    assert _not_in_stasis(lab, "PJSIP/101-")  # rung by the PBX's Dial(), not astcti's
    await client.request("hold", extension="101", callid=callid)
    held = await expect(client, "held", "101")
    assert held["callid"] == callid and held["holding"] == "101"
    assert bridge_members(lab) == [{"PJSIP/trunk"}]  # the customer alone, with music
    wait_for(lambda: "Announcer/ARI_MOH" in lab.rx("core show channels"), what="music on hold")
    await client.request("retrieve", extension="101", callid=callid)
    assert (await expect(client, "retrieved", "101"))["callid"] == callid
    assert bridge_members(lab) == [{"PJSIP/101", "PJSIP/trunk"}]
    reply = await client.request("consultation", extension="101", callid=callid,
                                 destination="102")
    active = reply["callid"]
    assert (await expect(client, "held", "101"))["callid"] == callid
    await expect(client, "established", "102", timeout=20)
    await client.request("transfer", extension="101", activecallid=active, heldcallid=callid)
    transferred = await expect(client, "transferred", "101")
    assert transferred["callid"] == callid and "102" in transferred["parties"]
    wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
             what="customer bridged with 102")
    assert not [c for c in channels(lab) if c["name"].startswith("PJSIP/101-")]
    await client.request("hangup", extension="102", callid=active)
    assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_dial_call_is_conferenced(pbx, client_of) -> None:
    lab, prefix = pbx
    client, customer = await _customer_calls_agent(lab, prefix, client_of)
    callid = (await expect(client, "established", "101"))["callid"]
    active = (await client.request("consultation", extension="101", callid=callid,
                                   destination="102"))["callid"]
    await expect(client, "established", "102", timeout=20)
    await client.request("conference", extension="101", activecallid=active, heldcallid=callid)
    conf = await expect(client, "conferenced", "101")
    assert conf["callid"] == callid and {"101", "102", "0912345678"} <= set(conf["parties"])
    wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/102"}],
             what="three parties in one bridge")
    await client.request("hangup", extension="101", callid=callid)
    wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
             what="the others keep talking")
    await client.request("hangup", extension="102", callid=active)
    assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_queue_call_to_a_freepbx_member_is_held_and_transferred(freepbx: Lab,
                                                                     client_of) -> None:
    lab = freepbx
    client = await client_of(lab, "103", "102")
    lab.start_phone("103", AGENT)
    lab.start_phone("102", Phone(answer_after_ms=300))
    async with _queue_call_at_member(lab, client, talk_ms=30000) as (customer, _delivered):
        callid = (await expect(client, "established", "103"))["callid"]
        assert _not_in_stasis(lab, "Local/103@from-queue-")  # FreePBX's member, its Dial()
        await client.request("hold", extension="103", callid=callid)
        assert (await expect(client, "held", "103"))["callid"] == callid
        # the real customer was taken, the member's Local pair ends by itself
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk"}], what="customer held alone")
        wait_for(lambda: not [ch for ch in channels(lab)
                              if ch["name"].startswith("Local/103@from-queue-")],
                 what="the member's Local pair gone")
        await client.request("retrieve", extension="103", callid=callid)
        await expect(client, "retrieved", "103")
        await client.request("transfer", extension="103", callid=callid, destination="102")
        est = await expect(client, "established", "102", timeout=20)
        assert est["userdata"] == {"account": "4711", "ivr": "billing"}  # data followed
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer bridged with 102")
        assert est["callid"] == callid  # the customer's call keeps its id
        await client.request("hangup", extension="102", callid=callid)
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_ringing_call_answered_by_reoffer_and_by_notify_talk(freepbx: Lab,
                                                                   client_of) -> None:
    """`answer` on FreePBX's ringing Dial(): a phone without NOTIFY talk is rung again with
    auto-answer (the caller taken over); a phone with it goes off-hook on FreePBX's own call."""
    lab = freepbx
    client = await client_of(lab, "101", "102")
    lab.start_phone("101", Phone(answer_after_ms=None, auto_answer=True))
    customer = lab.call("101", talk_ms=3000)
    delivered = await expect(client, "delivered", "101")
    await client.request("answer", extension="101", callid=delivered["callid"])
    established = await expect(client, "established", "101", timeout=20)
    assert established["callid"] == delivered["callid"]
    first, second = lab.phones["101"].received("INVITE")[:2]
    assert "answer-after=0" not in header(first, "Call-Info")
    assert "answer-after=0" in header(second, "Call-Info")
    assert len(dialogs(lab.phones["101"])) == 2
    assert await asyncio.to_thread(customer.wait, 20) == 0
    await expect(client, "connectioncleared", "101")

    await set_answer(lab, "102", "talk")
    try:
        lab.start_phone("102", PHONE_TYPES["talk"])
        customer = lab.call("102", talk_ms=2000)
        delivered = await expect(client, "delivered", "102")
        await client.request("answer", extension="102", callid=delivered["callid"])
        established = await expect(client, "established", "102", timeout=20)
        assert established["callid"] == delivered["callid"]
        assert len(dialogs(lab.phones["102"])) == 1 and lab.phones["102"].received("NOTIFY")
        assert _not_in_stasis(lab, "PJSIP/102-")  # still FreePBX's own call
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        await set_answer(lab, "102", "reoffer")


async def test_queue_call_ringing_at_a_freepbx_member_is_answered_by_reoffer(freepbx: Lab,
                                                                             client_of) -> None:
    """`answer` on a queue call still ringing at a FreePBX-form member: the customer (in
    Queue(), not the member's Local pair) is taken over and the agent's phone rung again with
    auto-answer; the call keeps its callid, queue and user data; the queue is left clean."""
    lab, c = freepbx, freepbx.config
    client = await client_of(lab, "103")
    lab.start_phone("103", Phone(answer_after_ms=None, auto_answer=True))
    async with _queue_call_at_member(lab, client, talk_ms=3000) as (customer, delivered):
        wait_for(lambda: any(ch["name"].startswith("PJSIP/trunk-")
                             and ch["dialplan"]["app_name"] == "Queue" for ch in channels(lab)),
                 what="customer waiting in FreePBX's Queue()")
        await client.request("answer", extension="103", callid=delivered["callid"])
        established = await expect(client, "established", "103", timeout=20)
        assert established["callid"] == delivered["callid"]
        assert established["userdata"] == {"account": "4711", "ivr": "billing"}
        first, second = lab.phones["103"].received("INVITE")[:2]
        assert "answer-after=0" not in header(first, "Call-Info")
        assert "answer-after=0" in header(second, "Call-Info")
        assert bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/103"}]  # astcti's own bridge
        assert not [ch for ch in channels(lab) if ch["name"].startswith("Local/103@from-queue")]
        assert await asyncio.to_thread(customer.wait, 20) == 0
        await expect(client, "connectioncleared", "103")
        assert "No Callers" in lab.rx(f"queue show {c.queue}")


async def test_outbound_call_to_a_trunk_is_held_and_retrieved(freepbx: Lab, client_of) -> None:
    lab, c = freepbx, freepbx.config
    client = await client_of(lab, "101")
    outside = phone_process("outside", c.trunk_port, Phone(answer_after_ms=300),
                            lab.workdir, c.sip_port, media_port=lab.media_port(c.trunk_port))
    outside.listen(c.trunk_port)
    try:
        dialer = lab.dial_from("101", "95550001", talk_ms=30000)
        await _hold_retrieve_hang_up(lab, client, "101", timeout=20)
        await expect(client, "connectioncleared", "101")
        await asyncio.to_thread(dialer.wait, 20)
    finally:
        outside.stop()


async def test_without_ami_a_call_cannot_be_taken_over_and_says_why(freepbx: Lab,
                                                                    client_of) -> None:
    from tests.admin.conftest import run_shell

    from astcti.secrets import encrypt, load_key

    lab = freepbx
    kept = lab.config
    original = (f"127.0.0.1#{kept.ami_port},{kept.ami_user},"
                f"{encrypt(load_key(kept.key), kept.ami_secret)}")
    client = await client_of(lab, "101")
    lab.start_phone("101", AGENT)
    out = await asyncio.to_thread(run_shell, "--socket", kept.admin_socket, "-c",
                                  'update parameter acti_amilink_01 ""')
    assert "AMI link stopped" in out.stdout, out.stdout + out.stderr
    try:
        customer = lab.call("101", talk_ms=3000)
        callid = (await expect(client, "established", "101"))["callid"]
        reply = await client.request("hold", extension="101", callid=callid, check=False)
        assert reply["result"] == "error"
        assert reply["error"].startswith("call not controllable: astcti has no AMI link")
        assert "acti_amilink_01" in reply["error"]
        assert await asyncio.to_thread(customer.wait, 20) == 0  # the call was not disturbed
    finally:
        out = await asyncio.to_thread(run_shell, "--socket", kept.admin_socket, "-c",
                                      f"update parameter acti_amilink_01 {original}")
        assert "AMI link started: connected" in out.stdout, out.stdout + out.stderr


async def test_taken_over_call_survives_an_astcti_restart(freepbx: Lab, client_of) -> None:
    """Once taken over, a call is astcti's like any other: kill -9 astcti while it is held,
    the restarted daemon finds it and retrieves it, with the same callid."""
    lab = freepbx
    client = await client_of(lab, "101")
    lab.start_phone("101", AGENT)
    customer = lab.call("101", talk_ms=30000)
    callid = (await expect(client, "established", "101"))["callid"]
    await client.request("hold", extension="101", callid=callid)
    await expect(client, "held", "101")
    await asyncio.to_thread(lab.stop_astcti, True)
    await asyncio.to_thread(lab.start_astcti)
    again = await monitor_when_served(functools.partial(client_of, lab), "101")
    snap = await again.request("snapshot", extension="101")
    assert [(c["callid"], c["state"]) for c in snap["calls"]] == [(callid, "held")]
    await again.request("retrieve", extension="101", callid=callid)
    assert (await expect(again, "retrieved", "101"))["callid"] == callid
    assert bridge_members(lab) == [{"PJSIP/101", "PJSIP/trunk"}]
    await again.request("hangup", extension="101", callid=callid)
    assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_queue_call_to_a_plain_pjsip_member_is_taken_over(lab: Lab, client_of) -> None:
    """Plain Asterisk, a member added as PJSIP/103 (not astcti's shim): app_queue bridges the
    caller with the phone itself; the takeover moves both."""
    c = lab.config
    force_clean(lab)
    client = await client_of(lab, "103")
    lab.start_phone("103", AGENT)
    lab.rx(f"queue add member PJSIP/103 to {c.queue}")
    try:
        customer = lab.call(c.queue_number, talk_ms=30000)
        await _hold_retrieve_hang_up(lab, client, "103", timeout=30)
        assert await asyncio.to_thread(customer.wait, 20) == 0
        wait_clean(lab)
    finally:
        lab.rx(f"queue remove member PJSIP/103 from {c.queue}")
        stop(lab)
        force_clean(lab)
