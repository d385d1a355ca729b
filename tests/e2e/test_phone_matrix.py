"""Every call control request on each kind of agent phone it applies to, with real calls.

The lab's phone types (tests/lab/sipp.py PHONE_TYPES): `desk` (several lines, honours
auto-answer headers), `single-line` (486 on a second call), `no-auto-answer` (rings until the
handset is lifted), `talk` (goes off-hook on NOTIFY Event: talk, one line). Whatever the phone,
the agent's phone keeps ONE call (SIP dialog) through consultation, alternate, reconnect,
transfer and conference: astcti moves that channel between bridges. Asterisk is clean after
each test (`clean_asterisk`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from astcti.client import CtiClient
from tests.e2e.helpers import (
    bridge_members, customer_talking_to, dialogs, expect, header, lift, monitor, set_answer,
    stop,
)
from tests.lab import Lab
from tests.lab.ari import wait_for
from tests.lab.sipp import PHONE_TYPES, Phone, SippProcess

pytestmark = pytest.mark.lab

CONSULTED = Phone(answer_after_ms=300)


@dataclass
class _Agent:
    """One test's agent at 101: the monitoring client, 101's answer mode ("" for the
    default) and the customer calls to end after the test."""

    client: CtiClient
    answer: str
    customers: list[SippProcess] = field(default_factory=list)

    def kept(self, customer: SippProcess) -> SippProcess:
        """`customer`, stopped after the test whatever happens."""
        self.customers.append(customer)
        return customer


@asynccontextmanager
async def _agent(lab: Lab, cti, phone: str | Phone, *consulted: str,
                 answer: str | None = None) -> AsyncIterator[_Agent]:
    """101 on `phone` (a PHONE_TYPES name or a Phone), each `consulted` extension on
    CONSULTED, a client monitoring them all, 101 answering by `answer` (default: talk for the
    talk phone); afterwards customers and phones stopped and 101's answer mode back to the
    default, whatever the test did. Every test of the matrix starts and ends this way."""
    client = await monitor(cti, "101", *consulted)
    lab.start_phone("101", PHONE_TYPES[phone] if isinstance(phone, str) else phone)
    for ext in consulted:
        lab.start_phone(ext, CONSULTED)
    if answer is None:
        answer = "talk" if phone == "talk" else ""
    agent = _Agent(client, answer)
    try:
        if answer:
            await set_answer(lab, "101", answer)
        yield agent
    finally:
        if answer:
            await set_answer(lab, "101", "default")
        stop(lab, *agent.customers)


async def _agent_answers(lab: Lab, agent: _Agent) -> tuple[SippProcess, str]:
    """A customer calls 101; the agent takes the call as its phone does: by itself after a
    ring, or `answer` (NOTIFY talk) when 101 answers by talk."""
    if agent.answer != "talk":
        customer, callid = await customer_talking_to(lab, agent.client, "101", talk_ms=40000)
        return agent.kept(customer), callid
    return await _answer_request(lab, agent, caller="0912345678", talk_ms=40000)


async def _answer_request(lab: Lab, agent: _Agent, **call: Any) -> tuple[SippProcess, str]:
    """A customer calls 101 (`call`: lab.call's options); the agent sends `answer` on the
    delivered call and that same call is established at 101: (customer, callid)."""
    client = agent.client
    customer = agent.kept(lab.call("101", **call))
    delivered = await expect(client, "delivered", "101")
    await client.request("answer", extension="101", callid=delivered["callid"])
    est = await expect(client, "established", "101")
    assert est["callid"] == delivered["callid"]
    return customer, delivered["callid"]


async def _consult(lab: Lab, client, held: str) -> str:
    reply = await client.request("consultation", extension="101", callid=held,
                                 destination="102")
    active = reply["callid"]
    assert (await expect(client, "held", "101"))["callid"] == held
    assert (await expect(client, "established", "101"))["callid"] == active
    await expect(client, "established", "102")
    return active


@pytest.mark.parametrize("phone", ["single-line", "desk", "talk"])
async def test_consultation_alternate_twice_transfer(lab: Lab, cti, clean_asterisk,
                                                     phone: str) -> None:
    async with _agent(lab, cti, phone, "102") as agent:
        client = agent.client
        customer, held = await _agent_answers(lab, agent)
        active = await _consult(lab, client, held)
        assert sorted(map(sorted, bridge_members(lab))) == [["PJSIP/101", "PJSIP/102"],
                                                            ["PJSIP/trunk"]]
        for now_active, now_held in ((held, active), (active, held)):
            await client.request("alternate", extension="101", activecallid=now_held,
                                 heldcallid=now_active)
            assert (await expect(client, "held", "101"))["callid"] == now_held
            assert (await expect(client, "retrieved", "101"))["callid"] == now_active
        await client.request("transfer", extension="101", activecallid=active,
                             heldcallid=held)
        transferred = await expect(client, "transferred", "101")
        assert {"0912345678", "102"} <= set(transferred["parties"])
        assert (await expect(client, "transferred", "102"))["transferring"] == "101"
        assert (await expect(client, "connectioncleared", "101"))["cause"] == "transferred"
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer bridged with 102")
        # one call at the agent's phone from start to end: no second INVITE, ever
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0


@pytest.mark.parametrize("phone", ["single-line", "talk"])
async def test_consultation_conference(lab: Lab, cti, clean_asterisk, phone: str) -> None:
    async with _agent(lab, cti, phone, "102") as agent:
        client = agent.client
        customer, held = await _agent_answers(lab, agent)
        active = await _consult(lab, client, held)
        await client.request("conference", extension="101", activecallid=active,
                             heldcallid=held)
        conf = await expect(client, "conferenced", "101")
        assert conf["callid"] == held and {"101", "102", "0912345678"} <= set(conf["parties"])
        # then the consultation, merged into the call, ends at the agent
        assert (await expect(client, "connectioncleared", "101"))["callid"] == active
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/102"}],
                 what="three parties in one bridge")
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="101", callid=held)
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102"}],
                 what="customer and 102 still talking")
        await client.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_consultation_reconnect_single_line(lab: Lab, cti, clean_asterisk) -> None:
    async with _agent(lab, cti, "single-line", "102") as agent:
        client = agent.client
        customer, held = await _agent_answers(lab, agent)
        active = await _consult(lab, client, held)
        await client.request("reconnect", extension="101", activecallid=active,
                             heldcallid=held)
        assert (await expect(client, "connectioncleared", "102"))["callid"] == active
        assert (await expect(client, "retrieved", "101"))["callid"] == held
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101"}],
                 what="customer back with 101")
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="101", callid=held)
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_consultation_hangup_keeps_the_held_call(lab: Lab, cti, clean_asterisk) -> None:
    """The agent hangs up the consultation (not the phone): the phone's one call stays, the
    customer stays held until retrieved."""
    async with _agent(lab, cti, "single-line", "102") as agent:
        client = agent.client
        customer, held = await _agent_answers(lab, agent)
        active = await _consult(lab, client, held)
        await client.request("hangup", extension="101", callid=active)
        assert (await expect(client, "connectioncleared", "101"))["callid"] == active
        snap = await client.request("snapshot", extension="101")
        assert [(c["callid"], c["state"]) for c in snap["calls"]] == [(held, "held")]
        await client.request("retrieve", extension="101", callid=held)
        assert (await expect(client, "retrieved", "101"))["callid"] == held
        assert bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101"}]
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="101", callid=held)
        assert await asyncio.to_thread(customer.wait, 20) == 0


@pytest.mark.parametrize("phone", ["single-line", "talk"])
async def test_hold_retrieve_and_single_step_requests(lab: Lab, cti, clean_asterisk,
                                                      phone: str) -> None:
    async with _agent(lab, cti, phone, "102", "103") as agent:
        client = agent.client
        customer, callid = await _agent_answers(lab, agent)
        await client.request("hold", extension="101", callid=callid)
        await expect(client, "held", "101", callid=callid)
        await client.request("retrieve", extension="101", callid=callid)
        await expect(client, "retrieved", "101", callid=callid)
        await client.request("conference", extension="101", callid=callid, destination="103")
        await expect(client, "conferenced", "101", callid=callid)
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/103"}],
                 what="single-step conference")
        await client.request("transfer", extension="101", callid=callid, destination="102")
        await expect(client, "transferred", "101", callid=callid)
        await expect(client, "established", "102", callid=callid)
        wait_for(lambda: bridge_members(lab) == [{"PJSIP/trunk", "PJSIP/102", "PJSIP/103"}],
                 what="101 left, 102 joined")
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="103", callid=callid)
        await client.request("hangup", extension="102", callid=callid)
        assert await asyncio.to_thread(customer.wait, 20) == 0


@pytest.mark.parametrize("phone", ["desk", "single-line", "no-auto-answer", "talk"])
async def test_makecall_on_each_phone(lab: Lab, cti, clean_asterisk, phone: str) -> None:
    """The agent's phone is called once; it answers by itself (auto-answer headers), on
    NOTIFY talk, or when the agent lifts the handset."""
    async with _agent(lab, cti, phone, "102") as agent:
        client = agent.client
        callid = (await client.request("makecall", extension="101",
                                       destination="102"))["callid"]
        await expect(client, "serviceinitiated", "101", callid=callid)
        if phone == "no-auto-answer":
            wait_for(lambda: lab.phones["101"].received("INVITE"), what="101 rings")
            await asyncio.sleep(0.5)
            assert bridge_members(lab) == []  # still ringing: nobody answered
            lift(lab, "101")
        await expect(client, "established", "101", callid=callid)
        assert bridge_members(lab) == [{"PJSIP/101", "PJSIP/102"}]
        invite = lab.phones["101"].received("INVITE")[0]
        assert "answer-after=0" in header(invite, "Call-Info")
        if phone == "talk":
            notify = lab.phones["101"].received("NOTIFY")
            assert notify and header(notify[0], "Event") == "talk"
        assert len(dialogs(lab.phones["101"])) == 1
        await client.request("hangup", extension="101", callid=callid)
        await expect(client, "connectioncleared", "102")


async def test_answer_by_notify_talk_takes_the_ringing_call_off_hook(lab: Lab, cti,
                                                                     clean_asterisk) -> None:
    async with _agent(lab, cti, "talk") as agent:
        client = agent.client
        customer, _ = await _answer_request(lab, agent, talk_ms=1500)
        notify = lab.phones["101"].received("NOTIFY")
        assert len(notify) == 1 and header(notify[0], "Event") == "talk"
        assert len(dialogs(lab.phones["101"])) == 1  # taken off-hook, not re-offered
        assert await asyncio.to_thread(customer.wait, 20) == 0
        await expect(client, "connectioncleared", "101")


@pytest.mark.parametrize("phone", ["desk", "single-line"])
async def test_answer_reoffers_to_auto_answer_phones(lab: Lab, cti, clean_asterisk,
                                                     phone: str) -> None:
    ringing = Phone(answer_after_ms=None, auto_answer=True,
                    single_line=PHONE_TYPES[phone].single_line)
    async with _agent(lab, cti, ringing) as agent:
        client = agent.client
        customer, _ = await _answer_request(lab, agent, talk_ms=1500)
        offers = [i for i in lab.phones["101"].received("INVITE")
                  if ";tag=" not in header(i, "To")]
        # rung once, cancelled, offered again with auto-answer (a single-line phone still
        # ending the cancelled ring may answer 486 first: then it is offered again)
        assert "answer-after=0" not in header(offers[0], "Call-Info")
        assert all("answer-after=0" in header(o, "Call-Info") for o in offers[1:])
        assert len(offers) == 2 + len(lab.phones["101"].sent("SIP/2.0 486"))
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_answer_keeps_the_caller_when_the_phone_refuses_the_reoffer_busy(
        lab: Lab, cti, clean_asterisk) -> None:
    """A single-line phone busy for a second after a cancelled ring answers the re-offer 486:
    astcti offers the call again until the phone takes it; the caller never hears busy."""
    busy_after_a_ring = Phone(answer_after_ms=None, auto_answer=True, single_line=True,
                              idle_after_ms=1000)
    async with _agent(lab, cti, busy_after_a_ring) as agent:
        client = agent.client
        customer, callid = await _answer_request(lab, agent, talk_ms=1500)
        assert lab.phones["101"].sent("SIP/2.0 486")  # refused at least once...
        assert await asyncio.to_thread(customer.wait, 20) == 0  # ...and the call went on
        await expect(client, "connectioncleared", "101", callid=callid)
        assert [e["event"] for e in client.events if e.get("extension") == "101" and
                e.get("callid") == callid][:2] == ["delivered", "established"]


async def test_answer_on_a_phone_answered_by_hand_is_refused_and_the_call_rings_on(
        lab: Lab, cti, clean_asterisk) -> None:
    async with _agent(lab, cti, "no-auto-answer", answer="none") as agent:
        client = agent.client
        customer = agent.kept(lab.call("101", talk_ms=1500))
        delivered = await expect(client, "delivered", "101")
        reply = await client.request("answer", extension="101", callid=delivered["callid"],
                                     check=False)
        assert reply["result"] == "error"
        assert reply["error"].startswith("answer not supported by this phone: extension 101")
        lift(lab, "101")  # the agent picks up: the call was never dropped
        await expect(client, "established", "101", callid=delivered["callid"])
        assert len(dialogs(lab.phones["101"])) == 1
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_answer_reoffer_on_a_phone_ignoring_auto_answer_rings_it_again(
        lab: Lab, cti, clean_asterisk) -> None:
    """A phone set to `reoffer` that in truth ignores the headers rings again; the caller is
    kept and the agent lifts the handset."""
    async with _agent(lab, cti, "no-auto-answer") as agent:
        client = agent.client
        customer = agent.kept(lab.call("101", talk_ms=1500))
        delivered = await expect(client, "delivered", "101")
        await client.request("answer", extension="101", callid=delivered["callid"])
        wait_for(lambda: len(dialogs(lab.phones["101"])) == 2, what="second offer")
        await asyncio.sleep(0.5)
        assert customer.alive()
        lift(lab, "101")
        await expect(client, "established", "101", callid=delivered["callid"])
        assert await asyncio.to_thread(customer.wait, 20) == 0


async def test_phone_hold_button_during_a_consultation_holds_the_consultation(
        lab: Lab, cti, clean_asterisk) -> None:
    """The agent presses hold on the phone (re-INVITE sendonly) while consulting: the call
    the phone carries then (the consultation) is held, and retrieved when released."""
    holds_by_itself = Phone(answer_after_ms=300, single_line=True, hold_after_ms=5000,
                            hold_ms=1500)
    async with _agent(lab, cti, holds_by_itself, "102") as agent:
        client = agent.client
        customer, held = await _agent_answers(lab, agent)
        active = await _consult(lab, client, held)
        assert (await expect(client, "held", "101", timeout=30))["callid"] == active
        assert (await expect(client, "retrieved", "101", timeout=30))["callid"] == active
        snap = await client.request("snapshot", extension="101")
        assert {c["callid"]: c["state"] for c in snap["calls"]} == {held: "held",
                                                                   active: "connected"}
        await client.request("transfer", extension="101", activecallid=active,
                             heldcallid=held)
        await expect(client, "transferred", "101")
        await client.request("hangup", extension="102", callid=active)
        assert await asyncio.to_thread(customer.wait, 20) == 0
