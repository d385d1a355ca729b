"""Listeners on real sockets (no PBX needed): port in use, allow lists, validation."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from astcti.api.auth import Auth
from astcti.api.dispatch import Dispatcher, Services
from astcti.api.listeners import Listeners, allowed, parse_allow, validate
from astcti.cti.directory import Directory
from astcti.cti.hub import Hub
from astcti.cti.seating import Seating
from astcti.cti.tracker import Tracker
from astcti.errors import ConfigError
from astcti.store import Store
from astcti.store.store import ListenerRow
from tests.lab.harness import free_port


@pytest.fixture
def listeners(tmp_path: Path):
    store = Store.open(tmp_path / "s.db", create=True)
    store.set_user("agent", "pw")
    directory = Directory()
    services = Services(store, directory, Tracker(directory.resolve), Hub(), Auth(store))
    services.seating = Seating(store)
    yield Listeners(Dispatcher(services))
    store.close()


async def test_port_in_use_is_one_line_and_others_keep_running(listeners: Listeners) -> None:
    good, busy = free_port(), free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", busy))
    holder.listen()
    try:
        await listeners.open(ListenerRow(good, "127.0.0.1", "*", "astctiws"))
        with pytest.raises(ConfigError) as info:
            await listeners.open(ListenerRow(busy, "127.0.0.1", "*", "astctiws"))
        assert str(info.value) == (f"listener {busy} (astctiws) cannot open on 127.0.0.1: port in"
                                   " use: stop what holds it or choose another port")
        assert listeners.errors[busy] == str(info.value)
        async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{good}/") as ws:
            await ws.send_json({"id": "1", "request": "login", "username": "agent",
                                "password": "pw"})
            assert (await ws.receive_json())["result"] == "success"
    finally:
        holder.close()
        await listeners.close_all()


async def test_allow_list_refuses_with_403(listeners: Listeners) -> None:
    port = free_port()
    await listeners.open(ListenerRow(port, "127.0.0.1", "10.0.0.0/8", "astctiws"))
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 403
    finally:
        await listeners.close_all()


async def test_auth_none_needs_no_login_and_knows_clients_by_address(
        listeners: Listeners) -> None:
    port = free_port()
    await listeners.open(ListenerRow(port, "127.0.0.1", "127.0.0.0/8", "astctiws", "none"))
    seating = listeners.dispatcher.services.seating
    url = f"ws://127.0.0.1:{port}/"
    try:
        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            await ws.send_json({"id": 1, "request": "startmonitor", "extension": "101"})
            reply = await ws.receive_json()
            assert reply["result"] == "error" and reply["id"] == 1
            assert reply["error"] == (
                "not allowed: user address 127.0.0.1 may not act on extension 101: address"
                " 127.0.0.1 has no extension: an administrator seats it with astcti-shell"
                " `add ipextnmap 127.0.0.1 EXT` (or log in)")
            seating.map("127.0.0.1", "101")  # applies to the open connection at once
            await ws.send_json({"id": 2, "request": "myextension"})
            assert (await ws.receive_json())["extension"] == "101"
            await ws.send_json({"id": 3, "request": "startmonitor", "extension": "101"})
            reply = await ws.receive_json()
            assert reply["error"].startswith("unknown extension 101")  # past login and seat
            await ws.send_json({"id": 4, "request": "startmonitor", "extension": "102"})
            assert (await ws.receive_json())["error"] == (
                "not allowed: user address 127.0.0.1 may not act on extension 102: address"
                " 127.0.0.1 sits at extension 101 (log in to act on others)")
        # another loopback address is another seat
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as s, s.ws_connect(url) as ws:
            await ws.send_json({"id": 5, "request": "myextension"})
            reply = await ws.receive_json()
            assert reply["result"] == "error" and "add ipextnmap 127.0.0.2 EXT" in reply["error"]
    finally:
        await listeners.close_all()


def test_validation_and_allow_parsing() -> None:
    with pytest.raises(ConfigError, match="unknown protocol"):
        validate(ListenerRow(9001, "127.0.0.1", "*", "telnet"))
    with pytest.raises(ConfigError, match="not between 1 and 65535"):
        validate(ListenerRow(70000, "127.0.0.1", "*", "astctiws"))
    with pytest.raises(ConfigError, match="is not an address or CIDR"):
        parse_allow("10.0.0.0/8, nonsense")
    nets = parse_allow("10.0.0.0/8,192.168.1.5")
    assert allowed(nets, "10.1.2.3") and allowed(nets, "192.168.1.5")
    assert not allowed(nets, "127.0.0.1") and allowed(None, "1.2.3.4")
    assert allowed(parse_allow("127.0.0.0/8"), "::ffff:127.0.0.1")
