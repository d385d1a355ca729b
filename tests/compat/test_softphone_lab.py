"""The astCTI author's softphone against the lab, unchanged: real calls through Asterisk.

The softphone (tests/compat/softphone.py) sits at 127.0.0.21 and cannot log in: the operator
opens an `auth=none` WebSocket listener allowed to that address and seats the address at 101
with the author's own console word, `add ipextnmap 127.0.0.21 101`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.admin.conftest import run_shell
from tests.compat.softphone import Softphone, StartupFailed
from tests.lab import Lab
from tests.lab.ari import bridges, channels, force_clean, wait_for
from tests.lab.harness import free_port
from tests.lab.sipp import Phone, phone_process

pytestmark = pytest.mark.lab

SEAT = "127.0.0.21"  # the softphone's PC, seated at 101
STRANGER = "127.0.0.22"  # allowed by the listener, seated nowhere
CUSTOMER = "0912345678"  # the trunk caller of Lab.call
AGENT_PHONE = Phone(answer_after_ms=800, auto_answer=True)  # answers at once when told to


def shell(lab: Lab, command: str, stdin: str = "") -> str:
    out = run_shell("--socket", lab.config.admin_socket, "-c", command, stdin=stdin)
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    return out.stdout


@pytest.fixture(scope="module")
def listener(lab: Lab) -> str:
    """The operator's set-up for the softphone: an auth=none listener and the seat."""
    port = free_port()
    shell(lab, f"add tcp {port} 127.0.0.1 {SEAT},{STRANGER} custom astctiws auth=none")
    assert "sits at extension 101" in shell(lab, f"add ipextnmap {SEAT} 101")
    assert f"{SEAT}  101" in shell(lab, "show ipextnmap")
    yield f"ws://127.0.0.1:{port}/"
    shell(lab, f"remove ipextnmap {SEAT}")
    shell(lab, f"remove tcp {port}")


@pytest.fixture
async def softphone(lab: Lab, listener: str) -> AsyncIterator[Softphone]:
    force_clean(lab)
    lab.start_phone("101", AGENT_PHONE)
    phone = Softphone(listener, SEAT)
    await phone.start()
    try:
        yield phone
    finally:
        await phone.close()
        for ext in list(lab.phones):
            lab.stop_phone(ext)
        force_clean(lab)


def _members(lab: Lab) -> list[set[str]]:
    names = {c["id"]: c["name"].rsplit("-", 1)[0] for c in channels(lab)}
    return [{names.get(cid, cid) for cid in b["channels"]} for b in bridges(lab)]


async def test_start_up_then_an_inbound_call(lab: Lab, softphone: Softphone) -> None:
    # myextension -> startmonitor -> querydeviceinfo -> snapshot
    assert (softphone.extension, softphone.agent, softphone.numcall) == ("101", "", 0)
    assert softphone.shown == []
    customer = lab.call("101", caller=CUSTOMER, talk_ms=1500)
    offer = await softphone.expect("offer")
    assert offer["calling"] == CUSTOMER and offer["called"] == "101"
    assert softphone.line == f"ringing: {CUSTOMER}"
    connect = await softphone.expect("connect", callid=offer["callid"])
    assert connect["calling"] == CUSTOMER and softphone.line == "talking"
    snap = await softphone.act("snapshot")
    assert snap["numcall"] == 1 and snap["calls"][0]["calling"] == CUSTOMER
    alert = await softphone.act("userdata", type="alert")
    assert (alert["cli"], alert["calling"], alert["called"]) == (CUSTOMER, CUSTOMER, "101")
    # the customer hangs up: the page hears that party leave, its own line clear, then idle
    left = await softphone.expect("disconnect", callid=offer["callid"], releasing=CUSTOMER)
    own = await softphone.expect("disconnect", callid=offer["callid"], releasing="101")
    assert left["calling"] == own["calling"] == CUSTOMER
    await softphone.expect("idle")
    assert softphone.eventtypes(offer["callid"]) == ["offer", "connect", "disconnect",
                                                     "disconnect", "idle"]
    assert softphone.line == "idle"
    assert await asyncio.to_thread(customer.wait, 20) == 0
    assert (await softphone.act("snapshot"))["numcall"] == 0


