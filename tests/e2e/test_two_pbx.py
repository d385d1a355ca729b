"""Two Asterisks linked to one astcti (`acti_tlink_01` and `_02`), with real calls on each.

The lab's second Asterisk has agents 201-204 (ports SECOND_OFFSET above the first's); it is
linked the way an operator does it, through the admin console of the running daemon. Both
Asterisks have an endpoint 150: the same number on two PBXs, which astcti refuses to guess
about until it is pinned to one link.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from astcti.client import CtiClient, CtiError
from astcti.secrets import load_key
from astcti.store.store import Store
from tests.admin.conftest import run_shell
from tests.lab import Lab
from tests.lab.ari import force_clean
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

AGENT = Phone(answer_after_ms=300, auto_answer=True)
IVR_DATA = {"account": "4711", "ivr": "billing"}  # set by the lab dialplan on 601 (both PBXs)


def shell(lab: Lab, *commands: str) -> str:
    args = ["--socket", lab.config.admin_socket]
    for command in commands:
        args += ["-c", command]
    out = run_shell(*args)
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    return out.stdout


@pytest.fixture(scope="module")
def pbx2(lab: Lab) -> Iterator[Lab]:
    """The second Asterisk, linked as acti_tlink_02 with extensions 201-204 while the module
    runs; unlinked and stopped afterwards (the other tests see one PBX)."""
    second = lab.start_second_pbx()
    try:
        ari, ami = second.link_parameters(load_key(lab.config.key))
        out = shell(lab, f"update parameter acti_tlink_02 {ari}",
                    f"update parameter acti_amilink_02 {ami}",
                    *[f"add extension {e} PJSIP" for e in second.config.phones])
        assert "connected to Asterisk" in out, out
        yield second
    finally:
        configured = shell(lab, "show extensions")
        shell(lab, *[f"remove extension {e} --force" for e in [*second.config.phones, "150"]
                     if f"\n{e} " in "\n" + configured],
              'update parameter acti_amilink_02 ""', 'update parameter acti_tlink_02 ""')
        lab.stop_second_pbx()


@pytest.fixture
async def both(lab: Lab, pbx2: Lab) -> AsyncIterator[tuple[Lab, Lab]]:
    force_clean(lab)
    force_clean(pbx2)
    yield lab, pbx2
    for each in (lab, pbx2):
        for ext in list(each.phones):
            each.stop_phone(ext)
    force_clean(lab)
    force_clean(pbx2)


async def monitor(lab: Lab, *extensions: str) -> CtiClient:
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    for ext in extensions:
        for _ in range(100):  # a link that just (re)connected subscribes in a moment
            reply = await client.request("startmonitor", extension=ext, check=False)
            if reply["result"] == "success":
                break
            await asyncio.sleep(0.1)
        else:
            raise CtiError(reply)
    return client


async def seen(client: CtiClient, event: str, timeout: float = 30.0,
               **match: object) -> dict:
    """The first event so far or to come with this name and fields (any order)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for e in client.events:
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                return e
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no {event} {match} within {timeout} s")
        await asyncio.sleep(0.05)


async def call_sequence(client: CtiClient, ext: str, caller: str) -> str:
    """A whole inbound call on `ext` from `caller`; its callid."""
    delivered = await seen(client, "delivered", extension=ext, calling=caller)
    await seen(client, "established", extension=ext, callid=delivered["callid"])
    await seen(client, "connectioncleared", extension=ext, callid=delivered["callid"])
    return delivered["callid"]


async def test_monitoring_on_both_pbxs(both: tuple[Lab, Lab]) -> None:
    lab, pbx2 = both
    client = await monitor(lab, "101", "201")
    try:
        lab.start_phone("101", Phone(answer_after_ms=300))
        pbx2.start_phone("201", Phone(answer_after_ms=300))
        first = lab.call("101", caller="0911111111", talk_ms=1000)
        second = pbx2.call("201", caller="0922222222", talk_ms=1000)
        one = await call_sequence(client, "101", "0911111111")
        two = await call_sequence(client, "201", "0922222222")
        # each Asterisk numbers its calls; the second's systemname keeps the callids apart even
        # when both calls start in the same second (astcti logs an error for twin systemnames)
        assert one != two and two.startswith("pbx2-")
        assert await asyncio.to_thread(first.wait, 30) == 0
        assert await asyncio.to_thread(second.wait, 30) == 0
        # each PBX's events reached only the monitors of its own extension
        assert {e["extension"] for e in client.events if e.get("callid") == two} == {"201"}
        shown = shell(lab, "show extensions")
        assert any(line.split()[:3] == ["201", "PJSIP/201", "acti_tlink_02"]
                   for line in shown.splitlines()), shown
    finally:
        await client.close()


