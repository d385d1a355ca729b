"""Composition root: builds the store, the Asterisk links and the services, and runs them.

Events: link -> tracker -> hub -> client transports. Requests: transport -> dispatcher ->
services -> link. This module only wires them and runs their lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from astcti import __version__, heap
from astcti.admin.trace import TraceBus
from astcti.api.auth import Auth, address_identity
from astcti.api.authz import Identity, may_watch
from astcti.api.dispatch import Dispatcher
from astcti.api.listeners import Listeners
from astcti.api.services import Services
from astcti.api.session import Session
from astcti.cti.acd import AcdService
from astcti.cti.control import CallControl
from astcti.cti.directory import Directory
from astcti.cti.events import LinkDown, LinkUp
from astcti.cti.hub import Hub
from astcti.cti.seating import Seating
from astcti.cti.model import Connection
from astcti.cti.presence import PresenceService
from astcti.cti.queuefeed import AmiQueueFeed
from astcti.cti.queuestats import QueueStatsService
from astcti.cti.tracker import Tracker, endpoint_of
from astcti.cti.userdata import UserDataService
from astcti.errors import AstctiError
from astcti.pbx.ami import AmiLink, AmiStatus
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.channelvars import ChannelVarsFiller
from astcti.pbx.link import AsteriskLink, LinkStatus
from astcti.pbx.linkconfig import (
    AmiLinkConfig, LinkConfig, ami_sibling, parse_amilink, parse_link,
)
from astcti.secrets import load_key
from astcti.store import Store
from astcti.store.store import AMI_LINK_PARAMETER, LINK_PARAMETER, ListenerRow
from astcti.store.writer import StoreWriter
from astcti.tasks import Tasks

log = logging.getLogger("astcti")


#: ARI event types no part of astcti reads: Asterisk does not send them (see _filter_events).
#: Take a type out of this list in the change that starts reading it.
IGNORED_ARI_EVENTS = (
    "ChannelVarset", "EndpointStateChange", "BridgeCreated", "ChannelTalkingStarted",
    "ChannelTalkingFinished", "PlaybackStarted", "PlaybackContinuing", "PlaybackFinished",
    "RecordingStarted", "RecordingFinished", "RecordingFailed", "PeerStatusChange",
    "ContactStatusChange", "TextMessageReceived", "BridgeVideoSourceChanged",
)


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
        # the parameters as the daemon runs them: a reload applies what the store changed since
        self.parameters_applied: dict[str, str] = {}
        self.ami_links: dict[str, AmiLink] = {}  # acti_amilink_NN -> its AMI connection
        self.directory = Directory()
        self.tracker = Tracker(self.directory.resolve)
        self.hub = Hub()
        self.control = CallControl(self.tracker, self.directory)
        self.tracker.parties.number_of = self.control.party_number
        # callid and user data where ari.conf lacks channelvars: read per tracked channel
        self.channelvars = ChannelVarsFiller(self._on_ari_event, self._tracked)
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.listeners: Listeners | None = None
        self.acd: AcdService | None = None  # ACD agents on queues
        self.userdata: UserDataService | None = None  # user data attached to calls
        self.seating: Seating | None = None  # client address -> extension (ipextnmap)
        self.presence: PresenceService | None = None  # line states (desktops' directory)
        self.queuestats: QueueStatsService | None = None  # wallboards' figures
        self.queuefeed: AmiQueueFeed | None = None  # wallboards' figures from AMI
        # admin console: trace taps and the admin socket
        self.trace = TraceBus()
        self.hub.tap = self.trace.on_cti
        self.admin = None  # astcti.admin.server.AdminServer once started
        self._stopping = asyncio.Event()
        self.tasks = Tasks("daemon")
        self._ami_detach: dict[str, Callable[[], None]] = {}  # AMI link -> detach its services
        self.writer: StoreWriter | None = None  # saves services' state off the event path

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        log.info("astcti starting (version %s)", __version__)
        self.store = Store.open(self.db_path)
        self.cipher = load_key(self.key_path)
        params = self.store.parameters()
        self.parameters_applied = dict(params)
        self.hub.buffer_size = int(params.get("acti_resume_size") or 1000)
        self.hub.buffer_age = float(params.get("acti_resume_age") or 300)
        for ext in self.store.extensions():
            await self.directory.add(ext.number, ext.technology, ext.link, ext.answer)
        self.control.dial_context = params.get("acti_dial_context") or "from-internal"
        self.control.default_answer = params.get("acti_answer") or "reoffer"
        self._start_acd()
        self.seating = Seating(self.store)
        self.services = Services(self.store, self.directory, self.tracker, self.hub,
                                 Auth(self.store), control=self.control, acd=self.acd,
                                 userdata=self.userdata, presence=self.presence,
                                 queuestats=self.queuestats, seating=self.seating)
        self.dispatcher = Dispatcher(self.services)
        self.dispatcher.tap = self.trace.on_client  # client requests, for `trace on client`
        self._start_links()
        self.listeners = Listeners(self.dispatcher, params.get("acti_origins") or "")
        for row in self.store.listeners():
            try:
                await self.listeners.open(row)
            except AstctiError as exc:
                log.error("%s", exc)
        await self._start_admin()
        ports = ", ".join(f"{r.row.protocol}:{p}" for p, r in self.listeners.running.items())
        log.info("ready: store %s, %d link(s) (%d AMI), listeners %s", self.db_path,
                 len(self.links), len(self.ami_links), ports or "none")

    def _start_links(self) -> None:
        assert self.store is not None
        heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        for name, value in self.store.ami_link_parameters().items():
            try:
                ami_config = parse_amilink(name, value, self.cipher)
            except AstctiError as exc:
                self.link_errors[name] = str(exc)
                log.error("%s", exc)
                continue
            self.make_ami_link(ami_config, heartbeat).start()
        for name, value in self.store.link_parameters().items():
            try:
                config = parse_link(name, value, self.cipher, self._cafile())
            except AstctiError as exc:
                self.link_errors[name] = str(exc)
                log.error("%s", exc)
                continue
            self.make_link(config, heartbeat).start()
        if not self.links:
            log.warning("no usable Asterisk link: set one with `astcti-shell -c \"update parameter"
                        " acti_tlink_01 IP#PORT#APP,USER,ENCRYPTEDPASSWORD\"`")

    def _cafile(self) -> str:
        """Parameter acti_ari_cafile: the CA(s) that sign https/wss links' certificates."""
        return (self.store.get_parameter("acti_ari_cafile") or "") if self.store else ""

    def make_link(self, config: LinkConfig, heartbeat: float | None = None) -> AsteriskLink:
        """A link wired to the daemon's flows and registered (not started): startup and the
        admin console's `update parameter acti_tlink_NN` both build links here."""
        if heartbeat is None:
            assert self.store is not None
            heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        link = AsteriskLink(config, heartbeat=heartbeat, on_event=self.channelvars.feed,
                            on_up=self._on_link_up, on_down=self._on_link_down)
        link.ami = self.ami_links.get(ami_sibling(config.name))
        self.links[config.name] = link
        self.directory.add_link(link)
        return link

    def make_ami_link(self, config: AmiLinkConfig, heartbeat: float | None = None) -> AmiLink:
        """An AMI connection registered (not started) and handed to its ARI sibling (same NN)
        as `link.ami`: startup and `update parameter acti_amilink_NN` build them here."""
        if heartbeat is None:
            assert self.store is not None
            heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        ami = AmiLink(config, heartbeat=heartbeat)
        if self.acd is not None:  # which queue offers a FreePBX-form member its call
            ami.on("AgentCalled", self.acd.on_agent_called)
        if self.queuefeed is not None:  # wallboards: queue callers and members as they change
            self.queuefeed.attach(ami)
        self.ami_links[config.name] = ami
        sibling = self.links.get(config.sibling)
        if sibling is not None:
            sibling.ami = ami
        if self.acd is not None:  # waiting callers from app_queue's events, no polling
            self._ami_detach[config.name] = self.acd.attach_ami(ami)
        return ami

    def forget_ami_link(self, name: str) -> AmiLink | None:
        """Unregister an AMI connection (the caller stops it); its ARI sibling loses it."""
        ami = self.ami_links.pop(name, None)
        detach = self._ami_detach.pop(name, None)
        if detach is not None:
            detach()
        if self.queuefeed is not None:
            self.queuefeed.detach(name)
        for link in self.links.values():
            if link.ami is ami and ami is not None:
                link.ami = None
        return ami

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
        for ami in self.ami_links.values():
            await ami.stop()
        self.ami_links.clear()
        await self.tasks.cancel_all()
        if self.writer is not None:
            await self.writer.stop()
            self.writer = None
        if self.store is not None:
            self.store.close()
            self.store = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        # SIGHUP (`systemctl reload astcti`) re-reads listeners, extensions and users
        loop.add_signal_handler(signal.SIGHUP, lambda: self.tasks.spawn(
            self.reload(), name="sighup-reload"))
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
        """Apply the store as it is now without a restart (which would drop every agent's
        session): what another process (the Ansible role, an offline astcti-shell) changed in
        it. Parameters (links included: only a changed link reconnects), then listeners, then
        extensions and their pins; users' roles and extensions apply to live connections at
        once (monitors they may no longer have end)."""
        log.info("reloading parameters, listeners, extensions and users from the store")
        if self.services is not None:
            self.services.auth.forget_verifications()
            self.services.auth.reload_users()
            self._end_monitors(lambda identity: True)
        try:
            await self.reload_parameters()
            await self.reload_listeners()
            await self.reload_extensions()
        except AstctiError as exc:
            log.error("reload: %s", exc)

    async def reload_parameters(self) -> None:
        """Apply each parameter whose stored value differs from the one the daemon runs with,
        as `update parameter` does; a bad value costs only itself (one line in the log)."""
        if self.store is None:
            return
        stored = self.store.parameters()
        changed = sorted(n for n in set(stored) | set(self.parameters_applied)
                         if stored.get(n, "") != self.parameters_applied.get(n, ""))
        for name in changed:
            value = stored.get(name, "")
            try:
                words = await self.apply_parameter(name, value)
            except (AstctiError, AriError, ValueError) as exc:
                if LINK_PARAMETER.match(name) or AMI_LINK_PARAMETER.match(name):
                    self.link_errors[name] = str(exc)
                log.error("reload: parameter %s: %s", name, exc)
                continue
            log.info("reload: parameter %s: %s", name, words)

    async def reload_extensions(self) -> None:
        """Watch the extensions the store gained, stop watching those it lost, and serve each
        from the link it is pinned to now (`pin extension` written into the store) with the
        answer mode it has now."""
        if self.store is None:
            return
        rows = self.store.extensions()
        wanted = {e.number: (e.technology, e.link) for e in rows}
        have = {n: (e.technology, e.link) for n, e in self.directory.extensions.items()}
        added = [n for n, (tech, _) in wanted.items() if n not in have or have[n][0] != tech]
        repinned = [n for n, row in wanted.items() if n not in added and have[n] != row]
        removed = sorted(set(have) - set(wanted))
        for number in added:
            tech, link = wanted[number]
            try:
                await self.watch_extension(number, tech, link)
            except (AriError, AstctiError) as exc:
                log.warning("extension %s: subscribing failed (%s): retried when the link"
                            " reconnects", number, exc)
        for number in repinned:
            link = wanted[number][1]
            try:
                served = await self.pin_extension(number, link)
            except (AriError, AstctiError) as exc:
                log.warning("extension %s: subscribing failed (%s): retried when the link"
                            " reconnects", number, exc)
                continue
            log.info("extension %s %s: %s", number,
                     f"pinned to {link}" if link else "unpinned",
                     f"served by {served}" if served else self.why_unserved(number))
        for number in removed:
            await self.unwatch_extension(number, "extension removed by the administrator")
        answers = 0
        for row in rows:
            ext = self.directory.extensions.get(row.number)
            if ext is not None and ext.answer != row.answer:
                self.set_extension_answer(row.number, row.answer)
                answers += 1
        if added or repinned or removed or answers:
            log.info("extensions: %d added or changed, %d pins changed, %d answer modes"
                     " changed, %d removed", len(added), len(repinned), answers, len(removed))

    async def reload_listeners(self) -> dict[int, str]:
        """Open/close listeners to match the store's rows, without touching unchanged ones."""
        if self.listeners is None or self.store is None:
            return {}
        if self.seating is not None:  # the ipextnmap may have been changed the same way
            self.seating.reload()
        return await self.listeners.sync(self.store.listeners())

    # -- operations: how the admin console changes and reads the running daemon ------------------
    # (admin/commands/* write the store themselves, then call these; nothing else reaches in)
    async def apply_parameter(self, name: str, value: str) -> str:
        """Make the running daemon use a parameter's new value now; the words say how."""
        self.parameters_applied[name] = value
        if LINK_PARAMETER.match(name):
            return await self.reconfigure_link(name, value)
        if AMI_LINK_PARAMETER.match(name):
            return await self.reconfigure_ami_link(name, value)
        if name == "acti_heartbeat":
            for link in [*self.links.values(), *self.ami_links.values()]:
                link.heartbeat = float(value)
            return "used by each link from its next connection"
        if name == "acti_resume_size":
            self.hub.resize_buffers(int(value))
            return "applied to the resume buffers"
        if name == "acti_resume_age":
            self.hub.buffer_age = float(value)
            return "applied to the resume buffers"
        if name == "acti_defaultexttype":
            return "used by the next `add extension` without a technology"
        if name == "acti_ari_cafile":
            restarted = [n for n, link in list(self.links.items()) if link.config.tls]
            for link_name in restarted:
                assert self.store is not None
                await self.reconfigure_link(link_name, self.store.get_parameter(link_name) or "")
            return (f"TLS link(s) {', '.join(restarted)} restarted with it" if restarted
                    else "used by https/wss links when they connect")
        if name == "acti_origins":
            if self.listeners is not None:
                self.listeners.origins.set(value)
            return "applied to every HTTP and WebSocket listener"
        if name == "acti_dial_context":
            self.control.dial_context = value or "from-internal"
            return "used by the next call control request"
        if name == "acti_answer":
            self.control.default_answer = value or "reoffer"
            return "used by the next answer request"
        if name == "acti_servicelevel" and self.queuestats is not None:
            self.queuestats.apply_parameter(name, value)
            return "applied to the wallboards' service level"
        return "stored; read where it is used"

    async def reconfigure_link(self, name: str, value: str) -> str:
        """Stop the link of that parameter (if any) and start it with the new value."""
        old = self.links.pop(name, None)
        self.link_errors.pop(name, None)
        if old is not None:
            served = [e for e, n in self.directory.serving.items() if n == name]
            await old.stop()
            self.directory.remove_link(name)
            same_pbx = bool(value) and parse_link(name, value, None).base_url == old.config.base_url
            if not same_pbx:  # another (or no) Asterisk: its calls are gone for astcti
                self.hub.publish_all(self.tracker.resync(name, [], _now()))
            # (same Asterisk: the resync on reconnect reconciles the calls without false clears)
            for ext in served:
                self.hub.publish(LinkDown(ext, "", _now(), link=name,
                                          reason="link reconfigured by the administrator"))
        if not value:
            return "link stopped" if old is not None else "no link to stop"
        config = parse_link(name, value, self.cipher, self._cafile())
        link = self.make_link(config)
        link.start()
        up = await link.wait_up(5)
        where = f"{config.host}:{config.port}"
        verb = "restarted" if old else "started"
        if up:
            return f"link {verb}: connected to Asterisk {link.version} at {where}"
        return (f"link {verb}: not connected yet ({link.last_error or 'connecting'}):"
                " see `show links`")

    async def reconfigure_ami_link(self, name: str, value: str) -> str:
        """Stop the AMI link of that parameter (if any) and start it with the new value."""
        old = self.forget_ami_link(name)
        self.link_errors.pop(name, None)
        if old is not None:
            await old.stop()
        if not value:
            return "AMI link stopped" if old is not None else "no AMI link to stop"
        config = parse_amilink(name, value, self.cipher)
        ami = self.make_ami_link(config)
        ami.start()
        verb = "restarted" if old else "started"
        if await ami.wait_up(5):
            return f"AMI link {verb}: connected to {config.address} as {config.username}"
        return (f"AMI link {verb}: not connected yet ({ami.last_error or 'connecting'}):"
                " see `show links`")

    def link_statuses(self) -> list[tuple[str, LinkStatus | AmiStatus | None, str]]:
        """(parameter, status or None when not started, configuration error) per link: each
        acti_tlink_NN followed by its acti_amilink_NN."""
        names = set(self.links) | set(self.ami_links) | set(self.link_errors)
        out: list[tuple[str, LinkStatus | AmiStatus | None, str]] = []
        for name in sorted(names, key=lambda n: (n.rsplit("_", 1)[-1], "amilink" in n)):
            link = self.links.get(name) or self.ami_links.get(name)
            out.append((name, link.status() if link is not None else None,
                        self.link_errors.get(name, "")))
        return out

    async def watch_extension(self, number: str, technology: str,
                              link: str | None = None) -> str | None:
        """Watch an extension now (pinned to `link`; None: as it is); the link serving it, or
        None until an Asterisk has it. AstctiError/AriError when the subscription fails
        (retried at the next reconnect)."""
        for each in self.links.values():
            if each.up:
                try:  # the PBX may have gained the endpoint since the link connected
                    endpoints = await each.call("endpoints", "list") or []
                    each.endpoints = {f"{e['technology']}/{e['resource']}" for e in endpoints}
                except (AriError, AstctiError) as exc:
                    log.info("%s: cannot refresh endpoints: %s", each.name, exc)
        if link is None:
            current = self.directory.extensions.get(number)
            link = current.link if current else ""
        return await self.directory.add(number, technology, link)

    async def pin_extension(self, number: str, link: str) -> str | None:
        """Serve an extension from `link` only ("": from wherever its endpoint is). Its
        monitors get linkdown if the link serving it changes. Returns the serving link."""
        assert self.store is not None
        ext = self.directory.extensions[number]
        before = self.directory.serving.get(number)
        served = await self.directory.add(number, ext.technology, link)
        after = self.directory.serving.get(number)
        if before is not None and after != before:
            self.tracker.drop_extension(number)
            self.hub.publish(LinkDown(number, "", _now(), link=before,
                                      reason=f"extension {number} now served by"
                                             f" {after or 'no link'} (pinned by the"
                                             " administrator)"))
        if after is not None and after != before and served:
            self.hub.publish(LinkUp(number, "", _now(), link=after))
        return served

    def set_extension_answer(self, number: str, answer: str) -> None:
        """How `answer` reaches this extension's phone from now on ("" = acti_answer)."""
        self.directory.set_answer(number, answer)

    def why_unserved(self, number: str) -> str:
        return self.directory.why_unserved(number)

    def extension_state(self, number: str) -> tuple[str, bool, int]:
        """(serving link name or "", served now, monitoring clients) of an extension."""
        link = self.directory.link_of(number)
        return (link.name if link else "", bool(link and link.up),
                len(self.hub.monitors.get(number, ())))

    async def unwatch_extension(self, number: str, reason: str) -> int:
        """Stop watching an extension; its monitors get `linkdown` with the reason and end.
        Returns how many clients monitored it."""
        watchers = tuple(self.hub.monitors.get(number, ()))
        if watchers:
            link = self.directory.link_of(number)
            self.hub.publish(LinkDown(number, "", _now(), link=link.name if link else "",
                                      reason=reason))
            for sub in watchers:
                self.hub.detach(sub, number)
        await self.directory.remove(number)
        self.tracker.drop_extension(number)
        return len(watchers)

    async def add_listener(self, row: ListenerRow) -> None:
        """Open (or replace) a listener, then keep it in the store; on any failure the previous
        listener of that port is back and the store is unchanged."""
        assert self.store is not None and self.listeners is not None
        previous = {r.port: r for r in self.store.listeners()}.get(row.port)
        try:
            await self.listeners.open(row)
        except AstctiError:
            await self._reopen(previous)
            raise
        try:
            self.store.add_listener(row)
        except AstctiError:
            await self.listeners.close(row.port)
            await self._reopen(previous)
            raise

    async def _reopen(self, row: ListenerRow | None) -> None:
        if row is not None and self.listeners is not None:
            try:
                await self.listeners.open(row)
            except AstctiError as exc:
                log.error("%s", exc)

    async def close_listener(self, port: int) -> bool:
        """Close a listener and disconnect its clients; False if it was not open."""
        return self.listeners is not None and await self.listeners.close(port)

    def listener_state(self, port: int) -> str:
        if self.listeners is None:
            return "-"
        if port in self.listeners.running:
            return "listening"
        return "error: " + self.listeners.errors.get(port, "not open")

    def monitors(self) -> list[tuple[str, Session]]:
        """(extension, client session) for every monitor, by extension then session."""
        return [(ext, sub) for ext in sorted(self.hub.monitors)
                for sub in sorted(self.hub.monitors[ext], key=lambda s: getattr(s, "id", 0))]

    def calls(self) -> list[Connection]:
        """The monitored call legs astcti tracks now."""
        return sorted(self.tracker.connections.values(), key=lambda c: (c.callid, c.extension))

    def agents(self) -> list[dict[str, object]] | None:
        """Logged-in ACD agents (None: this daemon runs no ACD service)."""
        return None if self.acd is None else self.acd.agents_view()

    def seat(self, address: str, extension: str) -> int:
        """Free seating: the address sits at the extension from now on (stored too); its
        auth=none connections' monitors of another extension end. Returns how many ended."""
        assert self.seating is not None
        self.seating.map(address, extension)
        return self._end_monitors(lambda i: i.address == address)

    def unseat(self, address: str) -> bool:
        assert self.seating is not None
        gone = self.seating.unmap(address)
        self._end_monitors(lambda i: i.address == address)
        return gone

    def revoke_user(self, username: str) -> int:
        """After a password change or removal: the user's tokens and cached logins end now
        (and, removed, its connections' monitors). Returns how many tokens were live."""
        if self.services is None:
            return 0
        revoked = self.services.auth.forget_user(username)
        self.refresh_user(username)
        return revoked

    def refresh_user(self, username: str) -> int:
        """A user's role or extensions changed (or it was removed): its connections act with
        the new rights from now on, and the monitors they may no longer have end now.
        Returns how many monitors ended."""
        if self.services is None:
            return 0
        self.services.auth.reload_users()
        return self._end_monitors(lambda i: i.user and i.username == username)

    def _end_monitors(self, whose: Callable[[Identity], bool]) -> int:
        """The connections of `whose` identities act with their rights as they are now; the
        monitors they may no longer have end. Returns how many ended."""
        assert self.services is not None
        ended = 0
        for topic, subscribers in list(self.hub.monitors.items()):
            for sub in list(subscribers):
                identity = getattr(sub, "identity", None)
                if identity is None or not whose(identity):
                    continue
                if identity.address:
                    current = address_identity(self.seating, identity.address)
                else:
                    current = self.services.auth.current(identity)
                sub.identity = current
                if current is None or not may_watch(current, topic):
                    self.hub.detach(sub, topic)
                    ended += 1
        if ended:
            log.info("%d monitor(s) ended: rights changed by an administrator", ended)
        return ended

    # -- the event flow -------------------------------------------------------------------------
    def _tracked(self, link_name: str, channel: dict[str, Any]) -> bool:
        return self.directory.resolve(link_name, endpoint_of(channel["name"])) is not None

    def _on_ari_event(self, link: AsteriskLink, event: AriEvent) -> None:
        """Every consumer sees every event: one that fails is logged and the others still run
        (none of them writes to the store here: see astcti/store/writer.py)."""
        self.trace.on_ari(link.name, event)  # no-op unless someone traces
        kind = str(event.get("type", "?"))
        consume = self._consume
        cti_events = consume("tracker", kind, self.tracker.handle, link.name, event) or []
        if self.userdata is not None and cti_events:  # the call's user data on its events
            cti_events = consume("user data", kind, self.userdata.decorate, cti_events) \
                or cti_events
        if cti_events:
            consume("hub", kind, self.hub.publish_all, cti_events)
        consume("call control", kind, self.control.on_event, link, event)
        if self.acd is not None:  # queue helper replies, pause changes, queue calls
            consume("ACD", kind, self.acd.on_event, link, event, cti_events)
        if self.presence is not None:
            consume("presence", kind, self.presence.on_ari_event, link, event)

    @staticmethod
    def _consume(consumer: str, kind: str, handler: Callable[..., Any], *args: Any) -> Any:
        try:
            return handler(*args)
        except Exception:
            log.exception("%s failed on ARI event %s (the other consumers still got it)",
                          consumer, kind)
            return None

    def _check_system_names(self, link: AsteriskLink) -> None:
        """Two Asterisks with the same `systemname` (none, by default) make the same uniqueids
        when their clocks and call counters meet, so two calls could share a callid: say so."""
        twins = sorted(other.name for other in self.links.values() if other is not link
                       and other.up and other.system_name == link.system_name)
        if twins:
            name = f"systemname {link.system_name!r}" if link.system_name else "no systemname"
            log.error("%s and %s are Asterisks with %s: their call ids can coincide and astcti"
                      " would take two calls for one: give each a distinct `systemname` in"
                      " asterisk.conf [options] (one of them may keep none)", link.name,
                      ", ".join(twins), name)

    async def _on_link_up(self, link: AsteriskLink) -> None:
        """Resubscribe the configured extensions and resynchronise calls after any connect."""
        self._check_system_names(link)
        self.channelvars.reset(link.name)
        for ext, reason in await self.directory.link_up(link):
            # this Asterisk has the number another one served: it is ambiguous now
            self.tracker.drop_extension(ext)
            self.hub.publish(LinkDown(ext, "", _now(), link="", reason=reason))
        await self._filter_events(link)
        try:
            channels = await link.rest.call("channels", "list") or []
            await self.channelvars.fill(link, channels)
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
        if len(self.directory.extensions) >= 1000:  # (thousands of subscription answers)
            heap.trim()

    async def _filter_events(self, link: AsteriskLink) -> None:
        """Asterisk keeps to itself the events nothing in astcti reads (IGNORED_ARI_EVENTS):
        ChannelVarset alone is two thirds of the stream (the tracker reads channelvars
        instead), and every event costs a frame to parse on both sides."""
        try:
            await link.rest.send_json("PUT", f"applications/{link.config.app}/eventFilter",
                                      {"disallowed": [{"type": t} for t in IGNORED_ARI_EVENTS]})
        except AriError as exc:
            log.info("%s: event filter not applied (%s)", link.name, exc.message)

    # -- ACD agents and user data ---------------------------------------------------------------
    def _start_acd(self) -> None:
        assert self.store is not None
        grace = float(self.store.get_parameter("acti_userdata_grace", "60") or 60)
        self.writer = StoreWriter(self.db_path)
        self.writer.start()
        self.userdata = UserDataService(self.store, grace=grace, writer=self.writer)
        self.acd = AcdService(self.store, self.directory, self.hub, writer=self.writer)
        self.tracker.queue_of = self.acd.queue_of
        self.tracker.queue_offer = self.acd.queue_offered
        self.control.userdata = self.userdata
        self._start_desktop_services()

    def _start_desktop_services(self) -> None:
        """Line states and queue statistics: derived from the events the hub publishes."""
        assert self.store is not None and self.acd is not None
        acd = self.acd

        def agent_of(extension: str) -> tuple[str, str]:
            agent = acd.agents.get(extension)
            return (agent.agentid, agent.state) if agent is not None else ("", "")

        self.presence = PresenceService(self.directory, self.hub, agent_of)
        self.queuestats = QueueStatsService(self.store, self.hub, self.tracker, acd)
        acd.on_waiting = self.queuestats.waiting_list  # without AMI
        self.queuefeed = AmiQueueFeed(self.queuestats)
        self.hub.observers += [self.presence.on_cti_event, self.queuestats.on_cti_event]

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
