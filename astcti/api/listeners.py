"""Client listeners opened and closed at run time from the store's `listeners` rows.

Protocols (the seed's names): `astctiws` (WebSocket), `astctirest` (REST), `astctiapi` (raw TCP).
Each listener checks its `allow` list (CIDRs or `*`) and its `auth` mode (token | none).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from astcti.api.dispatch import Dispatcher
from astcti.errors import ConfigError
from astcti.store.store import ListenerRow

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AppFactory = Callable[[Dispatcher, bool], web.Application]


def _ws_factory(dispatcher: Dispatcher, auth_required: bool) -> web.Application:
    from astcti.api import ws

    return ws.make_app(dispatcher, auth_required=auth_required)


#: protocol -> aiohttp application factory. Transports register here.
HTTP_PROTOCOLS: dict[str, AppFactory] = {"astctiws": _ws_factory}
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
            if row.protocol in HTTP_PROTOCOLS:
                stop = await self._open_http(row, nets, bind)
            else:
                raise ConfigError(f"listener {row.port}: protocol {row.protocol} is not"
                                  " available yet")
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

    async def _open_http(self, row: ListenerRow, nets: list[Network] | None,
                         bind: str | None) -> Callable[[], object]:
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
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                               handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, bind, row.port, reuse_address=True)
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

    async def close_all(self) -> None:
        for port in list(self.running):
            await self.close(port)
