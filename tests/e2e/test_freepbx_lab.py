"""The FreePBX-flavour lab: calls take FreePBX 17's own dial path (ext-local -> macro-exten-vm
-> macro-dial-one -> dialOne-with-exten Dial()), astcti only in the *_custom.conf files.

astcti must see these calls (one callid per call) and must not change what FreePBX does with
them: voicemail on no answer, call forward on busy, DND, calls while astcti is stopped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import urllib.error
import urllib.request
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


def _ari_info(lab: Lab, password: str) -> int:
    """docs/freepbx.md step 7's `curl -su astcti http://127.0.0.1:8088/ari/asterisk/info`."""
    c = lab.config
    req = urllib.request.Request(f"{c.ari_url}/ari/asterisk/info")
    token = base64.b64encode(f"{c.ari_user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert "system" in json.loads(resp.read())
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_the_step_by_step_checks_answer_as_the_doc_says(pbx: Lab) -> None:
    """docs/freepbx.md steps 7 and 9, run against the lab the doc's blocks configured: ARI
    answers the astcti user (401 for another password), the AMI user has exactly the rights and
    ACL the doc lists, `show links` lists both links up."""
    from tests.admin.conftest import run_shell

    c = pbx.config
    assert _ari_info(pbx, c.ari_password) == 200
    assert _ari_info(pbx, c.ari_password + "x") == 401
    user = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                                                 pbx.rx(f"manager show user {c.ami_user}")
                                                 .splitlines()) if v}
    assert (user["read perm"], user["write perm"]) == ("agent", "call"), user
    doc = Path(__file__).resolve().parents[2].joinpath("docs", "freepbx.md").read_text()
    assert "`read perm: agent` and `write perm: call`" in doc
    acl = pbx.rx(f"manager show user {c.ami_user}").split("ACL: (unnamed)", 1)[1]
    assert "deny - 0.0.0.0/0.0.0.0" in acl and "allow - 127.0.0.1/255.255.255.255" in acl
    links = (await asyncio.to_thread(run_shell, "--socket", c.admin_socket, "-c",
                                     "show links")).stdout
    rows = {line.split()[0]: line for line in links.splitlines() if line.startswith("acti_")}
    assert " up " in rows["acti_tlink_01"] and " up " in rows["acti_amilink_01"], links
    assert f"127.0.0.1:{c.ami_port}" in rows["acti_amilink_01"], links


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


def _kind(channel: str) -> str:
    """A channel's name without its sequence number: `PJSIP/trunk-0000001a` -> `PJSIP/trunk`,
    `Local/103@from-queue-00000005;2` -> `Local/103@from-queue;2` (the same in every run)."""
    base, sep, half = channel.rpartition(";")
    if not sep:
        base, half = channel, ""
    return re.sub(r"-[0-9a-f]{8}$", "", base) + (f";{half}" if half else "")


def _path(steps: list[dict]) -> dict[str, list[tuple[str, str, str, str]]]:
    """What the dialplan did with the customer's call (the channels of its linkedid; not, say,
    astcti's own helper channels), per channel: (context, exten, priority, app) steps."""
    linkedid = next(s["Linkedid"] for s in steps if s["Channel"].startswith("PJSIP/trunk-"))
    path: dict[str, list[tuple[str, str, str, str]]] = {}
    for s in (s for s in steps if s["Linkedid"] == linkedid):
        path.setdefault(_kind(s["Channel"]), []).append(
            (s["Context"], s["Extension"], str(s["Priority"]), s["Application"]))
    return path


def _apps(steps: list[tuple[str, str, str, str]]) -> set[tuple[str, str, str]]:
    return {(context, exten, app) for context, exten, _priority, app in steps}


