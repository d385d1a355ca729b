"""The only module that knows how ARI is reached.

REST operations are named as in Asterisk's ARI docs (resource, operation nickname) and described
by Asterisk's own Swagger declarations, loaded through aioari at each connect. They travel:
- over the events websocket itself (`RESTRequest`/`RESTResponse`, Asterisk 20.14, 21.9, 22.4 and
  later) when the Asterisk has it: one frame out, one frame back, on a connection that is already
  open, about a tenth of the CPU of an HTTP request through aiohttp's client;
- otherwise over HTTP through aioari's Swagger client.
The events websocket is our own aiohttp connection, because aioari's has no heartbeat, no
reconnect and puts unencoded credentials in the URL (see LAB.md). Swapping aioari out means
rewriting :class:`AriRest` only. `ASTCTI_ARI_REST=http` forces HTTP (to compare, or to work
around an Asterisk whose websocket requests misbehave).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import re
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import aioari
from aiohttp import web_exceptions
from aioswagger11.http_client import AsynchronousHttpClient, BasicAuthenticator

from astcti import wire, wsproto
from astcti.pbx.linkconfig import LinkConfig

log = logging.getLogger(__name__)

AriEvent = dict[str, Any]


class AriError(Exception):
    """ARI answered with an HTTP error, or could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _query_value(value: Any) -> Any:
    # aioari raises TypeError on Python booleans in the query string.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


#: What goes over the events websocket: a call's own operations on channels and bridges, whose
#: answers are small. Lists, and the application resource (whose every answer lists all the
#: subscribed endpoints), go over HTTP: Asterisk 22.10 dies writing a RESTResponse of a few
#: hundred KiB to the websocket (seen in the lab with 6,000 endpoints).
WS_RESOURCES = ("channels", "bridges")


def _small_answer(resource: str, operation: str) -> bool:
    return resource in WS_RESOURCES and operation != "list"


_PATH_SAFE = re.compile(r"[A-Za-z0-9._~-]+")  # ids as Asterisk and astcti make them

#: First releases of each branch that take REST requests on the events websocket.
WS_REST_SINCE = {20: (20, 14), 21: (21, 9), 22: (22, 4)}


def rest_over_websocket(version: str | None) -> bool:
    """True if this Asterisk version ("22.10.1+dfsg...", "certified-20.7-cert5") takes REST
    requests on the events websocket."""
    if os.environ.get("ASTCTI_ARI_REST", "").lower() == "http" or not version:
        return False
    match = re.match(r"(?:certified[/-])?(\d+)\.(\d+)", version)
    if match is None:
        return False
    major, minor = int(match[1]), int(match[2])
    if major > max(WS_REST_SINCE):
        return True
    since = WS_REST_SINCE.get(major)
    return since is not None and (major, minor) >= since


def tls_context(config: LinkConfig) -> ssl.SSLContext | None:
    """The verifying client context of an https/wss link (None for plain http)."""
    if not config.tls:
        return None
    try:
        return ssl.create_default_context(cafile=config.cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise AriError(503, f"{config.name}: cannot load CA file {config.cafile!r} (parameter"
                            f" acti_ari_cafile): {getattr(exc, 'strerror', None) or exc}")


def untrusted(config: LinkConfig, why: str) -> str:
    """The one line for a certificate astcti cannot trust (never a silent downgrade)."""
    return (f"{config.name}: the certificate of {config.base_url} is not trusted ({why}): give"
            " the CA that signed it with `update parameter acti_ari_cafile /path/ca.pem`, or fix"
            " the host name in the link to match the certificate")


def _auth_header(config: LinkConfig) -> str:
    raw = f"{config.username}:{config.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class _HttpClient(AsynchronousHttpClient):
    """aioswagger's HTTP client kept on the link's scheme: Asterisk's api-docs announce an
    `http://` basePath even when they are read over TLS, so every request would otherwise go
    in clear text to the TLS port (and be dropped)."""

    def __init__(self, auth: BasicAuthenticator, tls: bool) -> None:
        super().__init__(auth=auth)
        self._tls = tls

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None) -> Any:
        if self._tls and url.startswith("http://"):
            url = "https://" + url[len("http://"):]
        return await super().request(method, url, params=params, data=data, headers=headers)


