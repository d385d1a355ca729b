"""ACD agents and call user data against the lab's real Asterisk queue `support` (600).

What a supervisor would check: `queue show support` in the Asterisk console agrees with what
astcti reports, the agent's SIPp phone is (or is not) rung, and the monitoring client sees the
agent events, `queued`, and `delivered`/`connectioncleared` carrying the call's user data.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from astcti.client import CtiClient
from astcti.store import Store
from tests.e2e.helpers import set_parameters
from tests.lab import Lab
from tests.lab.ari import channels, force_clean, wait_for
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

AGENT = "7001"
IVR_DATA = {"account": "4711", "ivr": "billing"}  # set by the lab dialplan on 601
CUSTOMER = "0912345678"  # the trunk caller of Lab.call


MEMBER = "Local/101@astcti-agent/n"  # plain Asterisk: agents join through astcti's shim


def member_line(lab: Lab, iface: str = MEMBER) -> str:
    """The member's line of `queue show support` ('' when it is not a member)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", lab.rx("queue show support"))
    text = re.sub(r"\d+ secs ago", "N secs ago", text)  # the clock ticks between two reads
    return next((line.strip() for line in text.splitlines()
                 if f"({iface})" in line or f"({iface} from " in line), "")


def customer_invites(lab: Lab) -> list[str]:
    """Calls (first INVITE of each dialog) phone 101 got from the trunk customer; re-INVITEs
    (connected-line updates once astcti bridges the call) and other tests' calls do not count."""
    seen: dict[str, str] = {}
    for m in lab.phones["101"].received("INVITE"):
        if f"sip:{CUSTOMER}@" in m:
            call_id = next((l.split(":", 1)[1].strip() for l in m.splitlines()
                            if l.lower().startswith("call-id:")), m)
            seen.setdefault(call_id, m)
    return list(seen.values())


async def connect(lab: Lab, *extensions: str) -> CtiClient:
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    for ext in extensions:  # (after a daemon restart its link comes up just after listening)
        await client.request_until_ok("startmonitor", extension=ext)
    return client


@pytest.fixture
async def agent101(lab: Lab) -> AsyncIterator[CtiClient]:
    """A client monitoring 101 with phone 101 answering; agent logged off afterwards."""
    force_clean(lab)  # calls earlier tests left (they would keep 101 busy)
    lab.start_phone("101", Phone(answer_after_ms=500))
    client = await connect(lab, "101")
    try:
        yield client
    finally:
        await client.close()
        cleanup = await connect(lab)
        await cleanup.request("acdlogout", extension="101", agentid=AGENT, check=False)
        await cleanup.close()
        lab.stop_phone("101")
        set_parameters(lab, acti_autoacw="0", acti_acwtimeout="30")
        lab.rx(f"queue remove member {MEMBER} from support")


async def login_ready(client: CtiClient) -> None:
    await client.request("acdlogin", extension="101", agentid=AGENT, groups="support")
    await client.expect("agentloggedon", agentid=AGENT, groups=["support"])
    await client.expect("agentnotready")  # acti_loginstate defaults to notready
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="auto")
    await client.expect("agentready", agentid=AGENT)


