"""Client listeners opened and closed at run time from the store's `listeners` rows.

Protocols (the seed's names): `astctiws` (WebSocket), `astctirest` (REST), `astctiapi` (raw TCP).
Each listener checks its `allow` list (CIDRs or `*`) and its `auth` mode (token | none).

Rules that keep a browser from being used against astcti (CSRF, cross-site WebSocket):
- an `auth=none` listener must name the hosts allowed to use it without login (`allow` is not
  `*`, unless the row is `forced`): any web page a user opens could otherwise fire its
  `GET /makecall`;
- HTTP and WebSocket requests a browser sends from another site are refused (403) unless that
  site's origin is in parameter `acti_origins`: the `Origin` header (or, when a browser sends
  none, the origin of `Referer`; `Sec-Fetch-Site: cross-site` without either is refused too).
  astcti's own pages (the REST listeners' origins) are always allowed; clients that are not
  browsers send none of these headers and are not affected.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from astcti.api.dispatch import Dispatcher
from astcti.api.protocol import MAX_REQUEST_BYTES, response
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


class OpenToEveryone(ConfigError):
    """An auth=none listener whose allow list is `*` and that was not forced."""


def validate(row: ListenerRow) -> None:
    """A clear ConfigError for a row that cannot work (or must not, unless forced)."""
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
    if row.auth == "none" and parse_allow(row.allow) is None and not row.forced:
        raise OpenToEveryone(
            f"listener {row.port}: auth=none needs an allow list naming the hosts that may use"
            " it without login (e.g. 10.0.0.5/32 for the CRM server): with * any web page a"
            " user opens could place calls; add --force to open it to everyone anyway")
    parse_allow(row.allow)


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL (as browsers write origins), or ''."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


class Origins:
    """Which browser origins may use astcti: its own pages and parameter `acti_origins`."""

    def __init__(self, text: str = "") -> None:
        self.allowed: set[str] = set()
        self.everyone = False
        self.own_ports: Callable[[], set[int]] = lambda: set()
        self.set(text)

    def set(self, text: str) -> None:
        origins = {o.strip().rstrip("/").lower() for o in text.split(",") if o.strip()}
        self.everyone = "*" in origins
        self.allowed = origins - {"*"}

    @staticmethod
    def browser_origin(origin: str | None, referer: str | None,
                       fetch_site: str | None) -> str | None:
        """The origin of the page that made a request; None when no browser says so."""
        if origin is not None:
            return origin.strip().lower() or "null"
        if referer:
            return origin_of(referer) or "null"
        if (fetch_site or "").lower() in ("cross-site", "same-site"):
            return "null"  # a browser request from another site that does not say which
        return None

    def refuses(self, headers: Mapping[str, str], scheme: str, host: str) -> str | None:
        """The refusal words for a browser request from a foreign origin, else None.
        `headers` are looked up by lower-case name; `scheme://host` is where it was sent."""
        origin = self.browser_origin(headers.get("origin"), headers.get("referer"),
                                     headers.get("sec-fetch-site"))
        if origin is None or self.everyone or origin in self.allowed:
            return None
        own = f"{scheme}://{host}".lower()
        if origin == own:
            return None
        parts = urlsplit(origin)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        if parts.hostname and parts.hostname == urlsplit(own).hostname and \
                port in self.own_ports():
            return None  # a page of one of astcti's REST listeners (toolbar, desktop)
        shown = origin if origin != "null" else "another site (no origin given)"
        return (f"browser request from {shown[:80]} refused: add its origin to parameter"
                " acti_origins if its pages may use astcti")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in ("origin", "referer", "sec-fetch-site")
            if name in headers}


def _cors(origin: str, preflight: bool = False) -> dict[str, str]:
    """What lets an allowed page of another origin read astcti's answers."""
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers.update({"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE",
                        "Access-Control-Allow-Headers": "Authorization, Content-Type",
                        "Access-Control-Max-Age": "600"})
    return headers


@dataclass
class Running:
    row: ListenerRow
    stop: Callable[[], object]
    error: str | None = None
    context: ssl.SSLContext | None = None  # a tls listener's: reloaded with renewed files