class AriRest:
    """ARI REST operations of one Asterisk."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self._client: Any = None
        #: set by the link when this Asterisk takes REST requests on the events websocket
        self.socket: AriEventSocket | None = None

    async def open(self, timeout: float = 10.0) -> None:
        """Load Asterisk's ARI description; fails with AriError on bad credentials or no answer."""
        http = _HttpClient(BasicAuthenticator(self.config.host.strip("[]"),
                                              self.config.username, self.config.password),
                           self.config.tls)
        # aioari builds a session without timeout; give it one of ours.
        await http.session.close()
        connector = aiohttp.TCPConnector(ssl=tls_context(self.config) or True)
        http.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                             connector=connector)
        client = aioari.Client(self.config.base_url + "/", http)
        try:
            await client.init()
        except BaseException as exc:
            await http.close()
            raise _translate(exc, self.config) from None
        self._client = client

    async def close(self) -> None:
        self.socket = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _operation(self, resource: str, operation: str) -> Any:
        if self._client is None:
            raise AriError(503, f"{self.config.name}: not connected to Asterisk")
        res = self._client.swagger.get_resource(resource)
        oper = res.get_operation(operation) if res is not None else None
        if oper is None:
            raise AriError(400, f"ARI has no operation {resource}.{operation}")
        return oper

    async def call(self, resource: str, operation: str, **params: Any) -> Any:
        """Run one ARI operation; returns the decoded JSON body, or None for 204."""
        oper = self._operation(resource, operation)
        if self.socket is not None and _small_answer(resource, operation):
            return await self._call_ws(oper, params)
        clean = {k: _query_value(v) for k, v in params.items() if v is not None}
        try:
            resp = await oper(**clean)
        except BaseException as exc:
            raise _translate(exc, self.config) from None
        try:
            if resp.status == 204:
                return None
            body = await resp.read()
            return json.loads(body) if body else None
        finally:
            resp.release()


    async def _call_ws(self, oper: Any, params: dict[str, Any]) -> Any:
        """The operation as a RESTRequest on the events websocket (same URI and parameters as
        aioari would send over HTTP)."""
        assert self.socket is not None
        path = oper.uri.split("/ari/", 1)[1]
        query: list[dict[str, str]] = []
        body: dict[str, Any] | None = None
        for param in oper.json.get("parameters", ()):
            name = param["name"]
            value = params.pop(name, None)
            if value is None:
                if param.get("required"):
                    raise AriError(400, f"ARI {oper.json['nickname']} needs {name}")
                continue
            kind = param["paramType"]
            if kind == "path":
                text = _text_value(value)
                path = path.replace("{%s}" % name,
                                    text if _PATH_SAFE.fullmatch(text) else quote(text, safe=""))
            elif kind == "query":
                query.append({"name": name, "value": _text_value(value)})
            else:
                body = body or {}
                body[name] = value
        if params:
            raise AriError(400, f"ARI {oper.json['nickname']} has no parameter"
                                f" {', '.join(sorted(params))}")
        return await self.socket.request(oper.json["httpMethod"], path, query,
                                         wire.dumps(body) if body is not None else None)

    async def send_json(self, method: str, path: str, body: Any) -> Any:
        """A request whose JSON body is the object itself (aioari would wrap it in a field)."""
        return await self.start_json(method, path, body)

    def start_json(self, method: str, path: str, body: Any) -> Awaitable[Any]:
        """`send_json`, on the wire when this returns if the events websocket carries it (so
        the caller's bookkeeping follows the request instead of delaying it); await the
        result."""
        if self._client is None:
            raise AriError(503, f"{self.config.name}: not connected to Asterisk")
        path = path.lstrip("/")
        resource = path.split("?", 1)[0].split("/", 1)[0]
        if self.socket is not None and method != "GET" and resource in WS_RESOURCES:
            # the query string stays in the URI: Asterisk parses it
            return self.socket.start(method, path, [], wire.dumps(body))
        return self.http_json(method, path, body)

    async def http_json(self, method: str, path: str, body: Any) -> Any:
        """`send_json` over HTTP even while the events websocket carries requests: Asterisk
        runs it on an HTTP thread, holding none of the websocket session's locks."""
        if self._client is None:
            raise AriError(503, f"{self.config.name}: not connected to Asterisk")
        session: aiohttp.ClientSession = self._client.swagger.http_client.session
        url = f"{self.config.base_url}/ari/{path.lstrip('/')}"
        try:
            async with session.request(method, url, json=body,
                                       headers={"Authorization": _auth_header(self.config)}) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    try:
                        text = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        pass
                    raise AriError(resp.status, f"{resp.status} {text}".strip())
                return json.loads(text) if text else None
        except aiohttp.ClientError as exc:
            raise _translate(exc, self.config) from None