async def test_queue_call_reaches_the_agent_with_ivr_and_client_data(
        lab: Lab, agent101: CtiClient) -> None:
    client = agent101
    await client.request("acdlogin", extension="101", agentid=AGENT, groups="support")
    await client.expect("agentloggedon", agentid=AGENT)
    await client.expect("agentnotready")
    assert "paused" in member_line(lab)
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="ready")
    await client.expect("agentready")
    line = member_line(lab)
    assert line.startswith(AGENT) and "paused" not in line
    shown = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "astcti.admin.shell", "--socket", lab.config.admin_socket,
        "-c", "show agents"], capture_output=True, text=True, timeout=30)
    assert shown.stdout.splitlines()[1].split()[:4] == ["101", AGENT, "support", "ready"]

    caller = lab.call("601", talk_ms=3000)  # IVR sets ASTCTI_USERDATA, then queue support
    delivered = await client.expect("delivered", extension="101", calling=CUSTOMER)
    assert delivered["lastredirection"] == "support"
    assert delivered["userdata"] == IVR_DATA
    reply = await client.request("userdata", extension="101", callid=delivered["callid"],
                                 data={"crm": "case-9", "score": 3})
    assert reply["userdata"] == {**IVR_DATA, "crm": "case-9", "score": 3}
    read = await client.request("userdata", extension="101", callid=delivered["callid"])
    assert read["userdata"] == reply["userdata"]
    # the queue's call came through astcti's member shim: the agent can hold and retrieve it
    await client.expect("established", extension="101", callid=delivered["callid"])
    await client.request("hold", extension="101", callid=delivered["callid"])
    await client.expect("held", extension="101", callid=delivered["callid"])
    await client.request("retrieve", extension="101", callid=delivered["callid"])
    await client.expect("retrieved", extension="101", callid=delivered["callid"])
    cleared = await client.expect("connectioncleared", extension="101",
                                  callid=delivered["callid"], timeout=20)
    assert cleared["userdata"] == {**IVR_DATA, "crm": "case-9", "score": 3}
    assert await asyncio.to_thread(caller.wait, 20) == 0
    assert len(customer_invites(lab)) == 1

    # not ready with a reason: the next queue call waits and is not offered to 101
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="notready",
                         reasoncode="lunch")
    event = await client.expect("agentnotready")
    assert event["reasoncode"] == "lunch"
    assert "paused:lunch" in member_line(lab)
    caller = lab.call("600", talk_ms=1000)
    queued = await client.expect("queued", extension="101")
    assert (queued["queue"], queued["position"], queued["calling"]) == ("support", 1,
                                                                        "0912345678")
    await asyncio.sleep(3)  # the queue retries members every few seconds: give it the chance
    assert not [e for e in client.drain()
                if e.get("event") == "delivered" and e["callid"] == queued["callid"]]
    assert len(customer_invites(lab)) == 1
    assert "1. PJSIP/trunk-" in lab.rx("queue show support")  # the caller still waits
    # ready again: the waiting caller is offered to 101 at once
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="manual")
    await client.expect("agentready")
    delivered = await client.expect("delivered", extension="101", calling=CUSTOMER)
    assert delivered["callid"] == queued["callid"]
    assert await asyncio.to_thread(caller.wait, 30) == 0

    await client.request("acdlogout", extension="101", agentid=AGENT)
    await client.expect("agentloggedoff", agentid=AGENT, reason="request")
    assert member_line(lab) == ""


async def test_after_call_work_returns_to_ready_after_the_timeout(
        lab: Lab, agent101: CtiClient) -> None:
    client = agent101
    set_parameters(lab, acti_autoacw="1", acti_acwtimeout="3")
    await login_ready(client)
    caller = lab.call("600", talk_ms=1000)
    est = await client.expect("established", extension="101", calling=CUSTOMER,
                              lastredirection="support")
    await client.expect("connectioncleared", extension="101", callid=est["callid"], timeout=20)
    acw = await client.expect("agentworknotready", timeout=10)
    assert acw["until"]
    assert "paused:acw" in member_line(lab)
    await client.expect("agentready", timeout=15)
    assert "paused" not in member_line(lab)
    assert await asyncio.to_thread(caller.wait, 20) == 0

    # acw on request ends on a ready request before the timeout
    set_parameters(lab, acti_acwtimeout="600")
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="acw")
    await client.expect("agentworknotready")
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="ready")
    await client.expect("agentready")
    assert "paused" not in member_line(lab)


