"""Client listeners opened and closed at run time from the store's `listeners` rows.

Protocols (the seed's names): `astctiws` (WebSocket), `astctirest` (REST), `astctiapi` (raw TCP).
Each listener checks its `allow` list (CIDRs or `*`) and its `auth` mode (token | none).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from astcti.api.dispatch import Dispatcher
from astcti.api.protocol import MAX_REQUEST_BYTES
from astcti.errors import ConfigError
from astcti.store.store import ListenerRow

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AppFactory = Callable[[Dispatcher, bool], web.Application]


def _rest_factory(dispatcher: Dispatcher, auth_required: bool) -> web.Application:
    from astcti.api import rest

    return rest.make_app(dispatcher, auth_required=auth_required)


#: protocol -> aiohttp application factory. Transports register here (astctiws and
#: astctiapi are stream servers of their own: api/ws.py, api/tcp.py).
HTTP_PROTOCOLS: dict[str, AppFactory] = {"astctirest": _rest_factory}
#: an HTTP connection idle (or sending a request slower) than this is closed (slowloris);
#: WebSocket and event streams are not idle while their handler runs
HTTP_IDLE_TIMEOUT = 15.0
#: parameters naming the PEM files of listeners with tls on
TLS_CERT_PARAMETER = "acti_tls_cert"
TLS_KEY_PARAMETER = "acti_tls_key"
PROTOCOLS = ("astctiws", "astctirest", "astctiapi")


def parse_allow(allow: str) -> list[Network] | None:
    """`*` (None: everyone) or a comma list of CIDRs/addresses."""
    allow = allow.strip()
    if allow in ("*", ""):
        return None
    nets = []
    for part in allow.split(","):
        try:
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"allow list: {part.strip()!r} is not an address or CIDR"
                              " (e.g. 10.0.0.0/8); use * for everyone")
    return nets


def allowed(nets: list[Network] | None, peer: str | None) -> bool:
    if nets is None:
        return True
    try:
        addr = ipaddress.ip_address((peer or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in nets)


def validate(row: ListenerRow) -> None:
    """A clear ConfigError for a row that cannot work."""
    if not 1 <= row.port <= 65535:
        raise ConfigError(f"listener port {row.port} is not between 1 and 65535")
    if row.protocol not in PROTOCOLS:
        raise ConfigError(f"listener {row.port}: unknown protocol {row.protocol!r}: use one of"
                          f" {', '.join(PROTOCOLS)}")
    if row.auth not in ("token", "none"):
        raise ConfigError(f"listener {row.port}: auth must be token or none")
    try:
        ipaddress.ip_address(row.bind)
    except ValueError:
        if row.bind not in ("*", "localhost"):
            raise ConfigError(f"listener {row.port}: bind {row.bind!r} is not an IP address")
    parse_allow(row.allow)


@dataclass
class Running:
    row: ListenerRow
    stop: Callable[[], object]
    error: str | None = None


class Listeners:
    """The open client listeners of the daemon."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.running: dict[int, Running] = {}
        self.errors: dict[int, str] = {}

    async def open(self, row: ListenerRow) -> None:
        """Open one listener; ConfigError with one line if it cannot (port in use...)."""
        validate(row)
        if row.port in self.running:
            await self.close(row.port)
        self.errors.pop(row.port, None)
        nets = parse_allow(row.allow)
        bind = None if row.bind == "*" else row.bind
        if row.auth == "none" and bind not in ("127.0.0.1", "::1", "localhost"):
            log.warning("listener %d (%s) has auth=none on %s: anyone allowed by %r can use it",
                        row.port, row.protocol, row.bind, row.allow)
        try:
            context = self._tls_context(row)
            if row.protocol in HTTP_PROTOCOLS:
                stop = await self._open_http(row, nets, bind, context)
            else:
                stop = await self._open_stream(row, nets, bind, context)
        except OSError as exc:
            why = ("port in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
            message = (f"listener {row.port} ({row.protocol}) cannot open on {row.bind}: {why}:"
                       " stop what holds it or choose another port")
            self.errors[row.port] = message
            raise ConfigError(message) from None
        except ConfigError as exc:
            self.errors[row.port] = str(exc)
            raise
        self.running[row.port] = Running(row, stop)
        log.info("listening: %s on %s:%d (auth %s, allow %s)", row.protocol, row.bind, row.port,
                 row.auth, row.allow)

    def _tls_context(self, row: ListenerRow) -> ssl.SSLContext | None:
        """The server TLS context of a `tls` listener, from the cert/key parameters."""
        if not row.tls:
            return None
        store = self.dispatcher.services.store
        cert = store.get_parameter(TLS_CERT_PARAMETER) or ""
        key = store.get_parameter(TLS_KEY_PARAMETER) or ""
        if not cert or not key:
            raise ConfigError(f"listener {row.port}: tls needs the parameters"
                              f" {TLS_CERT_PARAMETER} and {TLS_KEY_PARAMETER} (PEM file paths):"
                              f" set them with `update parameter {TLS_CERT_PARAMETER} /path`")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"listener {row.port}: cannot load TLS certificate {cert} / key"
                              f" {key}: {getattr(exc, 'strerror', None) or exc}: fix the files"
                              " or the parameters") from None
        return context

    async def _open_stream(self, row: ListenerRow, nets: list[Network] | None,
                           bind: str | None,
                           context: ssl.SSLContext | None) -> Callable[[], object]:
        """astctiws (WebSocket) or astctiapi (raw TCP): one small protocol per connection."""
        from astcti.api.tcp import TcpServer
        from astcti.api.ws import WsServer

        def admit(peer: str) -> bool:
            if allowed(nets, peer):
                return True
            log.warning("listener %d: refused %s (not in allow %s)", row.port, peer, row.allow)
            return False

        kind = WsServer if row.protocol == "astctiws" else TcpServer
        server = kind(self.dispatcher, auth_required=row.auth != "none", admit=admit,
                      name=f"listener {row.port}")
        await server.start(bind, row.port, context)
        return server.stop

    async def _open_http(self, row: ListenerRow, nets: list[Network] | None,
                         bind: str | None,
                         context: ssl.SSLContext | None = None) -> Callable[[], object]:
        factory = HTTP_PROTOCOLS[row.protocol]
        app = factory(self.dispatcher, row.auth != "none")

        @web.middleware
        async def allow_list(request: web.Request, handler):
            if not allowed(nets, request.remote):
                log.warning("listener %d: refused %s (not in allow %s)", row.port,
                            request.remote, row.allow)
                raise web.HTTPForbidden(text="address not allowed\n")
            return await handler(request)

        app.middlewares.insert(0, allow_list)
        # a GET in the astCTI form carries a whole request in its URL (up to MAX_REQUEST_BYTES,
        # URL-encoded): let it reach the dispatcher, which answers in JSON, instead of
        # aiohttp's plain-text 400 at 8190 bytes
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                               handle_signals=False, keepalive_timeout=HTTP_IDLE_TIMEOUT,
                               max_line_size=3 * MAX_REQUEST_BYTES + 1024)
        await runner.setup()
        site = web.TCPSite(runner, bind, row.port, reuse_address=True, ssl_context=context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner.cleanup

    async def close(self, port: int) -> bool:
        running = self.running.pop(port, None)
        self.errors.pop(port, None)
        if running is None:
            return False
        result = running.stop()
        if hasattr(result, "__await__"):
            await result
        log.info("closed listener %d (%s)", port, running.row.protocol)
        return True

    async def sync(self, rows: list[ListenerRow]) -> dict[int, str]:
        """Make the open listeners match `rows` (the store's): open new or changed rows, close
        removed ones, leave unchanged ones (and their clients) alone. Returns port -> error."""
        wanted = {row.port: row for row in rows}
        for port in list(self.running):
            if port not in wanted:
                await self.close(port)
        for port in list(self.errors):
            if port not in wanted:
                self.errors.pop(port, None)
        for port, row in wanted.items():
            current = self.running.get(port)
            if current is not None and current.row == row:
                continue
            try:
                await self.open(row)
            except ConfigError as exc:
                log.error("%s", exc)
        return dict(self.errors)

    async def close_all(self) -> None:
        for port in list(self.running):
            await self.close(port)