@asynccontextmanager
async def _call_trace(lab: Lab) -> AsyncIterator[tuple[list[dict], list[str]]]:
    """Dialplan steps and queue events (AgentCalled, AgentConnect, AgentComplete...) seen as
    FreePBX's `admin` manager user; on leaving, waits until Asterisk is clean and every event
    of the call has arrived (a Ping answered after them on the same connection)."""
    c = lab.config
    ami = AmiLink(AmiLinkConfig("freepbx-admin", "127.0.0.1", c.ami_port, "admin",
                                c.freepbx_secret), heartbeat=5)
    steps: list[dict] = []
    queue: list[str] = []
    ami.on("Newexten", lambda _l, e: steps.append(e))
    ami.on("Agent*", lambda _l, e: queue.append(str(e.get("Event"))))
    ami.start()
    try:
        assert await ami.wait_up(10), ami.last_error
        yield steps, queue
        await asyncio.to_thread(wait_clean, lab)
        await ami.action("Ping")
    finally:
        await ami.stop()


async def _direct_and_queue_calls(lab: Lab) -> dict[str, tuple]:
    """A customer calls 101 (answers, hangs up), then the IVR and queue 600 whose member is
    103 in FreePBX's form (answers, hangs up): per call, what FreePBX did and what the phone
    and the customer saw."""
    seen: dict[str, tuple] = {}
    for name, ext, number in (("direct", "101", "101"), ("queue", "103", lab.config.ivr_number)):
        lab.start_phone(ext, Phone(answer_after_ms=500, hangup_after_ms=1500))
        async with _call_trace(lab) as (steps, queue):
            caller = lab.call(number, talk_ms=8000)
            status = await _wait(caller)
        phone = lab.phones[ext]
        seen[name] = (_path(steps), queue, status, len(phone.received("INVITE")),
                      len(phone.received("BYE")))
        lab.stop_phone(ext)
    return seen


async def test_calls_ring_and_end_as_without_astcti_while_it_is_stopped(pbx: Lab) -> None:
    """The same calls, astcti watching (not asked to control) and astcti stopped: FreePBX runs
    the same dialplan steps on every channel, the queue offers and connects the same way, the
    phone and the customer see the same call. Nothing of astcti is in the path of a call
    nobody asked to control, so astcti's absence changes nothing."""
    c = pbx.config
    member = "Local/103@from-queue/n"
    async with _client(pbx, "101", "103") as client:
        try:
            await client.request("acdlogin", extension="103", agentid="7103", groups=c.queue)
            await client.request("acdsetstate", extension="103", agentid="7103", state="ready")
            await client.expect("agentready")
            watched = await _direct_and_queue_calls(pbx)
        except BaseException:
            pbx.rx(f"queue remove member {member} from {c.queue}")
            raise
    await asyncio.to_thread(pbx.stop_astcti)
    try:
        assert f"({member} from hint:103@ext-local)" in pbx.rx(f"queue show {c.queue}")
        stopped = await _direct_and_queue_calls(pbx)
    finally:
        pbx.rx(f"queue remove member {member} from {c.queue}")
        await asyncio.to_thread(pbx.start_astcti)
    for name in ("direct", "queue"):
        path, queue, status, invites, byes = stopped[name]
        assert (status, invites, byes) == (0, 1, 0), name  # answered once, the phone hung up
        assert not [s for steps in path.values() for s in steps if s[3] == "Stasis"], name
        assert stopped[name] == watched[name], name
    direct, queue = stopped["direct"][0], stopped["queue"][0]
    assert ("dialOne-with-exten", "101", "Dial") in _apps(direct["PJSIP/trunk"]), direct
    assert ("ext-queues", "600", "Queue") in _apps(queue["PJSIP/trunk"]), queue
    assert ("dialOne-with-exten", "103", "Dial") in _apps(queue["Local/103@from-queue;2"]), queue
    assert stopped["queue"][1][:2] == ["AgentCalled", "AgentConnect"], stopped["queue"][1]


async def test_outbound_call_takes_freepbx_route_and_is_monitored(pbx: Lab) -> None:
    c = pbx.config
    outside = phone_process("outside", c.trunk_port, Phone(answer_after_ms=300,
                                                           hangup_after_ms=1500),
                            pbx.workdir, c.sip_port, media_port=pbx.media_port(c.trunk_port))
    outside.listen(c.trunk_port)
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
