"""Composition root: builds the store, the Asterisk links and the services, and runs them.

Events: link -> tracker -> hub -> client transports. Requests: transport -> dispatcher ->
services -> link. This module only wires them and runs their lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import datetime, timezone
from pathlib import Path

from cryptography.fernet import Fernet

from astcti import __version__
from astcti.admin.trace import TraceBus
from astcti.api.auth import Auth
from astcti.api.dispatch import Dispatcher, Services
from astcti.api.listeners import Listeners
from astcti.cti.acd import AcdService
from astcti.cti.control import CallControl
from astcti.cti.directory import Directory
from astcti.cti.events import LinkDown, LinkUp
from astcti.cti.hub import Hub
from astcti.cti.seating import Seating
from astcti.cti.presence import PresenceService
from astcti.cti.queuestats import QueueStatsService
from astcti.cti.tracker import Tracker
from astcti.cti.userdata import UserDataService
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.link import AsteriskLink
from astcti.pbx.linkconfig import LinkConfig, parse_link
from astcti.secrets import load_key
from astcti.store import Store

log = logging.getLogger("astcti")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Daemon:
    """The running astcti: one per process."""

    def __init__(self, db_path: Path, key_path: Path, *, admin_socket: Path | None = None) -> None:
        self.db_path = db_path
        self.key_path = key_path
        self.admin_socket = admin_socket or Path(
            os.environ.get("ASTCTI_ADMIN_SOCKET", "/run/astcti/admin.sock"))
        self.store: Store | None = None
        self.cipher: Fernet | None = None
        self.links: dict[str, AsteriskLink] = {}
        self.link_errors: dict[str, str] = {}  # misconfigured links: parameter -> error line
        self.directory = Directory()
        self.tracker = Tracker(self.directory.resolve)
        self.hub = Hub()
        self.control = CallControl(self.tracker, self.directory)
        self.tracker.parties.number_of = self.control.party_number
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.listeners: Listeners | None = None
        self.acd: AcdService | None = None  # ACD agents on queues
        self.userdata: UserDataService | None = None  # user data attached to calls
        self.seating: Seating | None = None  # client address -> extension (ipextnmap)
        self.presence: PresenceService | None = None  # line states (desktops' directory)
        self.queuestats: QueueStatsService | None = None  # wallboards' figures
        # admin console: trace taps and the admin socket
        self.trace = TraceBus()
        self.hub.tap = self.trace.on_cti
        self.admin = None  # astcti.admin.server.AdminServer once started
        self._stopping = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        log.info("astcti starting (version %s)", __version__)
        self.store = Store.open(self.db_path)
        self.cipher = load_key(self.key_path)
        params = self.store.parameters()
        self.hub.buffer_size = int(params.get("acti_resume_size") or 1000)
        self.hub.buffer_age = float(params.get("acti_resume_age") or 300)
        for ext in self.store.extensions():
            await self.directory.add(ext.number, ext.technology)
        self.services = Services(self.store, self.directory, self.tracker, self.hub,
                                 Auth(self.store))
        self.services.extra["control"] = self.control
        self.seating = Seating(self.store)
        self.services.extra["seating"] = self.seating
        self.control.dial_context = params.get("acti_dial_context") or "from-internal"
        self._start_acd()
        self.dispatcher = Dispatcher(self.services)
        self.dispatcher.tap = self.trace.on_client  # client requests, for `trace on client`
        self._start_links()
        self.listeners = Listeners(self.dispatcher)
        for row in self.store.listeners():
            try:
                await self.listeners.open(row)
            except AstctiError as exc:
                log.error("%s", exc)
        await self._start_admin()
        ports = ", ".join(f"{r.row.protocol}:{p}" for p, r in self.listeners.running.items())
        log.info("ready: store %s, %d link(s), listeners %s", self.db_path, len(self.links),
                 ports or "none")

    def _start_links(self) -> None:
        assert self.store is not None
        heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        for name, value in self.store.link_parameters().items():
            try:
                config = parse_link(name, value, self.cipher)
            except AstctiError as exc:
                self.link_errors[name] = str(exc)
                log.error("%s", exc)
                continue
            self.make_link(config, heartbeat).start()
        if not self.links:
            log.warning("no usable Asterisk link: set one with `astcti-shell -c \"update parameter"
                        " acti_tlink_01 IP#PORT#APP,USER,ENCRYPTEDPASSWORD\"`")

    def make_link(self, config: LinkConfig, heartbeat: float | None = None) -> AsteriskLink:
        """A link wired to the daemon's flows and registered (not started): startup and the
        admin console's `update parameter acti_tlink_NN` both build links here."""
        if heartbeat is None:
            assert self.store is not None
            heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        link = AsteriskLink(config, heartbeat=heartbeat, on_event=self._on_ari_event,
                            on_up=self._on_link_up, on_down=self._on_link_down)
        self.links[config.name] = link
        self.directory.add_link(link)
        return link

    # -- admin console ---------------------------------------------------------------------------
    async def _start_admin(self) -> None:
        """Open the admin socket; a failure is logged and the daemon keeps serving clients."""
        from astcti.admin.server import AdminServer

        self.admin = AdminServer(self, self.admin_socket)
        try:
            await self.admin.start()
        except AstctiError as exc:
            log.error("%s", exc)
            self.admin = None

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self.listeners is not None:
            await self.listeners.close_all()
        if self.acd is not None:
            await self.acd.stop()
        if self.queuestats is not None:
            await self.queuestats.stop()
        for link in self.links.values():
            await link.stop()
        self.links.clear()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        # SIGHUP re-reads the listeners table (the admin API calls reload_listeners itself)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(
            self.reload_listeners()))
        try:
            await self.start()
        except AstctiError:
            await self.stop()
            raise
        await self._stopping.wait()
        log.info("stopping")
        await self.stop()
        return 0

    async def reload_listeners(self) -> dict[int, str]:
        """Open/close listeners to match the store's rows, without touching unchanged ones."""
        if self.listeners is None or self.store is None:
            return {}
        if self.seating is not None:  # the ipextnmap may have been changed the same way
            self.seating.reload()
        return await self.listeners.sync(self.store.listeners())

    # -- the event flow -------------------------------------------------------------------------
    def _on_ari_event(self, link: AsteriskLink, event: AriEvent) -> None:
        self.trace.on_ari(link.name, event)  # no-op unless someone traces
        cti_events = self.tracker.handle(link.name, event)
        if self.userdata is not None and cti_events:  # the call's user data on its events
            cti_events = self.userdata.decorate(cti_events)
        for cti_event in cti_events:
            self.hub.publish(cti_event)
        self.control.on_event(link, event)
        if self.acd is not None:  # queue helper replies, pause changes, queue calls
            self.acd.on_event(link, event, cti_events)
        if self.presence is not None:
            self.presence.on_ari_event(link, event)

    async def _on_link_up(self, link: AsteriskLink) -> None:
        """Resubscribe the configured extensions and resynchronise calls after any connect."""
        await self.directory.link_up(link)
        await self._filter_events(link)
        try:
            channels = await link.rest.call("channels", "list") or []
        except AriError as exc:
            log.warning("%s: cannot list channels to resync: %s", link.name, exc.message)
            channels = []
        resynced = self.tracker.resync(link.name, channels, _now())
        if self.userdata is not None:
            resynced = self.userdata.decorate(resynced)
        self.hub.publish_all(resynced)
        await self.control.resync(link)
        await self._acd_link_up(link)
        if self.presence is not None:
            await self.presence.on_link_up(link)
        for ext, name in self.directory.serving.items():
            if name == link.name:
                self.hub.publish(LinkUp(ext, "", _now(), link=link.name))

    async def _filter_events(self, link: AsteriskLink) -> None:
        """ChannelVarset is two thirds of the stream and the tracker reads channelvars instead."""
        try:
            await link.rest.send_json("PUT", f"applications/{link.config.app}/eventFilter",
                                      {"disallowed": [{"type": "ChannelVarset"}]})
        except AriError as exc:
            log.info("%s: event filter not applied (%s)", link.name, exc.message)

    # -- ACD agents and user data ---------------------------------------------------------------
    def _start_acd(self) -> None:
        assert self.store is not None and self.services is not None
        grace = float(self.store.get_parameter("acti_userdata_grace", "60") or 60)
        self.userdata = UserDataService(self.store, grace=grace)
        self.acd = AcdService(self.store, self.directory, self.hub)
        self.tracker.queue_of = self.acd.queue_of
        self.services.extra.update(acd=self.acd, userdata=self.userdata)
        self.control.userdata = self.userdata
        self._start_desktop_services()

    def _start_desktop_services(self) -> None:
        """Line states and queue statistics: derived from the events the hub publishes."""
        assert self.store is not None and self.services is not None and self.acd is not None
        acd = self.acd

        def agent_of(extension: str) -> tuple[str, str]:
            agent = acd.agents.get(extension)
            return (agent.agentid, agent.state) if agent is not None else ("", "")

        self.presence = PresenceService(self.directory, self.hub, agent_of)
        self.queuestats = QueueStatsService(self.store, self.hub, self.tracker, acd)
        acd.on_waiting = self.queuestats.waiting_list
        self.hub.observers += [self.presence.on_cti_event, self.queuestats.on_cti_event]
        self.services.extra.update(presence=self.presence, queuestats=self.queuestats)

    async def _acd_link_up(self, link: AsteriskLink) -> None:
        """Agents re-read from the queues; user data of calls that ended meanwhile expires."""
        if self.userdata is not None:
            self.userdata.live(self.tracker.calls)
        if self.acd is not None:
            await self.acd.on_link_up(link)

    def _on_link_down(self, link: AsteriskLink, reason: str) -> None:
        self.control.forget_link(link.name)
        if self.presence is not None:
            self.presence.on_link_down(link)
        for ext, name in self.directory.serving.items():
            if name == link.name:
                self.hub.publish(LinkDown(ext, "", _now(), link=link.name, reason=reason))