async def test_makecall_then_hold_retrieve_hangup_by_extension_only(
        lab: Lab, softphone: Softphone) -> None:
    c = lab.config
    customer = phone_process("outside", c.trunk_port, Phone(answer_after_ms=500),
                             lab.workdir, c.sip_port,
                             media_port=36000 + c.port_offset).listen(c.trunk_port)
    try:
        reply = await softphone.act("makecall", destination="95550001")
        assert reply["result"] == "success" and reply["id"] == 8
        alert = await softphone.expect("alert")
        assert alert["called"] == "95550001" and alert["calling"] == "101"
        await softphone.expect("connect", callid=alert["callid"])
        assert lab.phones["101"].received("INVITE")  # the agent's phone rang first...
        wait_for(lambda: customer.received("INVITE"), what="the customer's INVITE")  # ...then
        # the agent talks with the customer's leg in astcti's bridge (the Local channel's
        # other half is bridged with the trunk by the dialplan's Dial)
        (bridge,) = [m for m in _members(lab) if "PJSIP/101" in m]
        assert len(bridge) == 2 and any(m.startswith("Local/95550001@") for m in bridge)
        assert (await softphone.act("hold"))["result"] == "success"
        held = await softphone.expect("hold", callid=alert["callid"])
        assert held["called"] == "95550001" and softphone.line == "on hold"
        assert "PJSIP/101" not in set().union(*_members(lab))  # the agent left the bridge
        assert (await softphone.act("retrieve"))["result"] == "success"
        await softphone.expect("retrieve", callid=alert["callid"])
        wait_for(lambda: "PJSIP/101" in set().union(*_members(lab)), what="agent back")
        assert softphone.line == "talking"
        assert (await softphone.act("hangup"))["result"] == "success"
        own = await softphone.expect("disconnect", callid=alert["callid"], releasing="101")
        assert own["called"] == "95550001"
        await softphone.expect("idle")
        wait_for(lambda: not channels(lab), what="Asterisk clean")
    finally:
        customer.stop()


async def test_answer_by_extension_only(lab: Lab, softphone: Softphone) -> None:
    lab.start_phone("101", Phone(answer_after_ms=None, auto_answer=True))  # rings until told
    customer = lab.call("101", caller=CUSTOMER, talk_ms=1500)
    try:
        offer = await softphone.expect("offer")
        assert (await softphone.act("answer"))["result"] == "success"
        await softphone.expect("connect", callid=offer["callid"])
        await softphone.expect("idle", timeout=30)
        assert await asyncio.to_thread(customer.wait, 20) == 0
    finally:
        customer.stop()


async def _logged_in_request(lab: Lab, request: str, **fields: str) -> dict:
    """One request from a logged-in WebSocket client of the lab's token listener."""
    c = lab.config
    async with aiohttp.ClientSession() as http, http.ws_connect(c.ws_url) as ws:
        await ws.send_json({"id": "1", "request": "login", "username": c.astcti_user,
                            "password": c.astcti_password})
        assert (await ws.receive_json())["result"] == "success"
        await ws.send_json({"id": "2", "request": request, **fields})
        while True:
            reply = await ws.receive_json()
            if reply.get("msgtype") == "response":
                return reply


def set_parameter(lab: Lab, name: str, value: str) -> None:
    shell(lab, f"update parameter {name} {value}")


def member_line(lab: Lab) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", lab.rx("queue show support"))
    return next((line.strip() for line in text.splitlines() if "Local/101@" in line), "")


