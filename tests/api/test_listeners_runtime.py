"""Listeners opened and closed at run time, without disturbing the other listeners' clients."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from astcti.client import CtiClient, CtiError
from astcti.errors import ConfigError
from astcti.store.store import ListenerRow
from tests.api.conftest import LocalDaemon, free_port


async def _alive(cti: CtiClient) -> None:
    """The connection still answers requests."""
    with pytest.raises(CtiError, match="not monitored by this connection"):
        await cti.request("stopmonitor", extension="101")


async def test_add_and_remove_a_listener_while_others_keep_their_clients(
        local_daemon: LocalDaemon) -> None:
    d = local_daemon
    ws = await CtiClient.websocket(f"ws://127.0.0.1:{d.ports['astctiws']}/", d.user, d.password)
    tcp = await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], d.user, d.password)
    try:
        port = free_port()
        # what `add tcp PORT 127.0.0.1 * custom astctiws` does: a store row, then a reload
        d.daemon.store.add_listener(ListenerRow(port, "127.0.0.1", "*", "astctiws", "token"))
        assert await d.daemon.reload_listeners() == {}
        fresh = await CtiClient.websocket(f"ws://127.0.0.1:{port}/", d.user, d.password)
        await _alive(fresh)
        await _alive(ws)
        await _alive(tcp)
        # a changed row reopens that listener only: its own clients go, the others stay
        d.daemon.store.remove_listener(port)
        d.daemon.store.add_listener(ListenerRow(port, "127.0.0.1", "*", "astctiapi", "token"))
        assert await d.daemon.reload_listeners() == {}
        await asyncio.wait_for(fresh.closed.wait(), 10)
        await fresh.close()
        fresh = await CtiClient.tcp("127.0.0.1", port, d.user, d.password)
        await _alive(fresh)
        d.daemon.store.remove_listener(port)
        await d.daemon.reload_listeners()
        await asyncio.wait_for(fresh.closed.wait(), 10)
        await fresh.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        await _alive(ws)
        await _alive(tcp)
        assert not ws.closed.is_set() and not tcp.closed.is_set()
    finally:
        await ws.close()
        await tcp.close()


async def test_port_in_use_is_a_clear_error_and_others_stay(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ConfigError) as caught:
            await d.daemon.listeners.open(ListenerRow(port, "127.0.0.1", "*", "astctirest"))
        assert str(caught.value) == (f"listener {port} (astctirest) cannot open on 127.0.0.1:"
                                     " port in use: stop what holds it or choose another port")
        assert d.daemon.listeners.errors[port] == str(caught.value)
        assert set(d.daemon.listeners.running) == set(d.ports.values())
        async with await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], d.user,
                                       d.password) as cti:
            await _alive(cti)
    finally:
        holder.close()


async def test_allow_list_refuses_with_a_logged_reason(local_daemon: LocalDaemon,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    d = local_daemon
    caplog.set_level(logging.WARNING, logger="astcti.api.listeners")
    rest, tcp = free_port(), free_port()
    await d.daemon.listeners.open(ListenerRow(rest, "127.0.0.1", "10.0.0.0/8", "astctirest"))
    await d.daemon.listeners.open(ListenerRow(tcp, "127.0.0.1", "10.0.0.0/8,192.168.0.0/16",
                                              "astctiapi"))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{rest}/api/v1/requests") as resp:
            assert resp.status == 403
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
    line = await asyncio.wait_for(reader.readline(), 5)
    assert b"address not allowed" in line
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert f"listener {rest}: refused 127.0.0.1 (not in allow 10.0.0.0/8)" in refusals
    assert f"listener {tcp}: refused 127.0.0.1 (not in allow 10.0.0.0/8,192.168.0.0/16)" \
        in refusals


async def test_bad_rows_are_refused_with_words(local_daemon: LocalDaemon,
                                               caplog: pytest.LogCaptureFixture) -> None:
    listeners = local_daemon.daemon.listeners
    with pytest.raises(ConfigError, match="unknown protocol 'http'"):
        await listeners.open(ListenerRow(free_port(), "127.0.0.1", "*", "http"))
    with pytest.raises(ConfigError, match="allow list: 'nonsense' is not an address or CIDR"):
        await listeners.open(ListenerRow(free_port(), "127.0.0.1", "nonsense", "astctiapi"))
    caplog.set_level(logging.WARNING, logger="astcti.api.listeners")
    port = free_port()
    await listeners.open(ListenerRow(port, "0.0.0.0", "127.0.0.1", "astctirest", "none"))
    assert any("has auth=none on 0.0.0.0" in r.getMessage() for r in caplog.records)
    await listeners.close(port)
