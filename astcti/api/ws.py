"""WebSocket transport (`astctiws`): one JSON request or event per text frame.

A connection is one small asyncio protocol object (`WsConnection`): the protocol itself is in
`wsproto` (no I/O), events are written as frames prepared once for every client
(`astcti.wire.Frame.ws`), requests are handled in order by a task that exists only while a
request is being handled, and one sweeper per listener pings idle clients and drops dead ones.
An idle connected client costs a few KiB, not the ~15 KiB of a general-purpose HTTP
framework's WebSocket, and no task.

The upgrade may carry `Authorization: Bearer <token>` or `Basic` to log the session in; a
browser's upgrade from a foreign `Origin` is refused (403, api/listeners.py `Origins`); a
connection that has not logged in within LOGIN_TIMEOUT seconds is told so and closed (1008),
like raw TCP's.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from astcti import wsproto
from astcti.api.auth import address_identity
from astcti.api.dispatch import Dispatcher
from astcti.api.session import Session
from astcti.api.outbox import Outbox
from astcti.api.protocol import MAX_REQUEST_BYTES, RequestError, response
from astcti.wire import Frame, dumpb, ws_text_frame
from astcti.tasks import eager, watch

if TYPE_CHECKING:
    from astcti.api.listeners import Origins

log = logging.getLogger(__name__)

HEARTBEAT = 30.0  # ping a client silent this long; drop it if the pong is HEARTBEAT/2 late
HANDSHAKE_TIMEOUT = 15.0  # from connect to a complete upgrade request (slowloris)
LOGIN_TIMEOUT = 30.0  # from connect to a successful login (auth=token listeners)
SWEEP_EVERY = 5.0
PATHS = ("/", "/ws")
MAX_PENDING = 64  # requests read ahead of their handling before reading pauses


def _ws_bytes(frame: Frame) -> bytes:
    return frame.ws


class WsServer:
    """One `astctiws` listener: the asyncio server, its connections and their sweeper."""

    def __init__(self, dispatcher: Dispatcher, *, auth_required: bool,
                 admit: Callable[[str], bool], name: str, origins: Origins | None = None,
                 tls: bool = False) -> None:
        self.dispatcher = dispatcher
        self.auth_required = auth_required
        self.admit = admit
        self.name = name
        self.origins = origins
        self.scheme = "https" if tls else "http"  # what a browser calls this origin
        self.connections: set[WsConnection] = set()
        self.server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str | None, port: int,
                    ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: WsConnection(self), host, port,
                                               ssl=ssl_context, reuse_address=True)
        self._sweeper = watch(asyncio.create_task(self._sweep(), name=f"ws-sweep-{self.name}"),
                             self.name)

    async def stop(self) -> None:
        """Stop listening; tell every client (close 1001) and close its connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close(wsproto.GOING_AWAY, "server shutting down")
        deadline = time.monotonic() + 2.0
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 5)
            except TimeoutError:
                pass

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check(now)


