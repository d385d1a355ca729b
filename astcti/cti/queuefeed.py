"""Queue callers from AMI for the wallboard: app_queue's own events, no channel per read.

app_queue announces callers joining, leaving, abandoning and being connected to an agent only
to AMI (`QueueCallerJoin`, `QueueCallerLeave`, `QueueCallerAbandon`, `AgentConnect`; class
`agent`), with the wait Asterisk measured (`HoldTime`). After every AMI (re)connect one
`QueueStatus` re-reads every queue and its waiting callers (`QueueParams`, `QueueEntry`), so a
restart of either side never leaves a stale caller on a wallboard. Without AMI, the ACD
service's reads of app_queue's functions feed the board instead (`QueueStatsService.waiting_list`).

A caller is keyed by its call's linkedid (the callid of astcti's events); `QueueEntry` carries
only the channel's uniqueid, which is the linkedid for a caller who dialled the queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from astcti.cti.queuestats import QueueStatsService
from astcti.errors import AstctiError

log = logging.getLogger(__name__)

AmiMessage = dict[str, Any]


class AmiSource(Protocol):
    """What the feed needs of an AMI link (astcti.pbx.ami.AmiLink)."""

    name: str
    up: bool
    up_hooks: list[Any]

    def on(self, pattern: str, handler: Callable[[Any, AmiMessage], None]) -> Callable[[], None]:
        ...

    async def queue_status(self, queue: str | None = None,
                           member: str | None = None) -> list[AmiMessage]:
        ...


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


class AmiQueueFeed:
    """Feeds `QueueStatsService` from the AMI links it is attached to."""

    EVENTS = ("QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentConnect",
              "QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause", "QueueMemberRemoved")

    def __init__(self, stats: QueueStatsService, clock: Callable[[], float] = time.time) -> None:
        self.stats = stats
        self.clock = clock
        self.links: dict[str, Callable[[], None]] = {}  # AMI link name -> detach
        self.amis: dict[str, AmiSource] = {}
        stats.event_feed_up = self.up
        self._keys: dict[str, str] = {}  # caller channel uniqueid -> board key (linkedid)

    def attach(self, ami: AmiSource) -> None:
        """Listen to one AMI link (again after it was replaced: the old handlers go)."""
        self.detach(ami.name)
        removers = [ami.on(name, self.on_event) for name in self.EVENTS]
        ami.up_hooks.append(self.resync)

        def detach() -> None:
            for remove in removers:
                remove()
            if self.resync in ami.up_hooks:
                ami.up_hooks.remove(self.resync)
        self.links[ami.name] = detach
        self.amis[ami.name] = ami

    def detach(self, name: str) -> None:
        detach = self.links.pop(name, None)
        self.amis.pop(name, None)
        if detach is not None:
            detach()

    def up(self) -> bool:
        """Whether an attached AMI is connected (its events keep the board right)."""
        return any(getattr(ami, "up", False) for ami in self.amis.values())

    # -- events ---------------------------------------------------------------------------------
    def _key(self, event: AmiMessage, *, forget: bool) -> str:
        uniqueid = str(event.get("Uniqueid", ""))
        key = self._keys.pop(uniqueid, None) if forget else self._keys.get(uniqueid)
        return key or str(event.get("Linkedid") or uniqueid)

    def on_event(self, link: Any, event: AmiMessage) -> None:
        name, queue = event.get("Event"), str(event.get("Queue", ""))
        if not queue:
            return
        if name == "QueueCallerJoin":
            key = str(event.get("Linkedid") or event.get("Uniqueid", ""))
            self._keys[str(event.get("Uniqueid", ""))] = key
            self.stats.caller_joined(queue, key, str(event.get("CallerIDNum", "")),
                                     _name(event.get("CallerIDName")),
                                     position=_int(event.get("Position")))
        elif name == "AgentConnect":
            key = self._key(event, forget=False)
            self.stats.caller_answered(queue, key, waited=float(_int(event.get("HoldTime"))))
            if event.get("MemberName"):
                self.stats.count_handled(str(event["MemberName"]), key)
        elif name == "QueueCallerAbandon":
            self.stats.caller_left(queue, self._key(event, forget=True), abandoned=True)
        elif name == "QueueCallerLeave":  # answered (after AgentConnect) or sent on (timeout...)
            self.stats.caller_left(queue, self._key(event, forget=True), abandoned=False)
        elif name == "QueueMemberRemoved":
            self.stats.member_removed(queue, str(event.get("Interface", "")))
        elif name in ("QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause"):
            self.stats.member_update(queue, str(event.get("Interface", "")),
                                     **member_fields(event, "MemberName"))

    # -- after a (re)connect ----------------------------------------------------------------------
    async def resync(self, ami: AmiSource) -> None:
        """Every queue and its callers as Asterisk has them now."""
        try:
            messages = await ami.queue_status()
        except AstctiError as exc:  # AmiError: down again, or no answer in time
            log.warning("%s: cannot read the queues for the wallboards: %s", ami.name, exc)
            return
        now = self.clock()
        waiting: dict[str, list[tuple[str, str, str, float, int]]] = {}
        members: list[dict[str, Any]] = []
        for message in messages:
            kind, queue = message.get("Event"), str(message.get("Queue", ""))
            if not queue:
                continue
            if kind == "QueueParams":
                waiting.setdefault(queue, [])
            elif kind == "QueueMember":
                members.append({"queue": queue, "interface": str(message.get("Location", "")),
                                **member_fields(message, "Name")})
            elif kind == "QueueEntry":
                uniqueid = str(message.get("Uniqueid", ""))
                key = self._keys.setdefault(uniqueid, uniqueid)
                waiting.setdefault(queue, []).append((
                    key, str(message.get("CallerIDNum", "")), _name(message.get("CallerIDName")),
                    now - _int(message.get("Wait")), _int(message.get("Position"))))
        self.stats.replace_callers(waiting)
        self.stats.replace_members(members)
        log.info("%s: queue statistics from AMI (%d queues)", ami.name, len(waiting))


def member_fields(message: AmiMessage, name_key: str) -> dict[str, Any]:
    """`QueueMember*` headers -> QueueStatsService.member_update arguments (only those sent)."""
    fields: dict[str, Any] = {"name": str(message.get(name_key, "")),
                              "state_interface": str(message.get("StateInterface", ""))}
    if "Paused" in message:
        fields["paused"] = str(message["Paused"]) == "1"
    if "PausedReason" in message:
        fields["reason"] = str(message["PausedReason"] or "")
    if "Status" in message:
        fields["status"] = _int(message["Status"], 1)
    if "InCall" in message:
        fields["incall"] = str(message["InCall"]) == "1"
    return fields


def _name(value: Any) -> str:
    """AMI says `<unknown>` for a caller without a name."""
    text = str(value or "")
    return "" if text in ("<unknown>", "unknown") else text
