"""The only module that knows how AMI (Asterisk's manager interface) is reached.

ARI cannot act on a channel outside a Stasis application, and has no queue resource; AMI can
(`Redirect` moves two bridged channels at once, `QueueStatus` reads queues without creating a
channel). panoramisk parses the protocol and matches responses to actions; this module supplies
what it lacks for a daemon, as :mod:`astcti.pbx.link` does for ARI: one supervised connection
per Asterisk with backoff, a heartbeat (an unanswered `Ping` closes the connection), a timeout
on every action, an MD5 challenge login (the secret never crosses the wire nor reaches a log),
and failures turned into :class:`AmiError` lines. panoramisk's own reconnect, pinger and resend
of pending actions are switched off: a `Redirect` resent after a reconnect would act on a call
that has moved on.

Consumers see plain dicts (``AmiMessage``: header name as Asterisk spells it -> value, a list
for repeated headers), never panoramisk objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.message import Message

from astcti.errors import AstctiError
from astcti.pbx.linkconfig import AmiLinkConfig
from astcti.pbx.supervisor import Supervised

log = logging.getLogger(__name__)

ACTION_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0

AmiMessage = dict[str, Any]  # headers of one response or event; repeated headers -> list
EventHandler = Callable[["AmiLink", AmiMessage], None]
UpHook = Callable[["AmiLink"], Awaitable[None]]


class AmiError(AstctiError):
    """An AMI action failed (Asterisk said Error, no answer in time, or the link is down)."""


@dataclass
class AmiStatus:
    name: str
    address: str
    up: bool
    since: datetime
    version: str | None  # the AMI protocol version from Asterisk's banner
    last_error: str | None


def _plain(message: Message) -> AmiMessage:
    out = dict(message.items())
    if not out.get("content"):  # panoramisk's slot for a command's text body
        out.pop("content", None)
    return out


def _redacted(record: logging.LogRecord) -> bool:
    """panoramisk logs whole actions on some failures: never let a login's key through."""
    text = record.getMessage()
    return "Secret" not in text and "Key:" not in text