class WsConnection(asyncio.Protocol):
    """One client: handshake, then frames; the hub's subscriber through its Session."""

    __slots__ = ("server", "transport", "peer", "head", "parser", "session", "outbox",
                 "pending", "worker", "seen", "ping_sent", "opened", "closing")

    def __init__(self, server: WsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.head: bytearray | None = bytearray()  # the upgrade request until it is complete
        self.parser: wsproto.FrameParser | None = None
        self.session: Session | None = None
        self.outbox: Outbox | None = None
        self.pending: list[str] = []  # (a deque would cost 600 bytes per idle client)
        self.worker: asyncio.Task[None] | None = None
        self.seen = time.monotonic()
        self.ping_sent = 0.0
        self.opened = self.seen
        self.closing = False

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is no subclass)
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else str(peername or "?")
        if not self.server.admit(self.peer):
            self._refuse(wsproto.HandshakeError(403, "Forbidden", "address not allowed"))
            return
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        self.ping_sent = 0.0
        if self.head is not None:
            self._handshake_data(data)
            return
        if self.parser is None or self.closing:
            return
        try:
            events = self.parser.feed(data)
        except wsproto.ProtocolError as exc:
            log.info("ws %s: %s: closing", self.peer, exc.reason)
            self.close(exc.code, exc.reason)
            return
        for event in events:
            if isinstance(event, wsproto.Text):
                self._request(event.data)
            elif isinstance(event, wsproto.Ping):
                self._write(wsproto.frame(wsproto.OP_PONG, event.data))
            elif isinstance(event, wsproto.Close):
                self.close(wsproto.NORMAL if event.code == 1005 else event.code)
                return
            elif isinstance(event, wsproto.Binary):
                self._reply(response("", "binary frames are not supported: send JSON text"
                                         " frames"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.outbox is not None:
            self.outbox.close()
        if self.worker is not None:
            self.worker.cancel()
        if self.session is not None:
            self.server.dispatcher.closed(self.session)
            log.info("ws client %s disconnected", self.peer)

    # -- handshake ------------------------------------------------------------------------------
    def _handshake_data(self, data: bytes) -> None:
        assert self.head is not None
        self.head += data
        try:
            end = wsproto.head_end(self.head)
            if not end:
                return
            handshake = wsproto.parse_handshake(bytes(self.head[:end]))
            if handshake.path not in PATHS:
                raise wsproto.HandshakeError(404, "Not Found", f"no WebSocket at"
                                             f" {handshake.path[:60]}: use /")
            origins = self.server.origins
            refusal = origins.refuses(handshake.headers, self.server.scheme,
                                      handshake.headers.get("host", "")) if origins else None
            if refusal is not None:
                log.warning("%s: %s (client %s, WebSocket)", self.server.name, refusal,
                            self.peer)
                raise wsproto.HandshakeError(403, "Forbidden", refusal)
        except wsproto.HandshakeError as exc:
            self._refuse(exc)
            return
        rest = bytes(self.head[end:])
        self.head = None
        authorization = handshake.headers.get("authorization", "")
        if authorization:  # a credential check may take a while (scrypt): read nothing meanwhile
            assert self.transport is not None
            self.transport.pause_reading()
            self.worker = watch(asyncio.get_running_loop().create_task(
                self._login_then_open(handshake, authorization, rest)), f"ws {self.peer}")
        else:
            self._open(handshake, None, rest)

    async def _login_then_open(self, handshake: wsproto.Handshake, authorization: str,
                               rest: bytes) -> None:
        session = self._new_session()
        error = await _header_login(self.server.dispatcher, session, authorization)
        self.worker = None
        if self.transport is None or self.transport.is_closing():
            return
        self._open(handshake, error, rest, session)
        self.transport.resume_reading()

    def _new_session(self) -> Session:
        assert self.transport is not None
        self.outbox = Outbox(self.transport, _ws_bytes, self._too_slow, f"ws {self.peer}")
        session = Session("ws", self.peer, self.outbox.put, self.outbox.put_many)
        if not self.server.auth_required:  # known by its address (the ipextnmap seats it)
            session.identity = address_identity(self.server.dispatcher.services.seating,
                                                self.peer)
        return session

    def _open(self, handshake: wsproto.Handshake, error: str | None, rest: bytes,
              session: Session | None = None) -> None:
        assert self.transport is not None
        self.session = session or self._new_session()
        self.parser = wsproto.FrameParser(MAX_REQUEST_BYTES)
        self.transport.write(handshake.accept())
        log.info("ws client connected from %s", self.peer)
        if error:
            self._reply(response("", error))
        if rest:
            self.data_received(rest)

    def _refuse(self, error: wsproto.HandshakeError) -> None:
        assert self.transport is not None
        log.info("ws %s: refused: %s %s", self.peer, error.status, error.text)
        self.transport.write(error.response())
        self.transport.close()
        self.head = None
        self.closing = True

    # -- requests -------------------------------------------------------------------------------
    def _request(self, text: str) -> None:
        self.pending.append(text)
        if self.worker is None:  # one task per client, in order (eager where Python has it)
            self.worker = eager(self._work(), f"ws-request {self.peer}", f"ws {self.peer}")
        if len(self.pending) >= MAX_PENDING and self.transport is not None:
            self.transport.pause_reading()

    async def _work(self) -> None:
        """Handle queued requests in order; the task ends when none is left."""
        dispatcher = self.server.dispatcher
        assert self.session is not None
        try:
            while self.pending and not self.closing:
                text = self.pending.pop(0)
                answer, _status = await dispatcher.handle(self.session, text)
                self._reply(answer)
                if len(self.pending) == MAX_PENDING // 2 and self.transport is not None:
                    self.transport.resume_reading()
        finally:
            self.worker = None

    def _reply(self, message: dict) -> None:
        if self.outbox is not None:
            self.outbox.write(ws_text_frame(dumpb(message)))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- liveness and closing -------------------------------------------------------------------
    def check(self, now: float) -> None:
        """Called by the sweeper: end a slow handshake, ping a silent client, drop a dead one."""
        if self.head is not None:
            if now - self.opened > HANDSHAKE_TIMEOUT:
                self._refuse(wsproto.HandshakeError(408, "Request Timeout",
                                                    "no complete upgrade request in time"))
            return
        if self.closing:
            if now - self.seen > HEARTBEAT / 2:
                self.abort()  # no close frame back: stop waiting
            return
        session = self.session
        if session is not None and session.identity is None and self.worker is None and \
                now - self.opened > LOGIN_TIMEOUT:
            why = f"login timeout: send a login request within {LOGIN_TIMEOUT:g} s"
            log.info("ws %s: closed: login timeout", self.peer)
            self._reply(response("", why))
            self.close(wsproto.POLICY_VIOLATION, "login timeout")
            return
        if self.ping_sent:
            if now - self.ping_sent > HEARTBEAT / 2:
                log.info("ws %s: no pong within %g s: disconnected", self.peer, HEARTBEAT / 2)
                self.abort()
        elif now - self.seen > HEARTBEAT:
            self.ping_sent = now
            self._write(wsproto.frame(wsproto.OP_PING))

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once) and let the client close; the sweeper aborts laggards."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.seen = time.monotonic()
        if self.outbox is not None:
            self.outbox.close()
        self._write(wsproto.close_frame(code, reason))
        self.transport.close()  # after what is buffered is sent

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _too_slow(self, reason: str) -> None:
        self.close(wsproto.POLICY_VIOLATION, reason)


async def _header_login(dispatcher: Dispatcher, session: Session,
                        header: str) -> str | None:
    """Authorization: Bearer <token> or Basic on the upgrade request logs the session in."""
    scheme, _, value = header.partition(" ")
    if not value:
        return None
    auth = dispatcher.services.auth
    try:
        if scheme.lower() == "bearer":
            session.identity = await auth.login(session.peer, None, None, value.strip())
            session.tokens.add(value.strip())
        elif scheme.lower() == "basic":
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            session.identity = await auth.login(session.peer, user, password, None)
    except RequestError as exc:
        return exc.error
    except (ValueError, UnicodeDecodeError):
        return "malformed Authorization header"
    return None
