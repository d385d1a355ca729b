"""The ARI events websocket's opening, against a real TCP server that accepts and then says
nothing (an Asterisk whose HTTP server, or whose ARI for the app, is stuck): the link's words
name the silence and what to do, and no future is left failing unobserved (asyncio's "Future
exception was never retrieved")."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from astcti.pbx.ari import AriError, AriEventSocket
from astcti.pbx.linkconfig import parse_link
from astcti.secrets import encrypt, load_key


async def test_a_silent_asterisk_is_named_and_leaves_no_unobserved_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cipher = load_key(tmp_path / "k", create=True)
    config = parse_link("acti_tlink_01", f"127.0.0.1#{port}#astcti,u,{encrypt(cipher, 'pw')}",
                        cipher)
    monkeypatch.setattr(AriEventSocket, "CONNECT_TIMEOUT", 0.5)
    loop = asyncio.get_running_loop()
    unobserved: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: unobserved.append(context))
    try:
        socket = AriEventSocket(config, 5.0)
        message = ""
        try:
            await socket.open()
        except AriError as exc:
            message = exc.message  # (the exception's traceback would keep the socket alive)
        assert message == (f"acti_tlink_01: ARI at http://127.0.0.1:{port} took the connection"
                           " but did not open the events websocket of app 'astcti' within 0.5 s:"
                           " Asterisk's HTTP server or its ARI for this app is stuck"
                           " (asterisk/asterisk#2170 hangs an app whose websocket closed"
                           " during device-state changes); restart Asterisk")
        await asyncio.sleep(0.1)  # the aborted connection's callbacks run
        del socket
        gc.collect()
        assert unobserved == []
    finally:
        loop.set_exception_handler(None)
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
