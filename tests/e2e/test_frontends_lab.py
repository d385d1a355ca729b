"""Every front end against the real lab: a real SIPp call seen over WebSocket, TCP and REST
(SSE), listeners opened in the running daemon, and the CRM click-to-call URL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from astcti.client import CtiClient, CtiError
from astcti.store import Store
from astcti.store.store import ListenerRow
from tests.admin.conftest import one_error, run_shell
from tests.lab import Lab
from tests.lab.ari import channels
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

import astcti.api.requests  # noqa: F401  (registers the requests that exist on this branch)


Connect = Callable[[Lab], Awaitable[CtiClient]]


async def _ws(lab: Lab) -> CtiClient:
    c = lab.config
    return await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)


async def _tcp(lab: Lab) -> CtiClient:
    c = lab.config
    return await CtiClient.tcp("127.0.0.1", c.tcp_port, c.astcti_user, c.astcti_password)


async def _rest(lab: Lab) -> CtiClient:
    c = lab.config
    return await CtiClient.rest(f"http://127.0.0.1:{c.rest_port}", c.astcti_user,
                                c.astcti_password)


TRANSPORTS = {"ws": _ws, "tcp": _tcp, "rest": _rest}


async def _until(predicate: Callable[[], bool], timeout: float = 15.0,
                 state: Callable[[], str] | None = None) -> None:
    """`state`: what to report if the condition is not met (what the lab looked like then)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, \
            f"condition not met in time{': ' + state() if state else ''}"
        await asyncio.sleep(0.1)


async def test_a_real_inbound_call_is_seen_over_every_transport(lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=500))
    clients = {name: await connect(lab) for name, connect in TRANSPORTS.items()}
    try:
        for cti in clients.values():
            await cti.request("startmonitor", extension="101")
        caller = lab.call("101", talk_ms=1500)
        for name, cti in clients.items():
            delivered = await cti.expect("delivered", extension="101", timeout=20)
            established = await cti.expect("established", extension="101", timeout=20)
            cleared = await cti.expect("connectioncleared", extension="101", timeout=20)
            assert delivered["callid"] == established["callid"] == cleared["callid"], name
            assert delivered["calling"] == "0912345678", (name, delivered)
        callids = {cti.events[-1]["callid"] for cti in clients.values()}
        assert len(callids) == 1  # one call, the same id on every transport
        assert await asyncio.to_thread(caller.wait, 30) == 0
        assert lab.phones["101"].received("INVITE")
        snap = await clients["rest"].request("snapshot", extension="101")
        assert snap["calls"] == []
    finally:
        for cti in clients.values():
            await cti.close()
        lab.stop_phone("101")


def _shell(lab: Lab, command: str):
    return run_shell("--socket", lab.config.admin_socket, "-c", command)


def _ok(out) -> str:
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    return out.stdout


async def test_admin_shell_opens_every_protocol_while_other_clients_stay(lab: Lab) -> None:
    """`add tcp` / `remove tcp` in the running daemon for each protocol; a busy port and an
    allow list that refuses; the clients of the other listeners never notice."""
    c = lab.config
    o = c.port_offset
    tcp_port, rest_port, refusing, busy = 9013 + o, 9014 + o, 9015 + o, 9016 + o
    watcher = await _ws(lab)
    await watcher.request("startmonitor", extension="104")
    holder = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", busy)
    try:
        _ok(_shell(lab, f"add tcp {tcp_port} 127.0.0.1 * custom astctiapi"))
        _ok(_shell(lab, f"add tcp {rest_port} 127.0.0.1 * custom astctirest"))
        on_tcp = await CtiClient.tcp("127.0.0.1", tcp_port, c.astcti_user, c.astcti_password)
        await on_tcp.request("startmonitor", extension="104")
        async with await CtiClient.rest(f"http://127.0.0.1:{rest_port}", c.astcti_user,
                                        c.astcti_password) as on_rest:
            assert (await on_rest.request("snapshot", extension="104"))["calls"] == []

        line = one_error(_shell(lab, f"add tcp {busy} 127.0.0.1 * custom astctirest"))
        assert f"listener {busy} (astctirest) cannot open on 127.0.0.1: port in use" in line

        _ok(_shell(lab, f"add tcp {refusing} 127.0.0.1 10.0.0.0/8 custom astctiapi"))
        reader, writer = await asyncio.open_connection("127.0.0.1", refusing)
        assert b"address not allowed" in await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await _until(lambda: f"listener {refusing}: refused 127.0.0.1 (not in allow 10.0.0.0/8)"
                     in Path(c.astcti_log).read_text())

        _ok(_shell(lab, f"remove tcp {tcp_port}"))
        await asyncio.wait_for(on_tcp.closed.wait(), 10)  # its own clients go with it
        await on_tcp.close()
        # the first client, on another listener, kept its connection and its monitor
        assert not watcher.closed.is_set()
        lab.start_phone("104", Phone(answer_after_ms=300))
        caller = lab.call("104", talk_ms=500)
        await watcher.expect("established", extension="104", timeout=20)
        await asyncio.to_thread(caller.wait, 30)
    finally:
        holder.close()
        for port in (tcp_port, rest_port, refusing, busy):
            _shell(lab, f"remove tcp {port}")
        await watcher.close()
        lab.stop_phone("104")