async def test_call_control_on_both_pbxs(both: tuple[Lab, Lab]) -> None:
    lab, pbx2 = both
    client = await monitor(lab, "101", "102", "201", "202")
    try:
        for pbx, (agent, far) in ((lab, ("101", "102")), (pbx2, ("201", "202"))):
            pbx.start_phone(agent, AGENT)
            pbx.start_phone(far, Phone(answer_after_ms=300))
            callid = (await client.request("makecall", extension=agent,
                                           destination=far))["callid"]
            await seen(client, "established", extension=far, callid=callid)
            await client.request("hold", extension=agent, callid=callid)
            await seen(client, "held", extension=agent, callid=callid)
            await client.request("retrieve", extension=agent, callid=callid)
            await seen(client, "retrieved", extension=agent, callid=callid)
            await client.request("hangup", extension=agent, callid=callid)
            await seen(client, "connectioncleared", extension=far, callid=callid)
        # a makecall is dialled by the agent's own PBX: 102 is on the other one, and this
        # lab's second Asterisk has no route to it
        reply = await client.request("makecall", extension="201", destination="102",
                                     check=False)
        assert reply["result"] != "success" and "not obtainable" in str(reply), reply
    finally:
        await client.close()


async def test_user_data_and_acd_on_both_pbxs(both: tuple[Lab, Lab]) -> None:
    lab, pbx2 = both
    client = await monitor(lab, "101", "201")
    agents = {"101": ("7101", lab), "201": ("7201", pbx2)}
    try:
        for ext, (agentid, pbx) in agents.items():
            pbx.start_phone(ext, Phone(answer_after_ms=300))
            await client.request("acdlogin", extension=ext, agentid=agentid, groups="support")
            await seen(client, "agentloggedon", agentid=agentid, groups=["support"])
            await client.request("acdsetstate", extension=ext, agentid=agentid, state="ready")
            await seen(client, "agentready", agentid=agentid)
            # the member is on that extension's own Asterisk, and only there
            assert f"Local/{ext}@astcti-agent/n" in pbx.rx("queue show support")
            other = pbx2 if pbx is lab else lab
            assert f"Local/{ext}@astcti-agent/n" not in other.rx("queue show support")
        for ext, (agentid, pbx) in agents.items():
            caller = pbx.call("601", caller=f"09{agentid}", talk_ms=1500)
            delivered = await seen(client, "delivered", extension=ext, calling=f"09{agentid}")
            assert delivered["lastredirection"] == "support"
            assert delivered["userdata"] == IVR_DATA
            reply = await client.request("userdata", extension=ext, callid=delivered["callid"],
                                         data={"crm": f"case-{ext}"})
            assert reply["userdata"] == {**IVR_DATA, "crm": f"case-{ext}"}
            cleared = await seen(client, "connectioncleared", extension=ext,
                                 callid=delivered["callid"])
            assert cleared["userdata"] == {**IVR_DATA, "crm": f"case-{ext}"}
            assert await asyncio.to_thread(caller.wait, 30) == 0
    finally:
        for ext, (agentid, pbx) in agents.items():
            await client.request("acdlogout", extension=ext, agentid=agentid, check=False)
        await client.close()