async def test_bad_requests_fail_clearly_and_change_nothing(
        lab: Lab, agent101: CtiClient) -> None:
    client = agent101
    before = member_line(lab)

    async def fails(name: str, words: str, **fields: object) -> None:
        reply = await client.request(name, check=False, **fields)
        assert reply["result"] == "error" and words in reply["error"], reply

    await fails("acdlogin", "queue nosuchqueue does not exist", extension="101",
                agentid=AGENT, groups="support,nosuchqueue")
    assert member_line(lab) == before == ""
    await fails("acdlogout", "no agent is logged in on extension 101", extension="101",
                agentid=AGENT)
    await fails("acdsetstate", "no agent is logged in", extension="101", agentid=AGENT,
                state="ready")
    await login_ready(client)
    line = member_line(lab)
    await fails("acdlogin", "already has agent 7001 logged in", extension="101",
                agentid="7002", groups="support")
    await fails("acdsetstate", "bad field state: expected one of", extension="101",
                agentid=AGENT, state="sleeping")
    await fails("acdsetstate", "not a reason code", extension="101", agentid=AGENT,
                state="notready", reasoncode="x;y")
    set_parameters(lab, acti_reasoncodes="break,lunch")
    try:
        await fails("acdsetstate", "unknown reason code 'nap'", extension="101",
                    agentid=AGENT, state="notready", reasoncode="nap")
    finally:
        set_parameters(lab, acti_reasoncodes="")
    await fails("acdsetstate", "has agent 7001 logged in, not 7002", extension="101",
                agentid="7002", state="notready")
    assert member_line(lab) == line and "paused" not in line

    caller = lab.call("600", talk_ms=2500)
    delivered = await client.expect("delivered", extension="101", calling=CUSTOMER)
    callid = delivered["callid"]
    await fails("userdata", "bad field data: expected a JSON object", extension="101",
                callid=callid, data=[1, 2])
    await fails("userdata", "no nested objects", extension="101", callid=callid,
                data={"a": {"b": 1}})
    await fails("userdata", "would exceed", extension="101", callid=callid,
                data={f"k{i}": "x" * 1000 for i in range(5)})
    await fails("userdata", "invalid call id", extension="101", callid="1.1", data={"a": 1})
    read = await client.request("userdata", extension="101", callid=callid)
    assert read["userdata"] == {}
    assert await asyncio.to_thread(caller.wait, 20) == 0
    # the daemon still serves
    assert (await client.request("acdgetstate", extension="101"))["state"] == "ready"


async def test_daemon_restart_keeps_agent_state_and_call_data(
        lab: Lab, agent101: CtiClient) -> None:
    client = agent101
    await login_ready(client)
    caller = lab.call("601", talk_ms=9000)
    delivered = await client.expect("delivered", extension="101", calling=CUSTOMER)
    await client.expect("established", extension="101", calling=CUSTOMER)
    await client.request("userdata", extension="101", callid=delivered["callid"],
                         data={"crm": "case-77"})
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="aux",
                         reasoncode="break")
    await client.expect("agentnotready", reasoncode="break")
    await client.close()

    lab.stop_astcti()
    lab.start_astcti()
    client = await connect(lab, "101")
    try:
        state = await client.request("acdgetstate", extension="101")
        assert (state["agentid"], state["state"], state["reasoncode"]) == (AGENT, "notready",
                                                                           "break")
        read = await client.request("userdata", extension="101", callid=delivered["callid"])
        assert read["userdata"] == {**IVR_DATA, "crm": "case-77"}
        cleared = await client.expect("connectioncleared", extension="101",
                                  callid=delivered["callid"], timeout=20)
        assert cleared["userdata"] == {**IVR_DATA, "crm": "case-77"}
        assert await asyncio.to_thread(caller.wait, 20) == 0
        assert "paused:break" in member_line(lab)
    finally:
        await client.request("acdlogout", extension="101", agentid=AGENT, check=False)
        await client.close()