def _translate(exc: BaseException, config: LinkConfig) -> BaseException:
    """Turn aioari/aiohttp failures into AriError with a readable line and no secrets."""
    if isinstance(exc, web_exceptions.HTTPException):
        status = exc.status
        text = exc.text or ""
        try:
            text = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            pass
        if status == 401:
            return AriError(401, f"{config.name}: Asterisk rejected ARI user {config.username!r}:"
                                 " check the user in ari.conf and the link's password")
        return AriError(status, f"{status} {text}".strip())
    if isinstance(exc, TypeError) and "405" in str(exc):
        return AriError(405, "405 method not allowed")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        why = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        return AriError(503, untrusted(config, str(why)))
    if isinstance(exc, aiohttp.ClientSSLError):
        return AriError(503, f"{config.name}: TLS with {config.base_url} failed ({exc}): is"
                             " that port Asterisk's tlsbindaddr (http.conf tlsenable=yes)?")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AriError(503, f"{config.name}: cannot reach Asterisk ARI at {config.base_url}"
                             f" ({exc.os_error.strerror or exc.os_error}): is Asterisk running"
                             " with http.conf enabled on that address?")
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return AriError(503, f"{config.name}: ARI at {config.base_url} failed:"
                             f" {type(exc).__name__}")
    return exc


EventHandler = Callable[[AriEvent], None]


_keys = bytearray()


def _mask_key() -> bytes:
    """A fresh random masking key per frame (RFC 6455), drawn from the OS's random source a
    thousand at a time rather than with one system call per frame."""
    global _keys
    if not _keys:
        _keys = bytearray(os.urandom(4096))
    key = bytes(_keys[-4:])
    del _keys[-4:]
    return key


def _expire(future: asyncio.Future[Any], what: str) -> None:
    if not future.done():
        future.set_exception(AriError(504, f"{what}: no answer within"
                                           f" {AriEventSocket.REQUEST_TIMEOUT:g} s"))