def _hup(lab: Lab) -> None:
    os.kill(lab.config.pids["astcti"], signal.SIGHUP)


@pytest.fixture
async def extra_listener(lab: Lab) -> AsyncIterator[Callable[[ListenerRow], Awaitable[None]]]:
    """Add listener rows to the running daemon's store (then SIGHUP); removed afterwards."""
    added: list[int] = []

    async def add(row: ListenerRow) -> None:
        store = Store.open(lab.config.db)
        try:
            store.add_listener(row)
        finally:
            store.close()
        added.append(row.port)
        _hup(lab)
        await _until(lambda: f"listening: {row.protocol} on {row.bind}:{row.port}"
                     in Path(lab.config.astcti_log).read_text())

    yield add
    store = Store.open(lab.config.db)
    try:
        for port in added:
            store.remove_listener(port)
    finally:
        store.close()
    _hup(lab)


async def test_listener_added_and_removed_in_the_running_daemon(
        lab: Lab, extra_listener) -> None:
    port = 9010 + lab.config.port_offset
    async with await _tcp(lab) as other:
        await extra_listener(ListenerRow(port, "127.0.0.1", "*", "astctiws", "token"))
        async with await CtiClient.websocket(f"ws://127.0.0.1:{port}/", lab.config.astcti_user,
                                             lab.config.astcti_password) as fresh:
            assert (await fresh.request("startmonitor", extension="102"))["result"] == "success"
        store = Store.open(lab.config.db)
        try:
            store.remove_listener(port)
        finally:
            store.close()
        _hup(lab)
        await _until(lambda: f"closed listener {port}" in Path(lab.config.astcti_log).read_text())
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        # the other listener's client kept its connection all along
        assert not other.closed.is_set()
        assert (await other.request("startmonitor", extension="103"))["result"] == "success"


async def test_port_in_use_is_logged_and_the_daemon_keeps_serving(lab: Lab) -> None:
    port = lab.config.ws_port  # taken by the daemon's own WebSocket listener... on another row
    busy = 9011 + lab.config.port_offset
    holder = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", busy)
    try:
        store = Store.open(lab.config.db)
        try:
            store.add_listener(ListenerRow(busy, "127.0.0.1", "*", "astctirest", "token"))
        finally:
            store.close()
        _hup(lab)
        await _until(lambda: f"listener {busy} (astctirest) cannot open on 127.0.0.1: port in"
                     " use" in Path(lab.config.astcti_log).read_text())
        async with await CtiClient.websocket(f"ws://127.0.0.1:{port}/", lab.config.astcti_user,
                                             lab.config.astcti_password) as cti:
            await cti.request("snapshot", extension="101")
    finally:
        holder.close()
        store = Store.open(lab.config.db)
        try:
            store.remove_listener(busy)
        finally:
            store.close()
        _hup(lab)