async def test_acd_in_the_authors_words(lab: Lab, softphone: Softphone) -> None:
    set_parameter(lab, "acti_agentgroups", "support")
    shell(lab, "passwd agent 7001", stdin="4321\n")
    try:
        bad = await softphone.act("login", agentid="7001", passwd="1111")
        assert bad["result"] == "error"
        assert bad["error"] == "agent login failed: wrong or missing password for agent 7001"
        assert member_line(lab) == ""  # nothing joined
        # astcti's own acdlogin checks the same password (it used to accept any)
        for password in ("1111", None):
            reply = await _logged_in_request(lab, "acdlogin", extension="101", agentid="7001",
                                             **({"password": password} if password else {}))
            assert reply["result"] == "error" and "wrong or missing password" in reply["error"]
        assert member_line(lab) == ""
        reply = await softphone.act("login", agentid="7001", passwd="4321")
        assert reply["result"] == "success" and reply["agentid"] == "7001", reply
        assert member_line(lab)  # a member of the queue now
        info = await softphone.act("querydeviceinfo")
        assert info["associateddevice"] == "7001"
        state = await softphone.act("setstate", agentid="7001", passwd="4321", state="aux",
                                    reasoncode="3")
        assert state["result"] == "success", state
        query = await softphone.act("queryagentstate")
        assert (query["skillmode"], query["reasoncode"], query["talkstate"]) == ("aux", "3",
                                                                                  "idle")
        assert "paused" in member_line(lab)
        await softphone.act("setstate", agentid="7001", passwd="4321", state="manual")
        query = await softphone.act("queryagentstate")
        assert (query["skillmode"], query["reasoncode"]) == ("manual", "0")
        assert "paused" not in member_line(lab)
        wrong = await softphone.act("setstate", agentid="7001", passwd="0000", state="auto")
        assert wrong["result"] == "error" and "wrong or missing password" in wrong["error"]
        assert (await softphone.act("logout", agentid="7001"))["result"] == "success"
        assert member_line(lab) == ""
        query = await softphone.act("queryagentstate")
        assert (query["skillmode"], query["reasoncode"]) == ("null", "0")
        assert (await softphone.act("querydeviceinfo"))["associateddevice"] == ""
    finally:
        shell(lab, "remove agent password 7001")
        set_parameter(lab, "acti_agentgroups", '""')


async def test_failures_are_result_error_with_words(lab: Lab, softphone: Softphone,
                                                    listener: str) -> None:
    for request, fields, words in [
        ("hold", {}, "no active call"),
        ("retrieve", {}, "no held call"),
        ("answer", {}, "no alerting call"),
        ("hangup", {}, "no active call"),
        ("dropparty", {"party": "102"}, "no active call"),
    ]:
        reply = await softphone.act(request, **fields)
        assert (reply["result"], reply["error"], reply["id"]) == ("error", words,
                                                                  softphone_id(request))
    mine_only = await softphone.send("startmonitor", extension="102")
    assert mine_only["result"] == "error"
    assert mine_only["error"] == ("not allowed: user address 127.0.0.21 may not act on"
                                  " extension 102: address 127.0.0.21 sits at extension 101"
                                  " (log in to act on others)")
    assert softphone.shown[-1] == mine_only["error"]
    # a PC nobody seated: the page stops at start-up, as it did against astcti before
    stranger = Softphone(listener, STRANGER)
    with pytest.raises(StartupFailed, match="add ipextnmap 127.0.0.22 EXT"):
        await stranger.start()
    await stranger.close()
    assert stranger.shown[-1] == "get CTI extension failed"
    assert "no extension for address 127.0.0.22" in stranger.shown[0]


def softphone_id(request: str) -> int:
    from tests.compat.softphone import IDS

    return IDS[request]