class Listeners:
    """The open client listeners of the daemon."""

    def __init__(self, dispatcher: Dispatcher, origins: str = "") -> None:
        self.dispatcher = dispatcher
        self.running: dict[int, Running] = {}
        self.errors: dict[int, str] = {}
        self.origins = Origins(origins)
        self.origins.own_ports = lambda: {p for p, r in self.running.items()
                                          if r.row.protocol == "astctirest"}

    async def open(self, row: ListenerRow) -> None:
        """Open one listener; ConfigError with one line if it cannot (port in use...)."""
        validate(row)
        if row.port in self.running:
            await self.close(row.port)
        self.errors.pop(row.port, None)
        nets = parse_allow(row.allow)
        bind = None if row.bind == "*" else row.bind
        if row.auth == "none" and nets is None:
            log.warning("listener %d (%s) has auth=none for every address (forced): any web page"
                        " or host that reaches %s can place calls; restrict it with `add tcp %d"
                        " %s <ALLOW> custom %s auth=none`", row.port, row.protocol, row.bind,
                        row.port, row.bind, row.protocol)
        elif row.auth == "none" and bind not in ("127.0.0.1", "::1", "localhost"):
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
        self.running[row.port] = Running(row, stop, context=context)
        log.info("listening: %s on %s:%d (auth %s, allow %s)", row.protocol, row.bind, row.port,
                 row.auth, row.allow)

    def _tls_context(self, row: ListenerRow) -> ssl.SSLContext | None:
        """The server TLS context of a `tls` listener, from the cert/key parameters."""
        if not row.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._load_certificate(row, context)
        return context

    def _load_certificate(self, row: ListenerRow, context: ssl.SSLContext) -> None:
        """Load the cert/key parameters' files into `context` (new handshakes use them)."""
        store = self.dispatcher.services.store
        cert = store.get_parameter(TLS_CERT_PARAMETER) or ""
        key = store.get_parameter(TLS_KEY_PARAMETER) or ""
        if not cert or not key:
            raise ConfigError(f"listener {row.port}: tls needs the parameters"
                              f" {TLS_CERT_PARAMETER} and {TLS_KEY_PARAMETER} (PEM file paths):"
                              f" set them with `update parameter {TLS_CERT_PARAMETER} /path`")
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"listener {row.port}: cannot load TLS certificate {cert} / key"
                              f" {key}: {getattr(exc, 'strerror', None) or exc}: fix the files"
                              " or the parameters") from None

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

        server: WsServer | TcpServer
        if row.protocol == "astctiws":
            server = WsServer(self.dispatcher, auth_required=row.auth != "none", admit=admit,
                              name=f"listener {row.port}", origins=self.origins,
                              tls=context is not None)
        else:
            server = TcpServer(self.dispatcher, auth_required=row.auth != "none", admit=admit,
                               name=f"listener {row.port}")
        await server.start(bind, row.port, context)
        return server.stop

    async def _open_http(self, row: ListenerRow, nets: list[Network] | None,
                         bind: str | None,
                         context: ssl.SSLContext | None = None) -> Callable[[], object]:
        factory = HTTP_PROTOCOLS[row.protocol]
        app = factory(self.dispatcher, row.auth != "none")

        origins = self.origins

        @web.middleware
        async def allow_list(request: web.Request, handler):
            if not allowed(nets, request.remote):
                log.warning("listener %d: refused %s (not in allow %s)", row.port,
                            request.remote, row.allow)
                raise web.HTTPForbidden(text="address not allowed\n")
            refusal = origins.refuses(_lower(request.headers), request.scheme, request.host)
            if refusal is not None:
                log.warning("listener %d: %s (client %s, %s %s)", row.port, refusal,
                            request.remote, request.method, request.path[:60])
                return web.json_response(response("", refusal), status=403)
            origin = request.headers.get("Origin")
            if request.method == "OPTIONS" and origin:  # CORS preflight of an allowed page
                return web.Response(status=204, headers=_cors(origin, preflight=True))
            reply = await handler(request)
            if origin and not reply.prepared and origin_of(origin) != \
                    f"{request.scheme}://{request.host}".lower():
                reply.headers.update(_cors(origin))
            return reply

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
                if current.context is not None:  # a renewed certificate, same listener
                    try:  # checked on a scratch context: a bad pair never reaches the live one
                        self._tls_context(row)
                        self._load_certificate(row, current.context)
                    except ConfigError as exc:
                        log.error("%s: it keeps the certificate it had", exc)
                continue
            try:
                await self.open(row)
            except ConfigError as exc:
                log.error("%s", exc)
        return dict(self.errors)

    async def close_all(self) -> None:
        for port in list(self.running):
            await self.close(port)