async def test_crm_click_to_call_url_places_a_real_call(lab: Lab) -> None:
    """The CRM module's URL, unchanged, on an `auth=none` listener restricted by `allow`
    (opened with the admin shell, as an operator does)."""
    port = 9012 + lab.config.port_offset
    _ok(_shell(lab, f"add tcp {port} 127.0.0.1 127.0.0.1/32 custom astctirest auth=none"))
    _ok(_shell(lab, "add ipextnmap 127.0.0.1 101"))  # the CRM's PC sits at 101
    phone = lab.start_phone("101", Phone(answer_after_ms=None))  # rings: the INVITE is enough
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/makecall?extension=101"
                                "&destination=0112345678&payload=json&callto=true") as resp:
                body = await resp.json(content_type=None)
        assert body["result"] == "success", body
        await _until(lambda: bool(phone.received("INVITE")), timeout=20,
                     state=lambda: f"phone 101 alive={phone.alive()} ({phone.last_error()}),"
                                   f" Asterisk channels"
                                   f" {[(ch['name'], ch['state']) for ch in channels(lab)]}")
        async with aiohttp.ClientSession() as http:  # and the same legacy form hangs it up
            async with http.get(f"http://127.0.0.1:{port}/hangup?extension=101"
                                f"&callid={body['callid']}") as resp:
                assert (await resp.json(content_type=None))["result"] == "success"
    finally:
        lab.stop_phone("101")
        _shell(lab, f"remove tcp {port}")
        _shell(lab, "remove ipextnmap 127.0.0.1")


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_monitor_and_makecall_over_each_transport(lab: Lab, transport: str) -> None:
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=500))
    cti = await TRANSPORTS[transport](lab)
    try:
        await cti.request("startmonitor", extension="101")
        reply = await cti.request("makecall", extension="101", destination="102")
        assert reply["result"] == "success"
        established = await cti.expect("established", extension="101", timeout=30)
        assert established["callid"]
        assert lab.phones["101"].received("INVITE")
        await _until(lambda: bool(lab.phones["102"].received("INVITE")), timeout=20)
        with pytest.raises(CtiError, match="unknown extension 999"):
            await cti.request("makecall", extension="999", destination="102")
        await cti.request("hangup", extension="101", callid=established["callid"])
        await cti.expect("connectioncleared", extension="101", callid=established["callid"],
                         timeout=20)
    finally:
        await cti.close()
        lab.stop_phone("101")
        lab.stop_phone("102")


async def test_the_documented_tcp_example_client_works_as_written(lab: Lab, tmp_path) -> None:
    import re
    import subprocess
    import sys

    doc = (Path(__file__).resolve().parents[2] / "docs/frontends.md").read_text()
    code = re.search(r"<!-- tcp-example -->\n```python\n(.*?)```", doc, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 25
    script = tmp_path / "client.py"
    script.write_text(code)
    c = lab.config
    lab.start_phone("101", Phone(answer_after_ms=300))
    try:
        proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1", str(c.tcp_port),
                                 c.astcti_user, c.astcti_password, "101"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        first = [await asyncio.to_thread(proc.stdout.readline) for _ in range(2)]
        caller = lab.call("101", talk_ms=1000)  # the monitor is in place (both answers read)
        rest, _ = await asyncio.to_thread(proc.communicate, timeout=40)
        out = "".join(first) + rest
        assert proc.returncode == 0, out
        lines = out.splitlines()
        assert lines[:2] == ["response success  ", "response success  "], out
        assert any(line.startswith("event delivered ") for line in lines), out
        assert any(line.startswith("event established ") for line in lines), out
        assert lines[-1].startswith("event connectioncleared "), out
        await asyncio.to_thread(caller.wait, 30)
    finally:
        lab.stop_phone("101")


async def test_long_poll_delivers_the_events_of_a_real_call(lab: Lab) -> None:
    """A REST-only client without SSE: compat login, resource startmonitor, long-poll."""
    c = lab.config
    base = f"http://127.0.0.1:{c.rest_port}"
    lab.start_phone("102", Phone(answer_after_ms=300))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/login", params={"username": c.astcti_user,
                                                         "password": c.astcti_password}) as resp:
                token = (await resp.json())["token"]
            h = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{base}/api/v1/extensions/102/monitor", headers=h) as resp:
                assert resp.status == 200, await resp.text()
            caller = lab.call("102", talk_ms=1000)
            events: list[dict] = []
            last = 0
            callid = None  # this call's: the tail of an earlier test's call on 102 may come first

            def cleared() -> bool:
                return any(e["event"] == "connectioncleared" and e.get("callid") == callid
                           for e in events)

            while callid is None or not cleared():
                async with http.get(f"{base}/api/v1/events", params={"after": last, "wait": 20},
                                    headers=h) as resp:
                    batch = await resp.json()
                assert batch["events"], f"a 20 s long-poll ended without the call: {events}"
                events += batch["events"]
                last = batch["last"]
                callid = callid or next((e["callid"] for e in events
                                         if e["event"] == "delivered"), None)
            names = [e["event"] for e in events if e.get("callid") == callid]
            assert names.index("delivered") < names.index("established") < \
                names.index("connectioncleared"), names
            assert {e["extension"] for e in events} == {"102"}
            await asyncio.to_thread(caller.wait, 30)
    finally:
        lab.stop_phone("102")