async def test_consult_then_transfer_and_a_conference_with_dropparty(
        lab: Lab, softphone: Softphone) -> None:
    lab.start_phone("102", Phone(answer_after_ms=500))
    lab.start_phone("103", Phone(answer_after_ms=500))
    customer = lab.call("101", caller=CUSTOMER, talk_ms=60000)
    try:
        offer = await softphone.expect("offer")
        await softphone.expect("connect", callid=offer["callid"])
        # single-step conference: only a destination
        assert (await softphone.act("conference", destination="103"))["result"] == "success"
        conf = await softphone.expect("conference", callid=offer["callid"])
        assert "103" in conf["parties"] and conf["calling"] == CUSTOMER
        wait_for(lambda: any(len(m) == 3 for m in _members(lab)), what="three in the bridge")
        assert (await softphone.act("dropparty", party="103"))["result"] == "success"
        gone = await softphone.expect("disconnect", callid=offer["callid"], releasing="103")
        assert gone["event"] == "partycleared"
        wait_for(lambda: _members(lab) and all(len(m) == 2 for m in _members(lab)),
                 what="customer and agent talk on")
        # consult 102 and complete the transfer with the destination only
        reply = await softphone.act("consultation", destination="102")
        assert reply["result"] == "success", reply
        await softphone.expect("hold", callid=offer["callid"])
        await softphone.expect("connect", callid=reply["callid"])
        assert (await softphone.act("transfer", destination="102"))["result"] == "success"
        await softphone.expect("transfer", callid=offer["callid"])
        await softphone.expect("idle", timeout=30)
        wait_for(lambda: [m for m in _members(lab) if m >= {"PJSIP/102"}], what="102 talks")
        assert (await softphone.act("snapshot"))["numcall"] == 0
    finally:
        customer.stop()


async def test_failures_read_the_same_on_every_transport(lab: Lab, listener: str) -> None:
    """Today's words, `result: "error"`, on TCP and both REST forms too (logged-in clients)."""
    c = lab.config
    reader, writer = await asyncio.open_connection("127.0.0.1", c.tcp_port)
    try:
        for message in ({"id": 0, "request": "login", "username": c.astcti_user,
                         "password": c.astcti_password},
                        {"id": 7, "request": "hold", "extension": "101"}):
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await reader.readline())
        assert reply == {"msgtype": "response", "id": 7, "result": "error",
                         "error": "no active call"}
    finally:
        writer.close()
    basic = base64.b64encode(f"{c.astcti_user}:{c.astcti_password}".encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": f"Basic {basic}"}) as http:
        base = f"http://127.0.0.1:{c.rest_port}"
        async with http.get(f"{base}/hold?extension=101&id=5") as resp:
            body = await resp.json()
        assert resp.status == 200 and (body["result"], body["error"], body["id"]) == (
            "error", "no active call", "5")
        async with http.post(f"{base}/api/v1/requests/hold",
                             json={"id": 5, "extension": "101"}) as resp:
            body = await resp.json()
        assert resp.status == 409 and (body["result"], body["error"], body["id"]) == (
            "error", "no active call", 5)


async def test_dtmf_field_and_reconnect_by_extension_only(lab: Lab,
                                                          softphone: Softphone) -> None:
    """`dtmf` in the author's field name reaches the far phone (104 takes DTMF as SIP INFO);
    a consultation dropped with `reconnect` naming only the extension brings the first call
    back."""
    lab.start_phone("104", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=500))
    try:
        first = await softphone.act("makecall", destination="104")
        assert first["result"] == "success", first
        await softphone.expect("connect", callid=first["callid"])
        assert (await softphone.act("dtmf", dtmf="12#"))["result"] == "success"
        infos = wait_for(lambda: len(lab.phones["104"].received("INFO")) >= 3 and
                         lab.phones["104"].received("INFO"), what="three SIP INFO")
        signals = [line.split("=", 1)[1].strip() for info in infos for line in info.splitlines()
                   if line.startswith("Signal=")]
        assert signals == ["1", "2", "#"]
        consult = await softphone.act("consultation", destination="102")
        assert consult["result"] == "success", consult
        await softphone.expect("hold", callid=first["callid"])
        await softphone.expect("connect", callid=consult["callid"])
        assert (await softphone.act("reconnect"))["result"] == "success"
        await softphone.expect("disconnect", callid=consult["callid"], releasing="101")
        await softphone.expect("retrieve", callid=first["callid"])
        assert softphone.line == "talking"
        wait_for(lambda: [m for m in _members(lab) if m == {"PJSIP/101", "PJSIP/104"}],
                 what="101 and 104 talk again")
        assert (await softphone.act("hangup"))["result"] == "success"
        await softphone.expect("idle")
    finally:
        for ext in ("102", "104"):
            lab.stop_phone(ext)