class AriEventSocket(asyncio.Protocol):
    """The app's events websocket, a small asyncio protocol over `astcti.wsproto`.

    From the moment it opens, each frame is parsed as it arrives: `RESTResponse` frames
    complete the matching :meth:`request`, every other event is held until :meth:`run` hands
    them, in order, to the link's handler (the link resubscribes and resynchronises first, over
    this very socket), and from then on straight from the socket to the handler: no queue, no
    message object, no task wake-up per event. A ping goes out when Asterisk has been silent
    for `heartbeat` seconds; no answer within half that closes the socket, so a silent network
    cut ends :meth:`run` within about 1.5 heartbeats.
    """

    REQUEST_TIMEOUT = 10.0
    CONNECT_TIMEOUT = 10.0
    MAX_MESSAGE = 16 * 1024 * 1024

    def __init__(self, config: LinkConfig, heartbeat: float) -> None:
        self.config = config
        self.heartbeat = heartbeat
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._head: bytearray | None = bytearray()  # the handshake response until complete
        self._opened: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._parser = wsproto.FrameParser(self.MAX_MESSAGE, masked=False, text_bytes=True)
        self._handler: EventHandler | None = None
        self._held: deque[AriEvent] = deque()
        self._pending: dict[str, asyncio.Future[tuple[int, str, str]]] = {}
        self._ids = itertools.count(1)
        self._last = b""
        self._seen = 0.0
        self._pinged = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closed_reason = "ARI websocket closed (Asterisk stopped or network cut)"

    # -- opening ----------------------------------------------------------------------------
    async def open(self) -> None:
        config = self.config
        loop = self._loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._closed = loop.create_future()
        host = config.host.strip("[]")
        try:
            tls = tls_context(config)  # wss: the certificate verified, host name included
            await asyncio.wait_for(loop.create_connection(
                lambda: self, host, config.port, ssl=tls,
                server_hostname=host if tls is not None else None), self.CONNECT_TIMEOUT)
            assert self.transport is not None
            target = f"/ari/events?{urlencode({'app': config.app, 'subscribeAll': 'false'})}"
            self.transport.write(wsproto.client_request(
                f"{config.base_url.split('//', 1)[1]}", target, self._key,
                {"Authorization": _auth_header(config)}))
            await asyncio.wait_for(asyncio.shield(self._opened), self.CONNECT_TIMEOUT)
        except TimeoutError:  # an OSError too: first, or a silence reads "cannot reach ()"
            connected = self.transport is not None
            self._give_up()
            if not connected:
                raise AriError(503, f"{config.name}: ARI at {config.base_url} did not answer"
                                    f" within {self.CONNECT_TIMEOUT:g} s") from None
            raise AriError(503, f"{config.name}: ARI at {config.base_url} took the connection"
                                f" but did not open the events websocket of app {config.app!r}"
                                f" within {self.CONNECT_TIMEOUT:g} s: Asterisk's HTTP server or"
                                " its ARI for this app is stuck (asterisk/asterisk#2170 hangs an"
                                " app whose websocket closed during device-state changes);"
                                " restart Asterisk") from None
        except wsproto.HandshakeError as exc:
            self._give_up()
            if exc.status == 401:
                raise AriError(401, f"{config.name}: Asterisk rejected ARI user"
                                    f" {config.username!r}: check the user in ari.conf and the"
                                    " link's password") from None
            raise AriError(exc.status, f"{config.name}: ARI events websocket refused:"
                                       f" {exc.text}") from None
        except ssl.SSLCertVerificationError as exc:
            self._give_up()
            raise AriError(503, untrusted(config, exc.verify_message or str(exc))) from None
        except ssl.SSLError as exc:
            self._give_up()
            raise AriError(503, f"{config.name}: TLS with {config.base_url} failed ({exc}): is"
                                " that port Asterisk's tlsbindaddr (http.conf tlsenable=yes)?"
                           ) from None
        except OSError as exc:
            self._give_up()
            raise AriError(503, f"{config.name}: cannot reach Asterisk ARI at"
                                f" {config.base_url} ({exc.strerror or exc}): is Asterisk"
                                " running with http.conf enabled on that address?") from None
        self._seen = loop.time()
        self._timer = loop.call_later(self.heartbeat, self._check)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._loop is not None
        self._seen = self._loop.time()
        self._pinged = 0.0
        if self._head is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > wsproto.MAX_HEAD_BYTES:
                    self._fail_open(wsproto.HandshakeError(502, "", "oversized response"))
                return
            head, data = bytes(self._head[:end + 4]), bytes(self._head[end + 4:])
            self._head = None
            try:
                wsproto.check_response(head, self._key)
            except wsproto.HandshakeError as exc:
                self._fail_open(exc)
                return
            assert self._opened is not None
            if not self._opened.done():
                self._opened.set_result(None)
            if not data:
                return
        try:
            events = self._parser.feed(data)
        except wsproto.ProtocolError as exc:
            self._closed_reason = f"ARI websocket protocol error: {exc.reason}"
            self._send(wsproto.OP_CLOSE, struct.pack("!H", exc.code))
            self._abort()
            return
        for message in events:
            if isinstance(message, wsproto.Text):
                self._message(message.data)  # type: ignore[arg-type]  (bytes: text_bytes)
            elif isinstance(message, wsproto.Ping):
                self._send(wsproto.OP_PONG, message.data)
            elif isinstance(message, wsproto.Close):
                self._send(wsproto.OP_CLOSE, struct.pack("!H", wsproto.NORMAL))
                if self.transport is not None:
                    self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        error = AriError(503, f"{self.config.name}: {self._closed_reason}")
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(OSError(self._closed_reason))
        self._fail_pending(error)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # -- messages ---------------------------------------------------------------------------
    def _message(self, data: bytes) -> None:
        # A channel both in the app's Stasis and on a subscribed endpoint has each of its
        # events delivered twice, back to back and byte for byte: keep one.
        if data == self._last:
            return
        self._last = data
        try:
            event = wire.loads(data)
        except ValueError:
            log.warning("%s: ignored a non-JSON ARI event", self.config.name)
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "RESTResponse":
            self._answered(event)
        elif self._handler is not None:
            self._deliver(self._handler, event)
        else:
            self._held.append(event)

    def _deliver(self, handler: EventHandler, event: AriEvent) -> None:
        try:
            handler(event)
        except Exception:
            log.exception("%s: event handler failed on %s", self.config.name, event.get("type"))

    def _answered(self, event: AriEvent) -> None:
        future = self._pending.pop(str(event.get("request_id", "")), None)
        if future is not None and not future.done():
            future.set_result((int(event.get("status_code", 500)),
                               str(event.get("reason_phrase", "")),
                               event.get("message_body") or ""))

    def _fail_pending(self, error: AriError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _send(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(wsproto.masked_frame(opcode, payload, _mask_key()))

    @property
    def last_heard(self) -> float:
        """When Asterisk last sent anything on this socket (loop time)."""
        return self._seen

    # -- heartbeat --------------------------------------------------------------------------
    def _check(self) -> None:
        """Ping after `heartbeat` seconds of silence; close when the pong is half that late."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._pending and now - self._seen < self.REQUEST_TIMEOUT:
            # Asterisk handles a websocket's REST requests one by one, in the thread that would
            # answer a ping: while one runs (subscribing a hundred endpoints, listing ten
            # thousand) silence is expected, and the request's own timeout bounds it
            self._pinged = 0.0
            self._timer = loop.call_later(self.heartbeat / 2, self._check)
            return
        if self._pinged:
            if now - self._pinged >= self.heartbeat / 2:
                self._closed_reason = ("ARI websocket closed: no answer to a ping within"
                                       f" {self.heartbeat / 2:g} s"
                                       " (network cut or Asterisk hung)")
                self._abort()
                return
            self._timer = loop.call_later(self._pinged + self.heartbeat / 2 - now, self._check)
            return
        if now - self._seen >= self.heartbeat:
            self._pinged = now
            self._send(wsproto.OP_PING, b"")
            self._timer = loop.call_later(self.heartbeat / 2, self._check)
        else:
            self._timer = loop.call_later(self._seen + self.heartbeat - now, self._check)

    # -- requests and events ----------------------------------------------------------------
    async def request(self, method: str, path: str, query: list[dict[str, str]],
                      body: str | None) -> Any:
        """One REST request on this socket; the decoded JSON body, None for an empty one."""
        return await self.start(method, path, query, body)

    def start(self, method: str, path: str, query: list[dict[str, str]],
              body: str | None) -> Awaitable[Any]:
        """`request`, written to the socket before this returns; await the result. (Its
        reply cannot be read before the caller yields to the loop: the future and the timer
        follow the frame.)"""
        if self.transport is None or self.transport.is_closing() or \
                (self._closed is not None and self._closed.done()):
            raise AriError(503, f"{self.config.name}: {self._closed_reason}")
        request_id = str(next(self._ids))
        message: dict[str, Any] = {"type": "RESTRequest", "request_id": request_id,
                                   "method": method, "uri": path}
        if query:
            message["query_strings"] = query
        if body is not None:
            message["content_type"] = "application/json"
            message["message_body"] = body
        self._send(wsproto.OP_TEXT, wire.dumpb(message))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, str, str]] = loop.create_future()
        self._pending[request_id] = future
        # one timer, not asyncio.wait_for (a task and two callbacks more per request)
        timer = loop.call_later(self.REQUEST_TIMEOUT, _expire, future,
                                f"{self.config.name}: {method} {path}")
        return self._reply(request_id, future, timer)

    async def _reply(self, request_id: str, future: asyncio.Future[tuple[int, str, str]],
                     timer: asyncio.TimerHandle) -> Any:
        try:
            status, reason, text = await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        if status >= 400:
            try:
                text = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                pass
            if status == 401:
                raise AriError(401, f"{self.config.name}: Asterisk rejected ARI user"
                                    f" {self.config.username!r}")
            raise AriError(status, f"{status} {text or reason}".strip())
        return wire.loads(text) if text else None

    async def run(self, handler: EventHandler) -> str:
        """Hand the held events, then every new one, to `handler` until the socket closes;
        returns why it closed."""
        while self._held:  # no await in between: no event can slip in
            self._deliver(handler, self._held.popleft())
        self._handler = handler
        assert self._closed is not None
        await asyncio.shield(self._closed)
        return self._closed_reason

    async def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._send(wsproto.OP_CLOSE, struct.pack("!H", wsproto.NORMAL))
            transport.close()
        if self._closed is not None and not self._closed.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), 2.0)
            except TimeoutError:
                self._abort()

    def _fail_open(self, error: wsproto.HandshakeError) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(error)
        self._abort()

    def _give_up(self) -> None:
        """Opening failed and no one awaits the opening any more: abort, and settle it first
        (else its failure from connection_lost is an unobserved error in the log)."""
        if self._opened is not None and not self._opened.done():
            self._opened.cancel()
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
