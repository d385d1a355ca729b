"""The FreePBX-flavour lab: calls take FreePBX 17's own dial path (ext-local -> macro-exten-vm
-> macro-dial-one -> dialOne-with-exten Dial()), astcti only in the *_custom.conf files.

astcti must see these calls (one callid per call) and must not change what FreePBX does with
them: voicemail on no answer, call forward on busy, DND, calls while astcti is stopped.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from astcti.client import CtiClient
from astcti.pbx.ami import AmiLink
from astcti.pbx.linkconfig import AmiLinkConfig
from tests.lab import Lab
from tests.lab.ari import channels, force_clean, wait_clean, wait_for
from tests.lab.sipp import Phone, phone_process

pytestmark = pytest.mark.lab


@pytest.fixture
def pbx(freepbx_lab: Lab) -> Iterator[Lab]:
    """The FreePBX-flavour lab, left as found: no channel or bridge, no phone, no AstDB
    forward/DND, no voicemail message."""
    force_clean(freepbx_lab)
    try:
        yield freepbx_lab
        wait_clean(freepbx_lab)
    finally:
        for ext in list(freepbx_lab.phones):
            freepbx_lab.stop_phone(ext)
        for key in ("CFB 102", "CFU 104", "DND 101"):
            freepbx_lab.rx(f"database del {key}")
        shutil.rmtree(_mailbox(freepbx_lab, "101"), ignore_errors=True)
        force_clean(freepbx_lab)


def _mailbox(lab: Lab, ext: str) -> Path:
    return Path(lab.config.chroot) / f"var/spool/asterisk/voicemail/default/{ext}/INBOX"


@asynccontextmanager
async def _client(lab: Lab, *extensions: str) -> AsyncIterator[CtiClient]:
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    try:
        for ext in extensions:
            await client.request("startmonitor", extension=ext)
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def _dialplan_trace(lab: Lab) -> AsyncIterator[list[dict]]:
    """Every dialplan step Asterisk runs (AMI Newexten), seen as FreePBX's own `admin` manager
    user: what FreePBX did with a call, independent of astcti."""
    c = lab.config
    ami = AmiLink(AmiLinkConfig("freepbx-admin", "127.0.0.1", c.ami_port, "admin",
                                c.freepbx_secret), heartbeat=5)
    steps: list[dict] = []
    ami.on("Newexten", lambda _l, e: steps.append(e))
    ami.start()
    try:
        assert await ami.wait_up(10), ami.last_error
        yield steps
    finally:
        await ami.stop()


def _ran(steps: list[dict], app: str, data_prefix: str = "") -> list[dict]:
    return [s for s in steps if s.get("Application") == app
            and str(s.get("AppData", "")).startswith(data_prefix)]


async def _wait(proc, timeout: float = 60) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


async def test_freepbx_dial_path_is_monitored_with_one_callid(pbx: Lab) -> None:
    pbx.start_phone("101", Phone(answer_after_ms=800))
    async with _client(pbx, "101") as client, _dialplan_trace(pbx) as steps:
        caller = pbx.call("101", talk_ms=2500)
        delivered = await client.expect("delivered", extension="101")
        assert delivered["calling"] == "0912345678" and delivered["called"] == "101"
        established = await client.expect("established", extension="101")
        # the customer's channel waits in FreePBX's Dial(), in dialOne-with-exten
        trunk = wait_for(lambda: [c for c in channels(pbx) if c["name"].startswith(
            "PJSIP/trunk-") and c["dialplan"]["app_name"] == "Dial"], what="customer in Dial")[0]
        assert trunk["dialplan"]["context"] == "dialOne-with-exten"
        assert trunk["dialplan"]["exten"] == "101"
        # the callid is the call's linkedid: the customer's channel, the first of the call
        assert delivered["callid"] == established["callid"] == trunk["id"]
        cleared = await client.expect("connectioncleared", extension="101")
        assert cleared["callid"] == delivered["callid"] and cleared["cause"] == "normal"
        assert await _wait(caller) == 0
        gosubs = [s["AppData"] for s in _ran(steps, "Gosub")]
        assert any(g.startswith("macro-exten-vm,s,1(101,101") for g in gosubs), gosubs
        assert any(g.startswith("macro-dial-one,s,1(") for g in gosubs), gosubs
        dials = [s["AppData"] for s in _ran(steps, "Dial")]
        assert any(d.endswith(",HhtrIb(func-apply-sipheaders^s^1)") for d in dials), dials
        invite = pbx.phones["101"].received("INVITE")[0]
        assert "0912345678" in invite.split("\nFrom:", 1)[1].split("\n", 1)[0]


async def test_no_answer_goes_to_voicemail(pbx: Lab) -> None:
    pbx.start_phone("101", Phone(answer_after_ms=None))
    async with _client(pbx, "101") as client, _dialplan_trace(pbx) as steps:
        caller = pbx.call("101", talk_ms=10000, audio=True)  # greeting, beep, message
        delivered = await client.expect("delivered", extension="101")
        cleared = await client.expect("connectioncleared", extension="101", timeout=30)
        assert cleared["callid"] == delivered["callid"]
        assert await _wait(caller) == 0
        assert _ran(steps, "VoiceMail", "101@default,su"), "unavailable greeting not played"
    message = wait_for(lambda: sorted(_mailbox(pbx, "101").glob("msg*.txt")),
                       what="voicemail message")
    text = message[0].read_text()
    assert "callerid=\"0912345678\" <0912345678>" in text and "origmailbox=101" in text


async def test_busy_forwards_to_the_busy_destination(pbx: Lab) -> None:
    pbx.rx("database put CFB 102 103")
    pbx.start_phone("102", Phone(reject=486))
    pbx.start_phone("103", Phone(answer_after_ms=500))
    async with _client(pbx, "102", "103") as client:
        caller = pbx.call("102", talk_ms=2000)
        established = await client.expect("established", extension="103")
        assert established["calling"] == "0912345678"
        assert await _wait(caller) == 0
    assert pbx.phones["102"].received("INVITE") and pbx.phones["103"].received("INVITE")


async def test_dnd_sends_callers_to_the_busy_greeting(pbx: Lab) -> None:
    pbx.rx("database put DND 101 YES")
    pbx.start_phone("101", Phone(answer_after_ms=300))
    async with _dialplan_trace(pbx) as steps:
        caller = pbx.call("101", talk_ms=10000, audio=True)
        assert await _wait(caller) == 0
        assert _ran(steps, "VoiceMail", "101@default,sb"), "busy greeting not played"
    assert not pbx.phones["101"].received("INVITE")
    wait_for(lambda: sorted(_mailbox(pbx, "101").glob("msg*.txt")), what="voicemail message")


async def test_calls_ring_and_end_as_without_astcti_while_it_is_stopped(pbx: Lab) -> None:
    await asyncio.to_thread(pbx.stop_astcti)
    try:
        pbx.start_phone("101", Phone(answer_after_ms=500, hangup_after_ms=1500))
        async with _dialplan_trace(pbx) as steps:
            caller = pbx.call("101", talk_ms=5000)
            assert await _wait(caller) == 0
            assert _ran(steps, "Dial", "PJSIP/101")
            assert not _ran(steps, "Stasis")
        invite = pbx.phones["101"].received("INVITE")
        assert len(invite) == 1 and pbx.phones["101"].received("BYE") == []  # the phone hung up
    finally:
        await asyncio.to_thread(pbx.start_astcti)


async def test_outbound_call_takes_freepbx_route_and_is_monitored(pbx: Lab) -> None:
    c = pbx.config
    outside = phone_process("outside", c.trunk_port, Phone(answer_after_ms=300,
                                                           hangup_after_ms=1500),
                            pbx.workdir, c.sip_port, media_port=pbx.media_port(c.trunk_port))
    outside.start()
    try:
        async with _client(pbx, "101") as client, _dialplan_trace(pbx) as steps:
            dialer = pbx.dial_from("101", "95550001", talk_ms=5000)
            originated = await client.expect("originated", extension="101")
            assert originated["called"] == "95550001"
            established = await client.expect("established", extension="101")
            cleared = await client.expect("connectioncleared", extension="101")
            assert originated["callid"] == established["callid"] == cleared["callid"]
            assert await _wait(dialer) == 0
            assert _ran(steps, "Gosub", "macro-dialout-trunk,s,1(1,5550001")
            assert _ran(steps, "Dial", "PJSIP/5550001@trunk,300,Ttb(func-apply-sipheaders^s^1)")
        invite = outside.received("INVITE")[0]
        assert invite.startswith("INVITE sip:5550001@")
        sender = invite.split("\nFrom:", 1)[1].split("\n", 1)[0]
        assert '"Agent 101"' in sender and "<sip:101@" in sender  # AMPUSER caller id
    finally:
        outside.stop()


@asynccontextmanager
async def _without_channelvars(lab: Lab) -> AsyncIterator[None]:
    """ari.conf without `channelvars` (an admin who cannot set it): Asterisk's snapshots carry
    no linkedid nor user data; astcti, restarted, must read them itself."""
    custom = Path(lab.config.chroot) / "etc/asterisk/ari_general_custom.conf"
    original = custom.read_text()
    custom.write_text("".join(line for line in original.splitlines(keepends=True)
                              if not line.startswith("channelvars")))
    lab.rx("module reload res_ari.so")
    await asyncio.to_thread(lab.stop_astcti)
    await asyncio.to_thread(lab.start_astcti)
    try:
        yield
    finally:
        custom.write_text(original)
        lab.rx("module reload res_ari.so")
        await asyncio.to_thread(lab.stop_astcti)
        await asyncio.to_thread(lab.start_astcti)


@pytest.mark.parametrize("channelvars", [True, False], ids=["channelvars", "no-channelvars"])
async def test_queue_call_to_a_freepbx_member_carries_queue_callid_and_user_data(
        pbx: Lab, channelvars: bool) -> None:
    """acdlogin adds the agent in FreePBX's form (Local/<ext>@from-queue/n); a customer who
    went through the IVR (user data) and queue 600 reaches the agent through FreePBX's dial
    path with the queue as lastredirection, one callid (the customer's linkedid) and the data,
    with or without ari.conf channelvars."""
    c = pbx.config
    member = "Local/103@from-queue/n"
    async with (_without_channelvars(pbx) if not channelvars else _nothing()):
        pbx.start_phone("103", Phone(answer_after_ms=800))
        async with _client(pbx, "103") as client:
            try:
                await client.request("acdlogin", extension="103", agentid="7103",
                                     groups=c.queue)
                await client.expect("agentloggedon", agentid="7103")
                members = pbx.rx(f"queue show {c.queue}")
                assert f"({member} from hint:103@ext-local)" in members
                await client.request("acdsetstate", extension="103", agentid="7103",
                                     state="ready")
                await client.expect("agentready")
                caller = pbx.call(c.ivr_number, talk_ms=2000)
                delivered = await client.expect("delivered", extension="103", timeout=30)
                trunk = wait_for(lambda: [ch for ch in channels(pbx)
                                          if ch["name"].startswith("PJSIP/trunk-")],
                                 what="customer channel")[0]
                assert delivered["callid"] == trunk["id"]
                assert delivered["lastredirection"] == c.queue
                assert delivered["calling"] == "0912345678"
                assert delivered["userdata"] == {"account": "4711", "ivr": "billing"}
                established = await client.expect("established", extension="103")
                assert established["callid"] == delivered["callid"]
                assert established["lastredirection"] == c.queue
                await client.expect("connectioncleared", extension="103")
                assert await _wait(caller) == 0
            finally:
                await client.request("acdlogout", extension="103", agentid="7103", check=False)
                pbx.rx(f"queue remove member {member} from {c.queue}")


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
