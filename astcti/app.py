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
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.listeners: Listeners | None = None
        self.acd: AcdService | None = None  # ACD agents on queues
        self.userdata: UserDataService | None = None  # user data attached to calls
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
        # SIGHUP (`systemctl reload astcti`) re-reads listeners and extensions from the store
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.start()
        except AstctiError:
            await self.stop()
            raise
        await self._stopping.wait()
        log.info("stopping")
        await self.stop()
        return 0

    async def reload(self) -> None:
        """Apply the store's listeners, extensions and users as they are now, without a restart
        (which would drop every agent's session). Links and parameters still need a restart."""
        log.info("reloading listeners, extensions and users from the store")
        if self.services is not None:
            self.services.auth.forget_verifications()
        try:
            await self.reload_listeners()
            await self.reload_extensions()
        except AstctiError as exc:
            log.error("reload: %s", exc)

    async def reload_extensions(self) -> None:
        """Watch the extensions the store gained, stop watching those it lost."""
        if self.store is None:
            return
        wanted = {e.number: e.technology for e in self.store.extensions()}
        have = {n: e.technology for n, e in self.directory.extensions.items()}
        added = [n for n, tech in wanted.items() if have.get(n) != tech]
        if added:
            for link in self.links.values():  # the PBX may have gained the endpoints
                if link.up:
                    try:
                        endpoints = await link.call("endpoints", "list") or []
                        link.endpoints = {f"{e['technology']}/{e['resource']}" for e in endpoints}
                    except (AriError, AstctiError) as exc:
                        log.warning("%s: cannot refresh endpoints: %s", link.name, exc)
        for number in added:
            await self.directory.add(number, wanted[number])
        for number in set(have) - set(wanted):
            link = self.directory.link_of(number)
            if self.hub.monitor_counts().get(number):
                self.hub.publish(LinkDown(number, "", _now(), link=link.name if link else "",
                                          reason="extension removed by the administrator"))
                for sub in tuple(self.hub.monitors.get(number, ())):
                    self.hub.detach(sub, number)
            await self.directory.remove(number)
            self.tracker.drop_extension(number)
        if added or set(have) - set(wanted):
            log.info("extensions: %d added or changed, %d removed", len(added),
                     len(set(have) - set(wanted)))

    async def reload_listeners(self) -> dict[int, str]:
        """Open/close listeners to match the store's rows, without touching unchanged ones."""
        if self.listeners is None or self.store is None:
            return {}
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

    async def _acd_link_up(self, link: AsteriskLink) -> None:
        """Agents re-read from the queues; user data of calls that ended meanwhile expires."""
        if self.userdata is not None:
            self.userdata.live(self.tracker.calls)
        if self.acd is not None:
            await self.acd.on_link_up(link)

    def _on_link_down(self, link: AsteriskLink, reason: str) -> None:
        self.control.forget_link(link.name)
        for ext, name in self.directory.serving.items():
            if name == link.name:
                self.hub.publish(LinkDown(ext, "", _now(), link=link.name, reason=reason))
