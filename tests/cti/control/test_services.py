"""Call control's request logic on a model of Asterisk (tests/cti/control/fakepbx.py).

What the services ask of Asterisk (one leg per agent, one originate per makecall, NOTIFY talk
before any re-offer), what the tracker reports from the resulting events, the locks. The lab
tests (tests/e2e) prove the same with Asterisk and SIPp phones.
"""

from __future__ import annotations

import asyncio

import pytest

from astcti.cti.control import ControlError
from astcti.cti.control import services as services_module
from tests.cti.control.fakepbx import Rig


async def consulting(rig: Rig) -> tuple[str, str, str, str]:
    """Customer talking to 101, 101 consulting 102 (answered): (held, active, agent, far)."""
    held, _customer, agent = await rig.customer_with("101")
    active = await rig.control.consultation("101", held, "102")
    await rig.pump()
    far = rig.pbx.channels[active]
    rig.pbx.answer_phone(far.id)
    await rig.pump()
    return held, active, agent, far.id


async def test_consultation_moves_the_agents_one_leg_and_never_calls_the_phone_again() -> None:
    rig = await Rig().start()
    held, customer, agent = await rig.customer_with("101")
    creates_before = [op for op in rig.pbx.ops if op[0] in ("create", "originate")]
    active = await rig.control.consultation("101", held, "102")
    await rig.pump()
    new = [op for op in rig.pbx.ops if op[0] in ("create", "originate")][len(creates_before):]
    assert [(op[1], op[3]) for op in new] == [("PJSIP/102", None)]  # no originator: new call
    assert new[0][2] == active  # the consulted leg's id is the consultation's callid
    assert not any(op[1].startswith("PJSIP/101") for op in new)  # the phone: no second INVITE
    rig.pbx.answer_phone(active)
    await rig.pump()
    assert sorted(map(sorted, rig.pbx.members())) == [["PJSIP/101", "PJSIP/102"],
                                                      ["PJSIP/trunk"]]
    assert rig.pbx.channels[agent].bridge == rig.pbx.channels[active].bridge
    assert rig.names("101", held) == ["delivered", "established", "held"]
    assert rig.names("101", active) == ["serviceinitiated", "originated", "delivered",
                                        "established"]
    assert rig.names("102", active) == ["delivered", "established"]
    snap = {c["callid"]: c["state"] for c in rig.tracker.snapshot("101")}
    assert snap == {held: "held", active: "connected"}


async def test_alternate_twice_then_transfer_leaves_customer_with_the_consulted_party() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    await rig.control.alternate("101", active, held)
    await rig.pump()
    assert rig.pbx.channels[agent].bridge == rig.pbx.channels[held_customer(rig)].bridge
    await rig.control.alternate("101", held, active)
    await rig.pump()
    assert rig.pbx.channels[agent].bridge == rig.pbx.channels[far].bridge
    await rig.control.transfer("101", active, held)
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/102"}]
    assert agent not in rig.pbx.channels
    assert rig.names("101", active)[4:] == ["held", "retrieved", "transferred",
                                           "connectioncleared"]  # 102 still talks in it
    assert rig.names("101", held)[2:] == ["held", "retrieved", "held", "transferred",
                                         "connectioncleared", "callcleared", "idle"]
    cleared = rig.events("connectioncleared", "101")
    assert {e.cause for e in cleared} == {"transferred"}
    transferred = rig.events("transferred", "102")
    assert transferred and transferred[0].transferring == "101"
    assert set(transferred[0].parties) == {"0912345678", "102"}
    assert not rig.tracker.connections_of("101")
    assert rig.control.bridging.locks.busy() == 0


def held_customer(rig: Rig) -> str:
    return rig.pbx.channel("PJSIP/trunk").id


async def test_reconnect_releases_the_consulted_party_and_returns_to_the_customer() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    await rig.control.reconnect("101", active, held)
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101"}]
    assert far not in rig.pbx.channels
    assert rig.names("101", active)[-2:] == ["connectioncleared", "callcleared"]
    assert rig.names("101", held)[-1] == "retrieved"
    assert [c.callid for c in rig.tracker.connections_of("101")] == [held]
    assert len(rig.pbx.bridges) == 1


async def test_conference_puts_all_three_in_the_held_calls_bridge() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    await rig.control.conference("101", active, held)
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101", "PJSIP/102"}]
    conferenced = rig.events("conferenced", "101")
    assert [e.callid for e in conferenced] == [held]
    assert set(conferenced[0].parties) == {"101", "0912345678", "102"}
    assert rig.names("101", active)[-1] == "connectioncleared"
    assert [(c.callid, c.state.value) for c in rig.tracker.connections_of("101")] == \
        [(held, "connected")]
    # the agent hangs up: the others go on talking
    await rig.control.hangup("101", held)
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/102"}]


