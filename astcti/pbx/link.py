"""One Asterisk: connect, heartbeat, reconnect with backoff, resubscribe, hand events on.

Asterisk neither queues events for an absent app nor says when it is back, so every (re)connect
runs the `on_up` hook (resubscribe + resync) before the first event is handed on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any


from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent, AriEventSocket, AriRest, rest_over_websocket
from astcti.pbx.linkconfig import LinkConfig
from astcti.pbx.supervisor import Supervised

if TYPE_CHECKING:
    from astcti.pbx.ami import AmiLink

log = logging.getLogger(__name__)

# event sources per subscription request, sent as a JSON array: each answer lists every
# source subscribed so far, so few large batches keep a link-up with thousands of extensions
# from costing O(n^2) bytes (20,000 extensions: 39 s in batches of 100); Asterisk's HTTP
# server refuses a body over 40,960 bytes (413), hence batches of at most this many bytes
SUBSCRIBE_BODY_MAX = 32_000
# seconds a clean stop gives Asterisk to release the app's device states (see stop())
RELEASE_TIMEOUT = 5.0
# before releasing them, a stop waits for this much silence from Asterisk, at most QUIET_MAX
QUIET = 0.25
QUIET_MAX = 2.0


async def quiet_moment(last_heard: Callable[[], float], now: Callable[[], float],
                       sleep: Callable[[float], Awaitable[Any]], quiet: float = QUIET,
                       limit: float = QUIET_MAX) -> bool:
    """Wait until nothing was heard for `quiet` seconds, or `limit` seconds have passed;
    True if the moment came. (asterisk#2170 needs a device-state event on its way to the app
    while the app's device states are unsubscribed: after a silence none is.)"""
    deadline = now() + limit
    while True:
        t = now()
        silent = t - last_heard()
        if silent >= quiet:
            return True
        if t >= deadline:
            return False
        await sleep(min(quiet - silent, deadline - t))


def subscribe_batches(sources: Iterable[str]) -> Iterator[list[str]]:
    """The sources in order, in batches whose JSON body stays under SUBSCRIBE_BODY_MAX."""
    batch: list[str] = []
    size = 20  # {"eventSource": []}
    for source in sources:
        cost = len(source.encode()) + 3  # quotes and comma
        if batch and size + cost > SUBSCRIBE_BODY_MAX:
            yield batch
            batch, size = [], 20
        batch.append(source)
        size += cost
    if batch:
        yield batch


def _trace_file() -> Any:
    """ASTCTI_ARI_TRACE=FILE appends every ARI event astcti receives (for recordings)."""
    path = os.environ.get("ASTCTI_ARI_TRACE")
    return open(path, "a") if path else None


class LinkDownError(AstctiError):
    """A request needs a link whose Asterisk is not connected."""


@dataclass
class LinkStatus:
    name: str
    address: str
    up: bool
    since: datetime
    version: str | None
    last_error: str | None


EventHandler = Callable[["AsteriskLink", AriEvent], None]
UpHook = Callable[["AsteriskLink"], Awaitable[None]]
DownHook = Callable[["AsteriskLink", str], None]


class AsteriskLink(Supervised):
    """A supervised ARI connection to one Asterisk (the loop: :mod:`astcti.pbx.supervisor`)."""

    log = log

    def __init__(self, config: LinkConfig, *, heartbeat: float = 5.0,
                 on_event: EventHandler | None = None, on_up: UpHook | None = None,
                 on_down: DownHook | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = config.name  # read on every event: an attribute, not a property
        self.heartbeat = heartbeat
        self.on_event = on_event
        self.on_up = on_up
        self.on_down = on_down
        self.rest = AriRest(config)
        self.version: str | None = None
        self.system_name = ""
        self.endpoints: set[str] = set()  # "PJSIP/101" as Asterisk reports them
        self.sources: set[str] = set()  # event sources kept subscribed across reconnects
        self.ami: AmiLink | None = None  # the same Asterisk's AMI (acti_amilink_NN), if set
        self._socket: AriEventSocket | None = None

    @property
    def ready(self) -> bool:
        """Up and resynchronised: `on_up` (the daemon's resync of calls, held states,
        agents) has finished. Between `up` and `ready` the calls astcti reports may still be
        half-known (a held call shown as connected), so clients are served only once ready."""
        return self.up and self._up_event.is_set()

    def status(self) -> LinkStatus:
        return LinkStatus(self.name, f"{self.config.host}:{self.config.port}", self.up,
                          self.since, self.version, self.last_error)

    # -- lifecycle ----------------------------------------------------------------------------
    async def stop(self) -> None:
        if self.up:
            await self._release_device_states()
        await self._stop_supervising()
        await self.rest.close()

    async def _release_device_states(self) -> None:
        """Unsubscribe the app's deviceState sources over HTTP before its websocket closes.
        When an app's websocket closes, Asterisk (20.14+, 22.4+: asterisk/asterisk#2170)
        unsubscribes its device states while holding the ARI session lock and waits for any
        device-state event in flight, whose delivery needs that same lock: ARI then hangs for
        this app until Asterisk restarts (seen in the lab after a graceful astcti stop).
        Released here, on an HTTP thread holding no session lock, the close has nothing to wait
        for. The HTTP unsubscription joins the subscription too, and was seen to hang the same
        way with an event on its way (2026-12-02): so it waits for a silence from Asterisk
        first (`quiet_moment`). That narrows the window; only an Asterisk fix closes it. A crash
        or a cut network cannot do this; every clean stop and reload does."""
        states = sorted(s for s in self.sources if s.startswith("deviceState:"))
        path = f"applications/{self.config.app}/subscription"
        socket = self._socket
        if states and socket is not None:  # the release itself can hang on an event in flight
            loop = asyncio.get_running_loop()
            if not await quiet_moment(lambda: socket.last_heard, loop.time, asyncio.sleep):
                log.info("%s: Asterisk never fell silent for %g s: releasing device states"
                         " anyway", self.name, QUIET)
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):  # a stop must not wait on a hung PBX
                for batch in subscribe_batches(states):
                    await self.rest.http_json("DELETE", path, {"eventSource": batch})
        except (AriError, TimeoutError) as exc:
            why = exc.message if isinstance(exc, AriError) else "no answer in time"
            log.info("%s: device states not released before closing: %s", self.name, why)

    def _failure(self, exc: Exception) -> str | None:
        return exc.message if isinstance(exc, AriError) else None

    async def _connect(self) -> None:
        await self.rest.open()
        info = await self.rest.call("asterisk", "getInfo", only="system,config") or {}
        self.version = info.get("system", {}).get("version")
        # asterisk.conf `systemname`: prefixes the uniqueids (hence linkedids, astcti's callids)
        self.system_name = str(info.get("config", {}).get("name") or "")
        self._socket = AriEventSocket(self.config, self.heartbeat)
        await self._socket.open()
        if rest_over_websocket(self.version):
            self.rest.socket = self._socket
        endpoints = await self.rest.call("endpoints", "list") or []
        self.endpoints = {f"{e['technology']}/{e['resource']}" for e in endpoints}
        await self._resubscribe()
        self._mark_up()
        log.info("%s: connected to Asterisk %s at %s:%s (app %s)", self.name, self.version,
                 self.config.host, self.config.port, self.config.app)
        if self.on_up is not None:
            await self.on_up(self)
        self._up_event.set()

    async def _serve(self) -> str:
        """Hand every event to `on_event` until the socket closes (handler errors are logged
        by the socket and cost only that event); returns why it closed."""
        assert self._socket is not None
        handler = self.on_event
        trace = _trace_file()

        def on_event(event: AriEvent) -> None:
            if trace is not None and event.get("type") != "ChannelVarset":
                trace.write(json.dumps(event, sort_keys=True) + "\n")
                trace.flush()
            if handler is not None:
                handler(self, event)

        return await self._socket.run(on_event)

    async def _teardown(self) -> None:
        self.rest.socket = None
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        await self.rest.close()

    def _went_down(self, reason: str) -> None:
        if self.on_down is not None:
            self.on_down(self, reason)

    # -- requests -----------------------------------------------------------------------------
    async def call(self, resource: str, operation: str, **params: Any) -> Any:
        """One ARI operation on this Asterisk; LinkDownError while the link is down."""
        if not self.up:
            raise LinkDownError(f"{self.name}: Asterisk link is down ({self.last_error});"
                                " retry when it is back")
        return await self.rest.call(resource, operation, **params)

    async def subscribe(self, sources: Iterable[str]) -> None:
        """Keep these event sources (e.g. endpoint:PJSIP/101) subscribed from now on."""
        new = [s for s in sources if s not in self.sources]
        self.sources.update(new)
        if new and self.up:
            for batch in subscribe_batches(new):
                await self._subscribe(batch)

    async def _subscribe(self, sources: list[str]) -> None:
        await self.rest.send_json("POST", f"applications/{self.config.app}/subscription",
                                  {"eventSource": sources})

    async def unsubscribe(self, sources: Iterable[str]) -> None:
        gone = [s for s in sources if s in self.sources]
        self.sources.difference_update(gone)
        if gone and self.up:
            try:
                await self.rest.call("applications", "unsubscribe",
                                     applicationName=self.config.app, eventSource=",".join(gone))
            except AriError as exc:
                log.info("%s: unsubscribe %s: %s", self.name, gone, exc.message)

    async def _resubscribe(self) -> None:
        """Subscribe every kept source; one unknown source must not cost the others."""
        for batch in subscribe_batches(sorted(self.sources)):
            await self._subscribe_known(batch)

    async def _subscribe_known(self, batch: list[str]) -> None:
        """Asterisk refuses a whole request for one source that does not exist (422): halve
        the batch until that source is alone (a few requests, not one per source). A 413
        (body too large for this Asterisk's HTTP server) is halved the same way."""
        try:
            await self._subscribe(batch)
        except AriError as exc:
            if not 400 <= exc.status < 500:
                raise
            if len(batch) == 1:
                log.warning("%s: cannot subscribe %s: %s", self.name, batch[0], exc.message)
                return
            half = len(batch) // 2
            await self._subscribe_known(batch[:half])
            await self._subscribe_known(batch[half:])