async def test_one_pbx_killed_only_its_extensions_go_down(both: tuple[Lab, Lab]) -> None:
    lab, pbx2 = both
    client = await monitor(lab, "101", "102", "201")
    lab.start_phone("101", Phone(answer_after_ms=300))
    pbx2.start_phone("201", Phone(answer_after_ms=300))
    long_call = lab.call("101", caller="0933333333", talk_ms=15000)
    lost_call = pbx2.call("201", caller="0944444444", talk_ms=60000)
    try:
        established = await seen(client, "established", extension="101", calling="0933333333")
        lost = await seen(client, "established", extension="201", calling="0944444444")
        await asyncio.to_thread(pbx2.stop_asterisk, True)  # kill -9 the second Asterisk
        down = await seen(client, "linkdown", extension="201")
        assert down["link"] == "acti_tlink_02" and down["reason"]
        refused = await client.request("makecall", extension="201", destination="202",
                                       check=False)
        assert refused["result"] != "success" and "acti_tlink_02 is down" in str(refused)
        # the first PBX carries on: its call is still up and new calls are seen as usual
        snap = await client.request("snapshot", extension="101")
        assert [c["callid"] for c in snap["calls"]] == [established["callid"]]
        lab.start_phone("102", Phone(answer_after_ms=300))
        short = lab.call("102", caller="0955555555", talk_ms=500,
                         local_port=lab.config.trunk_ports[2])
        delivered = await seen(client, "delivered", extension="102", calling="0955555555")
        await seen(client, "connectioncleared", extension="102", callid=delivered["callid"])
        assert await asyncio.to_thread(short.wait, 30) == 0
        # it comes back: its lost call is cleared by the resync, then linkup
        lost_call.stop()
        await asyncio.to_thread(pbx2.restart_asterisk)
        cleared = await seen(client, "connectioncleared", extension="201",
                             callid=lost["callid"], timeout=60)
        assert cleared["resync"] is True
        await seen(client, "linkup", extension="201", timeout=30)
        assert (await client.request("snapshot", extension="201"))["calls"] == []
        # the first PBX's call ended when its caller hung up, untouched by all this
        ended = await seen(client, "connectioncleared", extension="101",
                           callid=established["callid"], timeout=40)
        assert ended["resync"] is False
        assert await asyncio.to_thread(long_call.wait, 40) == 0
        assert not [e for e in client.events if e.get("event") in ("linkdown", "linkup")
                    and e["extension"] != "201"]
        # and the second PBX's extensions work again without a new startmonitor
        pbx2.start_phone("201", Phone(answer_after_ms=300))
        again = pbx2.call("201", caller="0966666666", talk_ms=500)
        delivered = await seen(client, "delivered", extension="201", calling="0966666666")
        await seen(client, "connectioncleared", extension="201", callid=delivered["callid"])
        assert await asyncio.to_thread(again.wait, 30) == 0
    finally:
        long_call.stop()
        lost_call.stop()
        await client.close()


async def test_same_number_on_both_pbxs_is_refused_until_pinned(
        both: tuple[Lab, Lab]) -> None:
    lab, pbx2 = both
    out = shell(lab, "add extension 150 PJSIP")
    assert "is on 2 Asterisks (acti_tlink_01, acti_tlink_02)" in out, out
    assert "pin extension 150" in out
    client = await CtiClient.websocket(lab.config.ws_url, lab.config.astcti_user,
                                       lab.config.astcti_password)
    try:
        reply = await client.request("startmonitor", extension="150", check=False)
        assert reply["result"] != "success"
        assert "will not guess" in str(reply) and "pin extension 150" in str(reply)
        out = shell(lab, "pin extension 150 acti_tlink_02")
        assert "served by acti_tlink_02" in out, out
        await client.request("startmonitor", extension="150")
        # a call to 150 on the second PBX is seen; one to 150 on the first is not
        lab.start_phone("150", Phone(answer_after_ms=300))
        pbx2.start_phone("150", Phone(answer_after_ms=300))
        on1 = lab.call("150", caller="0977777777", talk_ms=500)
        on2 = pbx2.call("150", caller="0988888888", talk_ms=500)
        await call_sequence(client, "150", "0988888888")
        assert await asyncio.to_thread(on1.wait, 30) == 0
        assert await asyncio.to_thread(on2.wait, 30) == 0
        await asyncio.sleep(0.5)
        assert not [e for e in client.events if e.get("calling") == "0977777777"]
        shown = shell(lab, "show extensions")
        line = next(l for l in shown.splitlines() if l.startswith("150 "))
        assert "acti_tlink_02" in line and "pinned" in line
    finally:
        await client.close()


def in_store(lab: Lab, change: Callable[[Store], object]) -> None:
    """Change the running daemon's store from outside it, as the Ansible role or an offline
    astcti-shell does (the daemon learns of it only from a reload)."""
    store = Store.open(lab.config.db)
    try:
        change(store)
    finally:
        store.close()