async def test_hanging_up_the_consultation_keeps_the_agents_leg_and_the_held_call() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    await rig.control.hangup("101", active)
    await rig.pump()
    assert agent in rig.pbx.channels and far not in rig.pbx.channels
    assert rig.pbx.channels[agent].bridge is None  # silence, holding the customer
    assert [(c.callid, c.state.value) for c in rig.tracker.connections_of("101")] == \
        [(held, "held")]
    await rig.control.retrieve("101", held)
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101"}]


async def test_consulted_party_busy_fails_the_consultation_only() -> None:
    rig = await Rig().start()
    held, customer, agent = await rig.customer_with("101")
    active = await rig.control.consultation("101", held, "102")
    await rig.pump()
    rig.pbx.reject_phone(active)
    await rig.pump()
    assert rig.names("101", active) == ["serviceinitiated", "originated", "delivered",
                                        "failed", "connectioncleared", "callcleared"]
    assert rig.events("connectioncleared", "101")[-1].cause == "busy"
    assert agent in rig.pbx.channels and customer in rig.pbx.channels
    assert rig.tracker.find("101", held).state.value == "held"
    assert len(rig.pbx.bridges) == 1  # the consultation's bridge is gone


async def test_retrieve_while_consulting_holds_the_consultation_first() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    await rig.control.retrieve("101", held)
    await rig.pump()
    states = {c.callid: c.state.value for c in rig.tracker.connections_of("101")}
    assert states == {held: "connected", active: "held"}
    assert far in rig.pbx.channels  # the consulted party waits with music, not dropped


async def test_the_agent_hanging_up_during_a_consultation_releases_both_calls() -> None:
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    rig.pbx.hang_up_phone(agent)
    await rig.pump()
    assert not rig.pbx.channels and not rig.pbx.bridges


async def test_makecall_is_one_originate_with_auto_answer_headers() -> None:
    rig = await Rig().start()
    callid = await rig.control.makecall("101", "102", {"crm": "T-1"})
    await rig.pump()
    assert rig.pbx.op_names() == ["originate"]  # nothing else before the phone rings
    _, endpoint, channel_id, args, variables = rig.pbx.ops[0]
    assert (endpoint, channel_id, args) == ("PJSIP/101", callid, "agent")
    assert variables["PJSIP_HEADER(add,Call-Info)"].endswith("answer-after=0")
    rig.pbx.answer_phone(callid)
    await rig.pump()
    far = rig.pbx.channel("PJSIP/102")
    assert rig.pbx.ops[1:4] == [("new_bridge", rig.pbx.ops[1][1]),
                                ("add", rig.pbx.ops[1][1], callid),
                                ("create", "PJSIP/102", far.id, callid,
                                 rig.pbx.ops[3][4])]
    rig.pbx.answer_phone(far.id)
    await rig.pump()
    assert rig.names("101", callid) == ["serviceinitiated", "originated", "delivered",
                                        "established"]
    assert rig.events("established", "101")[0].userdata == {"crm": "T-1"}


async def test_answer_by_notify_talk_does_not_reoffer() -> None:
    rig = await Rig().start(("101", "talk"))
    rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    await rig.control.answer("101", callid)
    await rig.pump()
    assert rig.pbx.op_names().count("notify_talk") == 1
    assert [op[1] for op in rig.pbx.ops if op[0] == "create"] == ["PJSIP/101"]  # no re-offer
    assert rig.names("101") == ["delivered", "established"]
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101"}]


async def test_answer_falls_back_to_reoffer_when_the_phone_ignores_talk(monkeypatch) -> None:
    monkeypatch.setattr(services_module, "TALK_WAIT_SECONDS", 0.05)
    rig = await Rig().start(("101", "talk"))
    rig.pbx.talk_answers = False
    rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    await rig.control.answer("101", callid)
    await rig.pump()
    reoffer = [op for op in rig.pbx.ops if op[0] == "create"][-1]
    assert reoffer[1] == "PJSIP/101"
    assert "PJSIP_HEADER(add,Call-Info)" in reoffer[4]
    rig.pbx.answer_phone(reoffer[2])
    await rig.pump()
    assert rig.names("101") == ["delivered", "established"]  # the re-offer is invisible
    assert rig.events("established", "101")[0].callid == callid


async def test_answer_refused_for_a_phone_answered_by_hand() -> None:
    rig = await Rig().start(("101", "none"))
    rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    with pytest.raises(ControlError, match="^answer not supported by this phone: extension"
                                           " 101 is answered by hand"):
        await rig.control.answer("101", callid)
    assert "hangup" not in rig.pbx.op_names()  # the call keeps ringing