async def test_asterisk_is_the_truth_after_restarts(lab: Lab, agent101: CtiClient) -> None:
    client = agent101
    await login_ready(client)
    await client.request("acdsetstate", extension="101", agentid=AGENT, state="notready",
                         reasoncode="lunch")
    await client.expect("agentnotready", reasoncode="lunch")
    await client.close()

    lab.restart_asterisk()  # persistentmembers=yes: the member comes back, still paused
    client = await connect(lab)
    try:
        await client.request_until_ok("startmonitor", extension="101")
        assert "paused:lunch" in member_line(lab)
        state = await client.request("acdgetstate", extension="101")
        assert (state["state"], state["reasoncode"]) == ("notready", "lunch")

        # a change made outside astcti (console, feature code) is what astcti reports
        lab.rx(f"queue unpause member {MEMBER} queue support")
        await client.expect("agentready", agentid=AGENT)
        assert (await client.request("acdgetstate", extension="101"))["state"] == "ready"

        # the member disappears while astcti is down: after its restart it reports logged off
        await client.close()
        lab.stop_astcti()
        lab.rx(f"queue remove member {MEMBER} from support")
        lab.start_astcti()
        client = await connect(lab, "101")
        for _ in range(50):
            reply = await client.request("acdgetstate", extension="101", check=False)
            if reply["result"] == "error":
                break
            await asyncio.sleep(0.2)
        assert "no agent is logged in on extension 101" in reply["error"]
        assert member_line(lab) == ""
    finally:
        await client.close()


async def test_freepbx_members_are_shared_with_the_phone_feature_code(
        lab: Lab, agent101: CtiClient) -> None:
    """acti_flavour=freepbx: the phone's *45 login and astcti's acdlogin are one member."""
    client = agent101
    member = "Local/101@from-queue/n"
    set_parameters(lab, acti_flavour="freepbx")
    try:
        dialled = lab.dial_from("101", "*45", talk_ms=500)
        assert await asyncio.to_thread(dialled.wait, 20) == 0
        assert "from hint:101@ext-local" in member_line(lab, member)
        # the agent ends the call: the customer waits in the queue as long as app_queue takes
        # to ring the member (a retry after the *45 call's device state, on a loaded host)
        lab.start_phone("101", Phone(answer_after_ms=500, hangup_after_ms=1000))

        await client.request("acdlogin", extension="101", agentid=AGENT, groups="support")
        await client.expect("agentloggedon", agentid=AGENT)
        await client.expect("agentnotready")
        text = lab.rx("queue show support")
        assert text.count("(Local/101@from-queue/n") == 1 and "PJSIP/101)" not in text
        assert "paused" in member_line(lab, member)
        await client.request("acdsetstate", extension="101", agentid=AGENT, state="ready")
        await client.expect("agentready")

        caller = lab.call("600", talk_ms=30000)
        delivered = await client.expect("delivered", extension="101", calling=CUSTOMER,
                                        timeout=30)
        assert delivered["calling"] == "0912345678"
        # the phone is rung by a Dial inside from-queue, not by app_queue: AMI's AgentCalled
        # names the queue
        assert delivered["lastredirection"] == "support"
        assert await asyncio.to_thread(caller.wait, 20) == 0
        await client.request("acdlogout", extension="101", agentid=AGENT)
        await client.expect("agentloggedoff")
        assert member_line(lab, member) == ""
    finally:
        set_parameters(lab, acti_flavour="asterisk")
        lab.rx(f"queue remove member {member} from support")


async def test_waiting_callers_come_from_ami_without_probe_channels(
        lab: Lab, agent101: CtiClient) -> None:
    """With the lab's AMI link the ACD follows app_queue's caller events: `queued` arrives and
    not one Local channel was created to read the queue (before: one per queue per second)."""
    from tests.lab.ari import ChannelWatch

    client = agent101
    await client.request("acdlogin", extension="101", agentid=AGENT, groups="support")
    await client.expect("agentnotready")  # paused: the callers wait
    async with ChannelWatch(lab) as watch:
        first = lab.call("600", talk_ms=1000, local_port=lab.config.trunk_ports[2])
        queued = await client.expect("queued", extension="101")
        assert (queued["queue"], queued["position"]) == ("support", 1)
        second = lab.call("600", talk_ms=1000, local_port=lab.config.trunk_ports[3])
        queued = await client.expect("queued", extension="101", position=2)
        assert watch.probes() == []
    for caller in (first, second):
        caller.stop()
    await client.request("acdlogout", extension="101", agentid=AGENT)