class _Manager(Manager):
    """panoramisk's Manager without its own reconnect, pinger, resend and login."""

    def __init__(self, on_lost: Callable[[Any], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost
        self.opened: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, f: asyncio.Future[Any]) -> None:  # a connect task's callback
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            if not self.opened.done():
                self.opened.set_exception(exc)
            return
        super().connection_made(f)  # wires the protocol; no 'username' in config: no login
        if not self.opened.done():
            self.opened.set_result(None)

    def ping(self) -> None:  # AmiLink's heartbeat checks the answers; panoramisk's does not
        pass

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self.awaiting_actions.clear()
        self._on_lost(exc)


class AmiLink(Supervised):
    """A supervised AMI connection to one Asterisk, with actions and event callbacks (the
    reconnect loop: :mod:`astcti.pbx.supervisor`).

    `link.ami` of the ARI link of the same Asterisk (same NN) is this object, so a service that
    holds an :class:`~astcti.pbx.link.AsteriskLink` reaches its AMI without a lookup.
    """

    log = log
    DOWN = "AMI down"
    UNEXPECTED = "unexpected AMI error"
    TASK_PREFIX = "ami"

    def __init__(self, config: AmiLinkConfig, *, heartbeat: float = 5.0,
                 action_timeout: float = ACTION_TIMEOUT) -> None:
        super().__init__()
        self.config = config
        self.heartbeat = heartbeat
        self.action_timeout = action_timeout
        self.version: str | None = None
        self.up_hooks: list[UpHook] = []  # run after every (re)connect, e.g. to resync
        self._handlers: list[tuple[str, EventHandler]] = []
        self._manager: _Manager | None = None
        self._lost: asyncio.Event | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._log = logging.getLogger(f"{__name__}.panoramisk")
        self._log.addFilter(_redacted)

    @property
    def name(self) -> str:
        return self.config.name

    def status(self) -> AmiStatus:
        return AmiStatus(self.name, self.config.address, self.up, self.since, self.version,
                         self.last_error)

    # -- events ---------------------------------------------------------------------------------
    def on(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call `handler(link, event)` for events whose name matches `pattern` (fnmatch, e.g.
        ``QueueMember*``); returns a function that removes it. The AMI user's `read` classes
        decide which events Asterisk sends at all (the lab's: `agent`, the queue events).
        Handlers run in the read loop: keep them short and never block."""
        entry = (pattern, handler)
        self._handlers.append(entry)

        def remove() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)
        return remove

    def _dispatch(self, manager: Manager, message: Message) -> None:
        if manager is not self._manager or not self._handlers:
            return
        name = str(message.get("Event", ""))
        event: AmiMessage | None = None
        for pattern, handler in list(self._handlers):
            if fnmatchcase(name, pattern):
                event = event if event is not None else _plain(message)
                try:
                    handler(self, event)
                except Exception:
                    log.exception("%s: AMI event handler failed on %s", self.name, name)

    # -- lifecycle ------------------------------------------------------------------------------
    async def stop(self) -> None:
        await self._stop_supervising()
        await self._teardown()
        self.up = False
        self._up_event.clear()

    def _failure(self, exc: Exception) -> str | None:
        return str(exc) if isinstance(exc, AmiError) else None

    async def _connect(self) -> None:
        c = self.config
        loop = asyncio.get_running_loop()
        self._lost = lost = asyncio.Event()
        manager = _Manager(lambda exc: lost.set(), loop=loop, host=c.host.strip("[]"),
                           port=c.port, events="off", log=self._log,
                           forgetable_actions=("ping", "login", "challenge"))
        manager.register_event("*", self._dispatch)
        self._manager = manager
        manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(manager.opened), CONNECT_TIMEOUT)
        except TimeoutError:
            raise AmiError(f"{c.name}: no answer from AMI at {c.address} within"
                           f" {CONNECT_TIMEOUT:.0f} s: is manager.conf enabled on that address"
                           " and the port open?") from None
        except OSError as exc:
            raise AmiError(f"{c.name}: cannot reach AMI at {c.address}"
                           f" ({exc.strerror or exc}): is Asterisk running with manager.conf"
                           " enabled (bindaddr, port) on that address?") from None
        challenge = await self._send({"Action": "Challenge", "AuthType": "MD5"}, manager)
        key = hashlib.md5((str(challenge.get("Challenge", "")) + c.secret).encode()).hexdigest()
        reply = await self._send({"Action": "Login", "AuthType": "MD5", "Username": c.username,
                                  "Key": key, "Events": "on"}, manager, check=False)
        if reply.get("Response") != "Success":
            raise AmiError(f"{c.name}: Asterisk rejected AMI user {c.username!r}"
                           f" ({reply.get('Message', 'no reason')}): check the user's secret and"
                           " permit/deny in manager.conf against the parameter")
        self.version = getattr(manager.protocol, "version", None)
        self._mark_up()
        log.info("%s: AMI connected at %s as %s (protocol %s)", c.name, c.address, c.username,
                 self.version)
        for hook in list(self.up_hooks):
            try:
                await hook(self)
            except Exception:
                log.exception("%s: AMI up hook failed", c.name)
        self._up_event.set()

    async def _serve(self) -> str:
        """Until the connection ends: a Ping every heartbeat, unanswered -> down."""
        assert self._lost is not None
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.heartbeat)
                return "AMI connection closed (Asterisk stopped or network cut)"
            except TimeoutError:
                pass
            try:
                await self._send({"Action": "Ping"}, timeout=max(self.heartbeat, 1.0))
            except AmiError:
                if self._lost.is_set():
                    return "AMI connection closed (Asterisk stopped or network cut)"
                return f"AMI did not answer a ping within {max(self.heartbeat, 1.0):g} s"

    async def _teardown(self) -> None:
        """Close the connection and fail the actions still waiting for an answer (no await:
        it runs to the end even while the supervisor is being cancelled)."""
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
        for future in list(self._pending):
            if not future.done():
                future.set_exception(AmiError(f"{self.name}: AMI connection lost before"
                                              " Asterisk answered"))
        self._pending.clear()

    # -- actions --------------------------------------------------------------------------------
    async def _send(self, fields: dict[str, Any], manager: _Manager | None = None, *,
                    timeout: float | None = None, check: bool = True) -> Any:
        manager = manager or self._manager
        name = fields.get("Action", "?")
        if manager is None or manager.protocol is None or self._lost is None \
                or self._lost.is_set():
            raise AmiError(f"{self.name}: AMI is not connected ({self.last_error or 'connecting'});"
                           " retry when it is back")
        # panoramisk keeps a future per action and only resolves it: add ours to fail on loss.
        # It tells a list answer (EventList: start) from a single one by itself; forcing
        # as_list would leave an Error answer to a list action unresolved.
        action = Action(fields)
        future = manager.send_action(action)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(waiter)

        def relay(done: asyncio.Future[Any]) -> None:
            if not waiter.done():
                if done.cancelled():
                    waiter.cancel()
                elif done.exception() is not None:
                    waiter.set_exception(done.exception())  # type: ignore[arg-type]
                else:
                    waiter.set_result(done.result())
        future.add_done_callback(relay)
        wait = timeout or self.action_timeout
        try:
            result = await asyncio.wait_for(waiter, wait)
        except TimeoutError:
            manager.protocol.responses.pop(action.id, None)
            raise AmiError(f"{self.name}: AMI {name} got no answer within {wait:g} s") from None
        finally:
            self._pending.discard(waiter)
        if isinstance(result, list):
            return [_plain(m) for m in result]
        reply = _plain(result)
        if check and reply.get("Response") not in ("Success", "Follows", "Goodbye"):
            raise AmiError(f"{self.name}: AMI {name} failed:"
                           f" {reply.get('Message') or reply.get('Response') or 'no reason'}")
        return reply

    async def action(self, name: str, *, timeout: float | None = None,
                     **fields: Any) -> AmiMessage:
        """Run one AMI action; its response headers, or AmiError (Error, timeout, down).

        Field names as in Asterisk's AMI docs (`Channel`, `ExtraChannel`...); a list value
        repeats the header (e.g. `Variable`)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        return await self._send({"Action": name, **fields}, timeout=timeout)

    async def action_list(self, name: str, *, timeout: float | None = None,
                          **fields: Any) -> list[AmiMessage]:
        """Run an action that answers with an event list (QueueStatus, CoreShowChannels...);
        the list's events without the opening response and the closing `...Complete` event."""
        fields = {k: v for k, v in fields.items() if v is not None}
        messages = await self._send({"Action": name, **fields}, timeout=timeout, check=False)
        if not isinstance(messages, list):
            messages = [messages]
        head = messages[0] if messages else {}
        if head.get("Response") not in ("Success", None):
            raise AmiError(f"{self.name}: AMI {name} failed:"
                           f" {head.get('Message') or head.get('Response')}")
        return [m for m in messages
                if "Event" in m and m.get("EventList") != "Complete"
                and not str(m.get("Event", "")).endswith("Complete")]

    # -- the actions astcti uses ----------------------------------------------------------------
    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1, *,
                       extra_channel: str | None = None, extra_context: str | None = None,
                       extra_exten: str | None = None,
                       extra_priority: int | None = None) -> None:
        """Send `channel` (and, at the same moment, `extra_channel`: two bridged parties move
        together, so the call is not torn down) to a dialplan location."""
        await self.action("Redirect", Channel=channel, Context=context, Exten=exten,
                          Priority=str(priority), ExtraChannel=extra_channel,
                          ExtraContext=extra_context if extra_channel else None,
                          ExtraExten=extra_exten if extra_channel else None,
                          ExtraPriority=str(extra_priority) if extra_channel and extra_priority
                          else None)

    async def getvar(self, channel: str, variable: str) -> str:
        """A channel variable or function (e.g. CHANNEL(linkedid)) of any channel."""
        reply = await self.action("Getvar", Channel=channel, Variable=variable)
        return str(reply.get("Value") or "")

    async def queue_status(self, queue: str | None = None,
                           member: str | None = None) -> list[AmiMessage]:
        """`QueueParams`, `QueueMember` and `QueueEntry` events of one queue (or all)."""
        return await self.action_list("QueueStatus", Queue=queue, Member=member)

    async def queue_summary(self, queue: str | None = None) -> list[AmiMessage]:
        """One `QueueSummary` event per queue: logged-in/available members, callers, hold time."""
        return await self.action_list("QueueSummary", Queue=queue)