async def reload_daemon(lab: Lab, *lines: str, timeout: float = 30.0) -> None:
    """`systemctl reload astcti` (SIGHUP), then wait until the daemon logged these lines."""
    log = Path(lab.config.astcti_log)
    start = log.stat().st_size
    os.kill(lab.config.pids["astcti"], signal.SIGHUP)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with log.open("rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        if all(line in text for line in lines):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"reload: {lines} not logged within {timeout} s:\n{text}")
        await asyncio.sleep(0.1)


async def calls_on_150(lab: Lab, pbx2: Lab, client: CtiClient, served_by: Lab,
                       callers: tuple[str, str]) -> None:
    """A real call to 150 on each PBX at once: only the one on `served_by` is seen."""
    on1 = lab.call("150", caller=callers[0], talk_ms=500)
    on2 = pbx2.call("150", caller=callers[1], talk_ms=500)
    seen_caller, unseen = callers if served_by is lab else callers[::-1]
    await call_sequence(client, "150", seen_caller)
    assert await asyncio.to_thread(on1.wait, 30) == 0
    assert await asyncio.to_thread(on2.wait, 30) == 0
    await asyncio.sleep(0.5)
    assert not [e for e in client.events if e.get("calling") == unseen]


async def test_reload_applies_pins_written_into_the_store(both: tuple[Lab, Lab]) -> None:
    """A pin changed in the store (not through the running daemon's console) is applied by
    `systemctl reload astcti`: the extension moves to the newly pinned PBX without a restart,
    and its monitoring clients stay connected (linkdown, then linkup on the new link)."""
    lab, pbx2 = both

    def pin(link: str) -> Callable[[Store], object]:
        def change(store: Store) -> None:
            if "150" not in {e.number for e in store.extensions()}:
                store.add_extension("150", "PJSIP")
            assert store.pin_extension("150", link)
        return change

    in_store(lab, pin("acti_tlink_01"))
    await reload_daemon(lab, "reloading parameters, listeners, extensions and users")
    client = await monitor(lab, "150")
    try:
        assert (await client.request("snapshot", extension="150"))["result"] == "success"
        lab.start_phone("150", Phone(answer_after_ms=300))
        pbx2.start_phone("150", Phone(answer_after_ms=300))
        await calls_on_150(lab, pbx2, client, lab, ("0912121212", "0921212121"))

        in_store(lab, pin("acti_tlink_02"))
        await reload_daemon(lab, "extension 150 pinned to acti_tlink_02: served by acti_tlink_02")
        down = await seen(client, "linkdown", extension="150")
        assert down["link"] == "acti_tlink_01" and "acti_tlink_02" in down["reason"]
        await seen(client, "linkup", extension="150", link="acti_tlink_02")
        lab.start_phone("150", Phone(answer_after_ms=300))
        pbx2.start_phone("150", Phone(answer_after_ms=300))
        await calls_on_150(lab, pbx2, client, pbx2, ("0913131313", "0931313131"))
        shown = shell(lab, "show extensions")
        line = next(l for l in shown.splitlines() if l.startswith("150 "))
        assert "acti_tlink_02" in line and "pinned" in line
    finally:
        await client.close()


async def test_reload_applies_a_link_changed_in_the_store(both: tuple[Lab, Lab]) -> None:
    """An Asterisk link removed from and put back into the store is stopped and started by a
    reload; the other link and its clients are left alone."""
    lab, pbx2 = both
    value = {}

    def unlink(store: Store) -> None:
        value["ari"] = store.get_parameter("acti_tlink_02")
        store.set_parameter("acti_tlink_02", "")

    client = await monitor(lab, "101", "201")
    try:
        in_store(lab, unlink)
        assert value["ari"]
        await reload_daemon(lab, "reload: parameter acti_tlink_02: link stopped")
        down = await seen(client, "linkdown", extension="201")
        assert down["link"] == "acti_tlink_02"
        refused = await client.request("makecall", extension="201", destination="202",
                                       check=False)
        assert refused["result"] != "success"
        in_store(lab, lambda store: store.set_parameter("acti_tlink_02", value["ari"]))
        await reload_daemon(lab, "reload: parameter acti_tlink_02: link started: connected")
        await seen(client, "linkup", extension="201", link="acti_tlink_02")
        pbx2.start_phone("201", Phone(answer_after_ms=300))
        lab.start_phone("101", Phone(answer_after_ms=300))
        two = pbx2.call("201", caller="0914141414", talk_ms=500)
        one = lab.call("101", caller="0941414141", talk_ms=500)
        await call_sequence(client, "201", "0914141414")
        await call_sequence(client, "101", "0941414141")
        assert await asyncio.to_thread(two.wait, 30) == 0
        assert await asyncio.to_thread(one.wait, 30) == 0
        assert not [e for e in client.events if e.get("event") in ("linkdown", "linkup")
                    and e["extension"] != "201"]
    finally:
        await client.close()
