"""Raw TCP transport (`astctiapi`, the seed's "ActiveX" port): newline-delimited JSON.

One JSON request per line in, one JSON response or event per line out: the same envelope,
requests and events as the WebSocket, handled by the same `Dispatcher`. Guards: a line is at most
MAX_REQUEST_BYTES; a started line must end within LINE_TIMEOUT seconds (slowloris); a connection
must log in within LOGIN_TIMEOUT seconds (unless the listener is `auth=none`). Optional TLS.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from astcti.api.auth import address_identity
from astcti.api.dispatch import Dispatcher
from astcti.api.session import Session
from astcti.api.outbox import Outbox
from astcti.api.protocol import MAX_REQUEST_BYTES, response
from astcti.wire import Frame, dumpb

log = logging.getLogger(__name__)

LINE_TIMEOUT = 10.0  # seconds from a line's first byte to its newline
LOGIN_TIMEOUT = 30.0  # seconds from connect to a successful login
READ_CHUNK = 16 * 1024


def _line(reply: dict) -> bytes:
    return dumpb(reply) + b"\n"


def _line_of(frame: Frame) -> bytes:
    return frame.line


class TcpServer:
    """One `astctiapi` listener: the asyncio server and its open connections."""

    def __init__(self, dispatcher: Dispatcher, *, auth_required: bool,
                 admit: Callable[[str], bool], name: str) -> None:
        self.dispatcher = dispatcher
        self.auth_required = auth_required
        self.admit = admit
        self.name = name
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str | None, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.server = await asyncio.start_server(self._connected, host, port, ssl=ssl_context,
                                                 reuse_address=True, limit=MAX_REQUEST_BYTES)

    async def stop(self) -> None:
        """Stop listening and close every connection of this listener (and only those)."""
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=5)
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 5)
            except TimeoutError:
                pass

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self.connections.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else str(peername or "?")
        if not self.admit(peer):
            writer.write(_line(response("", "address not allowed")))
            try:
                await asyncio.wait_for(writer.drain(), 2)
            except (TimeoutError, ConnectionError):
                pass
            return

        closing = asyncio.Event()

        async def overflow(reason: str) -> None:
            closing.set()
            writer.close()

        outbox = Outbox(writer.transport, _line_of, overflow, f"tcp {peer}")
        session = Session("tcp", peer, outbox.put, outbox.put_many)
        if not self.auth_required:  # known by its address (the ipextnmap seats it)
            session.identity = address_identity(self.dispatcher.services.seating, peer)
        log.info("%s: tcp client connected from %s", self.name, peer)
        reason = "closed by client"
        try:
            reason = await self._read_loop(reader, session, outbox, closing)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self.dispatcher.closed(session)
            outbox.close()
            await _drain(writer)
            log.info("%s: tcp client %s disconnected (%s)", self.name, peer, reason)

    async def _read_loop(self, reader: asyncio.StreamReader, session: Session, outbox: Outbox,
                         closing: asyncio.Event) -> str:
        buffer = bytearray()
        login_deadline = time.monotonic() + LOGIN_TIMEOUT
        line_deadline: float | None = None
        while not closing.is_set():
            newline = buffer.find(b"\n")
            if newline >= 0:
                line = bytes(buffer[:newline]).strip()
                del buffer[:newline + 1]
                line_deadline = time.monotonic() + LINE_TIMEOUT if buffer else None
                if line:
                    reply, _status = await self.dispatcher.handle(session, line)
                    outbox.write(_line(reply))
                continue
            if len(buffer) > MAX_REQUEST_BYTES:
                outbox.write(_line(response("", f"request too large: a line is at most"
                                                f" {MAX_REQUEST_BYTES} bytes")))
                return "line too long"
            now = time.monotonic()
            if buffer:
                timeout = (line_deadline or now + LINE_TIMEOUT) - now
                why = (f"incomplete line: end each request with a newline within"
                       f" {LINE_TIMEOUT:g} s")
            elif session.identity is None:
                timeout = login_deadline - now
                why = f"login timeout: send a login request within {LOGIN_TIMEOUT:g} s"
            else:
                timeout, why = None, ""
            try:
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK),
                                               max(timeout, 0) if timeout is not None else None)
            except TimeoutError:
                outbox.write(_line(response("", why)))
                return why.split(":")[0]
            if not chunk:
                return "closed by client"
            if not buffer:
                line_deadline = time.monotonic() + LINE_TIMEOUT
            buffer += chunk
        return "client too slow"


async def _drain(writer: asyncio.StreamWriter, timeout: float = 2.0) -> None:
    """Give the socket a moment to take what is written (a last error line)."""
    try:
        await asyncio.wait_for(writer.drain(), timeout)
    except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
        pass