async def test_two_concurrent_answers_create_one_leg() -> None:
    rig = await Rig().start(("101", "reoffer"))
    rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    creates = rig.pbx.op_names().count("create")
    await asyncio.gather(rig.control.answer("101", callid), rig.control.answer("101", callid))
    await rig.pump()
    assert rig.pbx.op_names().count("create") == creates + 1


async def test_an_answer_after_the_reoffer_does_not_offer_the_call_again() -> None:
    """The second `answer` comes once the first re-offered the call (the connection moved to
    the new leg): it finds the call being answered."""
    rig = await Rig().start(("101", "reoffer"))
    rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    creates = rig.pbx.op_names().count("create")
    await rig.control.answer("101", callid)
    await rig.pump()
    await rig.control.answer("101", callid)
    await rig.pump()
    assert rig.pbx.op_names().count("create") == creates + 1


async def _reoffered(rig: Rig) -> tuple[str, str, str]:
    """A customer's call ringing at 101, `answer` re-offered it: (callid, customer, new leg)."""
    customer = rig.pbx.phone_call("PJSIP/trunk", "0912345678",
                                  app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    callid = rig.events("delivered", "101")[0].callid
    await rig.control.answer("101", callid)
    await rig.pump()
    return callid, customer.id, [op for op in rig.pbx.ops if op[0] == "create"][-1][2]


async def test_the_reoffer_waits_for_the_cancelled_ring_to_end() -> None:
    """A phone taking one call at a time must be done with the ringing call first: the new
    leg is dialled only once Asterisk reports the cancelled one gone."""
    rig = await Rig().start(("101", "reoffer"))
    customer = rig.pbx.phone_call("PJSIP/trunk", "0912345678",
                                  app_args="dial,PJSIP/101,30", state="Ring")
    await rig.pump()
    ringing = rig.pbx.channel("PJSIP/101")
    callid = rig.events("delivered", "101")[0].callid
    hung_up: list[str] = []

    async def slow_hangup(link: str, channel_id: str, reason: str = "normal") -> None:
        hung_up.append(channel_id)  # Asterisk takes its time to end the ringing channel

    rig.pbx.hangup = slow_hangup  # type: ignore[method-assign]
    answering = asyncio.ensure_future(rig.control.answer("101", callid))
    for _ in range(50):
        await asyncio.sleep(0.002)
    assert hung_up == [ringing.id]
    assert rig.pbx.op_names().count("dial") == 1  # only the first offer so far
    rig.pbx._destroy(ringing, 16)
    await answering
    await rig.pump()
    assert rig.pbx.op_names().count("dial") == 2
    assert customer.id in rig.pbx.channels


async def test_a_reoffer_refused_busy_is_offered_again_and_the_caller_rings_on() -> None:
    """A single-line phone answers 486 while it ends the cancelled ring: astcti offers the
    call again; the caller is kept and the client sees one call, answered."""
    rig = await Rig().start(("101", "reoffer"))
    callid, customer, first = await _reoffered(rig)
    rig.pbx.reject_phone(first)  # 486: Dial BUSY, then the channel ends with cause 17
    await rig.pump()
    creates = [op for op in rig.pbx.ops if op[0] == "create"]
    again = creates[-1][2]
    assert again != first and creates[-1][1] == "PJSIP/101"
    assert "PJSIP_HEADER(add,Call-Info)" in creates[-1][4]
    assert customer in rig.pbx.channels  # still ringing
    rig.pbx.answer_phone(again)
    await rig.pump()
    assert rig.names("101") == ["delivered", "established"]
    assert rig.events("established", "101")[0].callid == callid
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101"}]


async def test_a_phone_refusing_every_reoffer_gives_the_caller_busy(monkeypatch) -> None:
    monkeypatch.setattr(services_module, "REOFFER_WINDOW", 0.0)
    rig = await Rig().start(("101", "reoffer"))
    callid, customer, first = await _reoffered(rig)
    rig.pbx.reject_phone(first)
    await rig.pump()
    assert customer not in rig.pbx.channels
    assert ("hangup", customer) in rig.pbx.ops
    assert rig.names("101") == ["delivered", "connectioncleared", "callcleared", "idle"]
    assert rig.control.tracker.parked == {}


async def test_the_caller_leaving_between_two_offers_ends_the_connection() -> None:
    rig = await Rig().start(("101", "reoffer"))
    callid, customer, first = await _reoffered(rig)
    rig.pbx.gates["create"] = asyncio.Event()  # the next offer is slow to come
    rig.pbx.reject_phone(first)
    rig._deliver()
    rig.pbx.hang_up_phone(customer)
    rig._deliver()
    assert rig.names("101")[-3:] == ["connectioncleared", "callcleared", "idle"]
    rig.pbx.gates["create"].set()
    await rig.pump()
    assert not [c for c in rig.pbx.channels.values() if c.name.startswith("PJSIP/101-")]


async def test_requests_on_two_agents_calls_run_concurrently() -> None:
    rig = await Rig().start()
    call1, _, _ = await rig.customer_with("101")
    call2, _, _ = await rig.customer_with("102")
    gate = rig.pbx.gates["remove"] = asyncio.Event()
    holds = [asyncio.ensure_future(rig.control.hold("101", call1)),
             asyncio.ensure_future(rig.control.hold("102", call2))]
    for _ in range(50):
        await asyncio.sleep(0)
    assert rig.pbx.arrived["remove"] == 2  # both inside Asterisk at once: no global lock
    gate.set()
    await asyncio.gather(*holds)
    await rig.pump()
    assert [e.callid for e in rig.events("held", "101")] == [call1]
    assert [e.callid for e in rig.events("held", "102")] == [call2]


async def test_requests_on_one_call_run_one_after_the_other_and_recheck() -> None:
    rig = await Rig().start()
    callid, _, _ = await rig.customer_with("101")
    gate = rig.pbx.gates["remove"] = asyncio.Event()
    first = asyncio.ensure_future(rig.control.hold("101", callid))
    second = asyncio.ensure_future(rig.control.hold("101", callid))
    for _ in range(50):
        await asyncio.sleep(0)
    assert rig.pbx.arrived["remove"] == 1  # the second waits for the call's lock
    gate.set()
    await first
    await rig.pump()
    with pytest.raises(ControlError, match="no active call"):
        await second
    assert rig.control.bridging.locks.busy() == 0


async def test_converse_makes_two_stasis_channels_a_conversation() -> None:
    """The entry point for calls taken over from the dialplan (adopted into Stasis)."""
    rig = await Rig().start()
    customer = rig.pbx.phone_call("PJSIP/trunk", "0912345678", app_args="adopt")
    agent = rig.pbx.phone_call("PJSIP/101", "101", app_args="adopt",
                               linkedid=customer.linkedid)
    await rig.pump()
    await rig.control.converse("l1", [customer.snapshot(), agent.snapshot()])
    await rig.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/101"}]
    callid = rig.tracker.connections_of("101")[0].callid
    await rig.control.hold("101", callid)
    await rig.pump()
    assert rig.names("101", callid)[-1] == "held"


async def test_resync_finds_a_consultation_in_progress() -> None:
    """astcti restarts (fresh tracker and control) during a consultation: the agent's held
    call and its consultation line come back and the transfer completes."""
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    fresh = Rig()
    fresh.pbx = rig.pbx  # the same Asterisk
    fresh.control = type(rig.control)(fresh.tracker, fresh.directory, pbx=rig.pbx)
    await fresh.start()
    _bridges, channels = await rig.pbx.list("l1")
    fresh.tracker.resync("l1", channels, "2026-01-01T00:00:09.000+00:00")
    rig.pbx.events.clear()
    await fresh.control.resync(fresh.link)  # type: ignore[arg-type]
    states = {c["callid"]: c["state"] for c in fresh.tracker.snapshot("101")}
    assert states == {held: "held", active: "connected"}
    await fresh.control.transfer("101", active, held)
    await fresh.pump()
    assert rig.pbx.members() == [{"PJSIP/trunk", "PJSIP/102"}]
    assert agent not in rig.pbx.channels


async def test_consulted_party_hanging_up_is_reported_on_the_consultation() -> None:
    """`partycleared` names the call the party left (the agent's one leg carries two)."""
    rig = await Rig().start()
    held, active, agent, far = await consulting(rig)
    rig.pbx.hang_up_phone(far)
    await rig.pump()
    left = rig.events("partycleared", "101")
    assert [(e.callid, e.releasing) for e in left] == [(active, "102")]
    assert rig.tracker.find("101", held).state.value == "held"
    assert agent in rig.pbx.channels


async def test_an_answer_arriving_once_the_call_is_answered_by_another_answer_succeeds() -> None:
    """Two clients answer at once; the second request is read after the phone already took
    the re-offered call: it is done, not an error."""
    rig = await Rig().start(("101", "reoffer"))
    callid, _customer, new = await _reoffered(rig)
    rig.pbx.answer_phone(new)
    await rig.pump()
    creates = rig.pbx.op_names().count("create")
    await rig.control.answer("101", callid)
    assert rig.pbx.op_names().count("create") == creates


async def test_answer_on_a_call_the_agent_answered_by_hand_is_refused() -> None:
    rig = await Rig().start(("101", "reoffer"))
    held, _customer, _agent = await rig.customer_with("101")
    with pytest.raises(ControlError, match="^no alerting call$"):
        await rig.control.answer("101", held)
