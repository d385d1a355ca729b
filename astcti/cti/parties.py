"""Who is in the extension's calls: the events' party fields, `partycleared` and `idle`.

The tracker turns each ARI event into CTI events; this completes them the way the astCTI
author's clients read them: every call event names `calling`, `called` and `origcalling` (the
original caller once the call was transferred or diverted here), another party leaving the
extension's call is reported (`partycleared`, eventtype `disconnect`, `releasing` = that party)
and an extension left without any call gets `idle`. Pure, like the tracker.

Parties are followed through astcti's own bridges (only those reach its Stasis app): a channel
belongs to the bridge it last entered until it enters another one, so an agent that holds (out
of the bridge, waiting to come back) still hears of the parties that leave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from astcti.cti.events import (
    PARTY_EVENTS, ConnectionCleared, CtiEvent, Idle, PartyCleared, Transferred,
)
from astcti.cti.model import Connection

if TYPE_CHECKING:
    from astcti.cti.tracker import Tracker

AriEvent = dict[str, Any]
#: (link, channel id) -> the party's number as call control knows it ("" if it does not)
NumberOf = Callable[[str, str], str]
#: the ARI events `Parties.before` reads (the tracker hands them on even where it reads none)
FOLLOWED = frozenset(("ChannelEnteredBridge", "StasisEnd", "ChannelDestroyed",
                      "BridgeDestroyed"))
_NONE: list[CtiEvent] = []  # returned, never changed


class Parties:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        #: set by the daemon: call control's number of a channel it handles
        self.number_of: NumberOf | None = None
        self._bridge_of: dict[tuple[str, str], str] = {}  # (link, channel) -> its bridge
        self._members: dict[tuple[str, str], set[str]] = {}  # (link, bridge) -> channels
        self._leaving: dict[tuple[str, str], Connection] = {}  # (extension, callid), this event

    # -- before the tracker handles an ARI event -----------------------------------------------
    def before(self, link: str, event: AriEvent) -> list[CtiEvent]:
        """Follow bridge membership; a destroyed channel is a party leaving its conversation."""
        kind = event.get("type")
        if kind not in FOLLOWED:
            return _NONE
        channel = event.get("channel") or {}
        channel_id = channel.get("id", "")
        if kind == "ChannelEnteredBridge":
            bridge = (event.get("bridge") or {}).get("id", "")
            old = self._bridge_of.get((link, channel_id))
            if old is not None:
                self._members.get((link, old), set()).discard(channel_id)
            self._bridge_of[(link, channel_id)] = bridge
            self._members.setdefault((link, bridge), set()).add(channel_id)
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            # out of astcti's app is out of its conversation for good (hung up, or swapped out
            # by a phone's transfer): said at StasisEnd, since astcti's reaction to it (the
            # other party hung up, the bridge destroyed) can reach us before the channel's own
            # ChannelDestroyed, which then finds it gone
            lines = self.tracker.lines_of(link, channel_id)
            if kind == "ChannelDestroyed":
                for conn in lines:  # its connections clear now: keep them for the party fields
                    self._leaving[(conn.extension, conn.callid)] = conn
            return self._left(link, channel, lines[0] if lines else None,
                              event.get("timestamp", ""))
        elif kind == "BridgeDestroyed":
            for member in self._members.pop((link, (event.get("bridge") or {}).get("id", "")),
                                            set()):
                self._bridge_of.pop((link, member), None)
        return []

    def _left(self, link: str, channel: dict[str, Any], conn: Connection | None,
              ts: str) -> list[CtiEvent]:
        bridge = self._bridge_of.pop((link, channel.get("id", "")), None)
        if bridge is None:
            return []
        members = self._members.get((link, bridge), set())
        members.discard(channel["id"])
        if not members:
            self._members.pop((link, bridge), None)
        releasing = conn.extension if conn is not None else self._number(link, channel)
        out: list[CtiEvent] = []
        for member in sorted(members):
            # the member's connection to THIS conversation (an agent's channel may carry a
            # held call and a consultation: the line whose call lives in that bridge)
            other = self.tracker.line(link, member, bridge)
            if other is not None:
                out.append(PartyCleared(other.extension, other.callid, ts, releasing=releasing))
        return out

    def _number(self, link: str, channel: dict[str, Any]) -> str:
        number = self.number_of(link, channel["id"]) if self.number_of is not None else ""
        return number or (channel.get("caller") or {}).get("number", "")

    # -- after -----------------------------------------------------------------------------------
    def complete(self, events: list[CtiEvent]) -> list[CtiEvent]:
        """Fill the party fields and add `idle` for extensions whose last call cleared."""
        if not events:
            if self._leaving:
                self._leaving.clear()
            return events
        idle: dict[str, CtiEvent] = {}
        for event in events:
            if isinstance(event, PARTY_EVENTS):
                conn = self._connection(event.extension, event.callid)
                if conn is not None:
                    if isinstance(event, Transferred) and event.transferring != conn.extension \
                            and not conn.origcalling:
                        conn.origcalling = next((p for p in event.parties if p not in (
                            conn.extension, event.transferring)), "")
                    self._fill(event, conn)
            if isinstance(event, ConnectionCleared) and event.extension not in idle:
                idle[event.extension] = event
        if self._leaving:
            self._leaving.clear()
        if idle:
            legs = self.tracker.leg_count
            events = events + [Idle(ext, ev.callid, ev.timestamp)
                               for ext, ev in idle.items() if not legs.get(ext)]
        return events

    def _connection(self, extension: str, callid: str) -> Connection | None:
        call = self.tracker.calls.get(callid)
        if call is not None:
            for conn in call.connections.values():
                if conn.extension == extension:
                    return conn
        return self._leaving.get((extension, callid))

    def _fill(self, event: Any, conn: Connection) -> None:
        if not event.calling:
            event.calling = conn.calling
        if not event.called:
            event.called = conn.called
        if not event.origcalling:
            event.origcalling = self.origcalling(conn)

    def origcalling(self, conn: Connection) -> str:
        """The call's original caller when it reached the extension by a transfer, a
        diversion or a queue; "" for a call the extension made or got directly."""
        if conn.origcalling:
            return conn.origcalling
        call = self.tracker.calls.get(conn.callid)
        origin = call.origin if call is not None else ""
        if call is not None and not origin and conn.calling:
            origin = call.origin = conn.calling  # the first connection to know its caller
        if origin and origin not in (conn.calling, conn.extension):
            return origin
        return conn.calling if conn.lastredirection else ""

    # -- reconnects ------------------------------------------------------------------------------
    def forget_link(self, link: str) -> None:
        """Bridges of a link astcti reconnects to are learnt again from their events."""
        self._bridge_of = {k: v for k, v in self._bridge_of.items() if k[0] != link}
        self._members = {k: v for k, v in self._members.items() if k[0] != link}

    def leaving(self, connections: list[Connection]) -> None:
        """Connections a resync may clear (their party fields are still needed)."""
        for conn in connections:
            self._leaving[(conn.extension, conn.callid)] = conn