async def test_without_ami_the_poller_keeps_one_probe_channel(lab: Lab, tmp_path) -> None:
    """An Asterisk without an AMI link: the poller reads the queue on ONE probe channel, kept
    while agents are logged in and hung up when the last one leaves."""
    from tests.lab.ari import ChannelWatch
    from tests.lab.harness import ExtraDaemon, free_port

    force_clean(lab)
    c = lab.config
    daemon = ExtraDaemon(lab, tmp_path, ari_port=c.ari_port, ws_port=free_port())
    await asyncio.to_thread(daemon.start)
    client = await CtiClient.websocket(f"ws://127.0.0.1:{daemon.ws_port}/", c.astcti_user,
                                       c.astcti_password)
    callers = []
    try:
        await client.request_until_ok("startmonitor", extension="102")
        async with ChannelWatch(lab) as watch:
            await client.request("acdlogin", extension="102", agentid="7102", groups="support")
            await client.expect("agentnotready")
            callers.append(lab.call("600", talk_ms=1000, local_port=c.trunk_ports[4]))
            await client.expect("queued", extension="102", position=1)
            callers.append(lab.call("600", talk_ms=1000, local_port=c.trunk_ports[5]))
            await client.expect("queued", extension="102", position=2)  # a later poll
            # acdlogin's own reads are throw-away channels, hung up at once; the poller's
            # probe stays: ONE alive, and no poll since it created another (a channel per
            # poll would make the last one created a newer one)
            def alive() -> list[str]:
                return [ch["name"] for ch in channels(lab)
                        if ch["name"].startswith("Local/read@") and ch["name"].endswith(";1")]

            kept = wait_for(lambda: len(found := alive()) == 1 and found,
                            what="exactly one probe channel alive (the poller's)")
            wait_for(lambda: kept[0] in watch.probes(), what="the probe's ChannelCreated")
            assert watch.probes()[-1] == kept[0], watch.probes()
            await client.request("acdlogout", extension="102", agentid="7102")
            wait_for(lambda: not [ch for ch in channels(lab)
                                  if ch["name"].startswith("Local/read@")],
                     what="the probe channel hung up")
    finally:
        for caller in callers:
            caller.stop()
        await client.request("acdlogout", extension="102", agentid="7102", check=False)
        await client.close()
        await asyncio.to_thread(daemon.stop)
        lab.rx("queue remove member Local/102@astcti-agent/n from support")
        force_clean(lab)


async def test_one_agent_id_on_two_extensions_at_once(lab: Lab) -> None:
    """Two acdlogin of one agent id on 101 and 102 at the same moment: one wins, the other
    gets a clear error, and Asterisk's queue and astcti's store agree."""
    first, second = await connect(lab), await connect(lab)
    try:
        replies = await asyncio.gather(
            first.request("acdlogin", extension="101", agentid="7003", groups="support",
                          check=False),
            second.request("acdlogin", extension="102", agentid="7003", groups="support",
                           check=False))
        won = [r for r in replies if r["result"] == "success"]
        lost = [r for r in replies if r["result"] == "error"]
        assert len(won) == 1 and len(lost) == 1, replies
        assert lost[0]["error"].startswith("agent 7003 is ")
        winner = "101" if replies[0] is won[0] else "102"
        loser = "102" if winner == "101" else "101"
        assert member_line(lab, f"Local/{winner}@astcti-agent/n").startswith("7003")
        assert member_line(lab, f"Local/{loser}@astcti-agent/n") == ""
        shown = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "astcti.admin.shell", "--socket", lab.config.admin_socket,
            "-c", "show agents"], capture_output=True, text=True, timeout=30)
        rows = [line.split() for line in shown.stdout.splitlines()[1:]]
        assert [row[:2] for row in rows if "7003" in row] == [[winner, "7003"]]

        def stored() -> list[tuple[str, str]]:
            store = Store.open(lab.config.db)
            try:
                return [(a.extension, a.agentid) for a in store.agents() if a.agentid == "7003"]
            finally:
                store.close()

        wait_for(lambda: stored() == [(winner, "7003")], what="the store agrees")
        await first.request("acdlogout", extension=winner, agentid="7003")
    finally:
        for ext in ("101", "102"):
            await first.request("acdlogout", extension=ext, agentid="7003", check=False)
            lab.rx(f"queue remove member Local/{ext}@astcti-agent/n from support")
        await first.close()
        await second.close()
