"""ARI events -> call model -> CTI events. Pure: no I/O, so recorded ARI streams test it.

Only channels of watched endpoints (configured extensions) are tracked. The callid is the
channel's Asterisk linkedid (from ari.conf `channelvars`), shared by every leg of a call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from astcti.cti.events import (
    DIAL_STATUS_CAUSES, CallCleared, Conferenced, ConnectionCleared, CtiEvent, Delivered,
    Established, Failed, Held, Originated, Retrieved, ServiceInitiated, Transferred, cause_name,
)
from astcti.cti.model import Call, Connection, ConnectionState, Direction
from astcti.cti.parties import FOLLOWED as PARTY_FOLLOWED, Parties
from astcti.pbx.dialplan import CALLID_VAR, LINKEDID_VAR, USERDATA_VAR

log = logging.getLogger(__name__)

AriEvent = dict[str, Any]
Resolver = Callable[[str, str], str | None]  # (link, "PJSIP/101") -> extension or None
QueueLookup = Callable[[str, str], str | None]  # (extension, callid) -> queue name or None

#: How a re-offered leg (`answer`) may fail while its phone is still finishing the cancelled
#: ring (a single-line phone answers 486 until then): the call is offered again, not ended.
RETRY_DIAL_STATUSES = frozenset({"BUSY", "CONGESTION"})
RETRY_CAUSES = frozenset({17, 34, 38, 41, 42})


def endpoint_of(channel_name: str) -> str:
    """'PJSIP/101-0000000a' -> 'PJSIP/101'."""
    base, sep, _suffix = channel_name.rpartition("-")
    return base if sep else channel_name


def parse_userdata(raw: str | None) -> dict[str, Any]:
    """User data set in the dialplan (a JSON object); anything else is ignored."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, (str, int, float))}


@dataclass
class Plan:
    """What astcti's call control says about a channel it is about to create."""

    outgoing: bool = False  # the extension's own call (makecall, consultation agent leg)
    called: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)
    replaces: str | None = None  # `answer`: this leg takes over that ringing channel's connection
    via_queue: bool = False  # a queue's call reaching the agent through the astcti-agent shim
    callid: str = ""  # a line (consultation) opened on an existing channel: its call id
    retry: bool = False  # with `replaces`: refused busy, the call is offered again (parked)


@dataclass
class Intent:
    """A transfer or conference astcti is carrying out; its event fires on the ARI event
    that completes it (the first leaving channel destroyed / the joining channel bridged)."""

    kind: str  # "transferred" | "conferenced"
    controller: str
    channels: list[str]  # keys of the watched connections whose monitors get the event
    parties: list[str]  # numbers of the parties joined
    ends: list[str] = field(default_factory=list)  # lines that end with it (a consultation)


class Tracker:
    """The calls of watched extensions, kept up to date from ARI events."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        #: Which queue a call reached an agent through (set by the ACD service; in memory).
        self.queue_of: QueueLookup | None = None
        #: The queue that offered a call to an extension, known for certain (AMI AgentCalled):
        #: FreePBX-form members' calls, which ARI shows as plain Dial()s.
        self.queue_offer: QueueLookup | None = None
        self.connections: dict[tuple[str, str], Connection] = {}  # (link, connection key)
        self.leg_count: dict[str, int] = {}  # extension -> its connections (idle at 0)
        #: the connections (lines) each channel carries: (link, channel id) -> keys, own first
        self.lines: dict[tuple[str, str], list[str]] = {}
        #: the bridge each tracked channel is in (bridge events say which line they concern)
        self.in_bridge: dict[tuple[str, str], str] = {}
        #: lines astcti opens on a channel when it enters a bridge: (link, channel, bridge)
        self.line_plans: dict[tuple[str, str, str], Plan] = {}
        self.calls: dict[str, Call] = {}
        self._warned_linkedid = False
        self.plans: dict[tuple[str, str], Plan] = {}
        self.intents: dict[tuple[str, str], Intent] = {}  # (link, trigger channel) -> intent
        # ARI `dial` reports no caller: the channel each astcti-dialled leg was dialled for
        self.dialled_for: dict[tuple[str, str], str] = {}
        #: channels that took a connection over (`answer` re-offered the call on them)
        self.reoffers: set[tuple[str, str]] = set()
        #: re-offered channels the phone refused busy: their connection waits for the next
        #: offer (`Plan.replaces`) or ends with the caller (value: the caller's channel)
        self.parked: dict[tuple[str, str], str | None] = {}
        #: party fields of the events, `partycleared` and `idle` (astcti/cti/parties.py)
        self.parties = Parties(self)
        self._handlers: dict[str, Callable[[str, AriEvent], list[CtiEvent]]] = {
            "ChannelCreated": self._on_created,
            "ChannelStateChange": self._on_state,
            "ChannelDialplan": self._on_dialplan,
            "ChannelConnectedLine": self._on_connected_line,
            "ChannelCallerId": self._on_connected_line,
            "Dial": self._on_dial,
            "ChannelHold": self._on_hold,
            "ChannelUnhold": self._on_unhold,
            "ChannelHangupRequest": self._on_hangup_request,
            "ChannelDestroyed": self._on_destroyed,
            "ChannelEnteredBridge": self._on_entered_bridge,
            "ChannelLeftBridge": self._on_left_bridge,
            "BridgeBlindTransfer": self._on_phone_transfer,
            "BridgeAttendedTransfer": self._on_phone_transfer,
            "BridgeDestroyed": self._on_bridge_destroyed,
        }

    # -- queries --------------------------------------------------------------------------------
    def connections_of(self, extension: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.extension == extension]

    def snapshot(self, extension: str) -> list[dict[str, Any]]:
        return [c.view() for c in self.connections_of(extension)]

    def find(self, extension: str, callid: str) -> Connection | None:
        for conn in self.connections.values():
            if conn.extension == extension and conn.callid == callid:
                return conn
        return None

    # -- events ---------------------------------------------------------------------------------
    def handle(self, link: str, event: AriEvent) -> list[CtiEvent]:
        kind = event.get("type", "")
        handler = self._handlers.get(kind)
        if handler is None and kind not in PARTY_FOLLOWED:
            return []
        ts = event.get("timestamp")
        if ts and ts[-5] in "+-":  # ARI's +0000 -> ISO-8601 extended +00:00
            event["timestamp"] = f"{ts[:-2]}:{ts[-2:]}"
        left = self.parties.before(link, event)
        out = handler(link, event) if handler is not None else []
        return self.parties.complete(left + out if left else out)

    def _conn(self, link: str, event: AriEvent) -> Connection | None:
        """The connection an event about a channel concerns: its active line (the one whose
        call is in the bridge the channel is in), else its own call."""
        channel = event.get("channel")
        if not channel:
            return None
        return self._active_line(link, channel["id"])

    def _lines_of(self, link: str, channel_id: str) -> list[Connection]:
        keys = self.lines.get((link, channel_id), ())
        return [c for k in keys if (c := self.connections.get((link, k))) is not None]

    def _active_line(self, link: str, channel_id: str) -> Connection | None:
        conns = self._lines_of(link, channel_id)
        if len(conns) <= 1:
            return conns[0] if conns else None
        bridge = self.in_bridge.get((link, channel_id))
        return next((c for c in conns if c.bridge == bridge and bridge), conns[0])

    def _line_in(self, link: str, channel_id: str, bridge: str) -> Connection | None:
        """The line of the channel whose call lives in `bridge`; a channel with a single line
        takes it wherever it goes (the bridge is then noted)."""
        conns = self._lines_of(link, channel_id)
        match = next((c for c in conns if c.bridge == bridge), None)
        if match is None and len(conns) == 1:
            match = conns[0]
        if match is None:
            match = next((c for c in conns if c.bridge is None), None)
        if match is not None:
            match.bridge = bridge
        return match

    def _add(self, conn: Connection) -> None:
        if (conn.link, conn.key) not in self.connections:
            self.leg_count[conn.extension] = self.leg_count.get(conn.extension, 0) + 1
        self.connections[(conn.link, conn.key)] = conn
        keys = self.lines.setdefault((conn.link, conn.channel_id), [])
        if conn.key not in keys:
            keys.append(conn.key)
        call = self.calls.setdefault(conn.callid, Call(conn.callid))
        call.connections[conn.key] = conn
        call.extensions.add(conn.extension)

    def _forget(self, conn: Connection) -> None:
        if self.connections.pop((conn.link, conn.key), None) is not None:
            self._count_down(conn.extension)
        keys = self.lines.get((conn.link, conn.channel_id))
        if keys is not None:
            if conn.key in keys:
                keys.remove(conn.key)
            if not keys:
                del self.lines[(conn.link, conn.channel_id)]
                self.in_bridge.pop((conn.link, conn.channel_id), None)

    def _callid(self, channel: dict[str, Any]) -> str:
        variables = channel.get("channelvars") or {}
        if variables.get(CALLID_VAR):  # astcti named this call (a consultation's far leg)
            return variables[CALLID_VAR]
        linkedid = variables.get(LINKEDID_VAR)
        if linkedid:
            return linkedid
        if not self._warned_linkedid:
            self._warned_linkedid = True
            log.warning("channel snapshots lack %s: add `channelvars = %s,%s,%s` to ari.conf"
                        " [general] (asterisk-conf does); call ids now differ per leg",
                        LINKEDID_VAR, LINKEDID_VAR, USERDATA_VAR, CALLID_VAR)
        return channel["id"]

    def _new_connection(self, link: str, channel: dict[str, Any], ts: str) -> Connection | None:
        extension = self.resolve(link, endpoint_of(channel["name"]))
        if extension is None:
            return None
        plan = self.plans.pop((link, channel["id"]), None)
        if plan is not None and plan.replaces is not None:
            return self._replace(link, plan.replaces, channel, plan.retry)
        state = channel.get("state", "")
        dialplan = channel.get("dialplan") or {}
        if dialplan.get("app_name") == "Stasis":  # astcti's: Stasis(app,dial,...) = a caller
            outgoing = str(dialplan.get("app_data", "")).split(",")[1:2] == ["dial"]
        else:
            outgoing = state == "Ring" or (state == "Up" and dialplan.get("app_name") not in
                                           ("AppDial", "AppQueue"))
        if plan is not None:
            outgoing = plan.outgoing
        conn = Connection(
            link=link, channel_id=channel["id"], channel_name=channel["name"],
            extension=extension, callid=self._callid(channel),
            direction=Direction.OUTGOING if outgoing else Direction.INCOMING,
            state=ConnectionState.INITIATED, since=ts,
            userdata=parse_userdata((channel.get("channelvars") or {}).get(USERDATA_VAR)),
        )
        if plan is not None and plan.via_queue:
            conn.via_queue = True
        if plan is not None and plan.outgoing:
            conn.calling, conn.called = extension, plan.called
            conn.await_far_answer = True
            conn.userdata.update(plan.userdata)
        elif conn.direction is Direction.OUTGOING:
            conn.calling = extension
        else:
            conn.called = extension
            conn.calling = (channel.get("connected") or {}).get("number", "")
            conn.callingname = (channel.get("connected") or {}).get("name", "")
        self._refresh(conn, channel)
        self._add(conn)
        return conn

    def _replace(self, link: str, old_id: str, channel: dict[str, Any],
                 retry: bool = False) -> Connection | None:
        """`answer` re-offered the call on a new channel: the connection moves to it."""
        conn = self.connections.get((link, old_id))
        self.parked.pop((link, old_id), None)
        self.reoffers.discard((link, old_id))
        if conn is None:
            return None
        if retry:
            self.reoffers.add((link, channel["id"]))
        self._forget(conn)
        call = self.calls.get(conn.callid)
        if call is not None:
            call.connections.pop(old_id, None)
        conn.channel_id, conn.channel_name = channel["id"], channel["name"]
        conn.key, conn.bridge = channel["id"], None
        self._add(conn)
        return conn

    def _refresh(self, conn: Connection, channel: dict[str, Any]) -> None:
        if (channel.get("dialplan") or {}).get("app_name") == "AppQueue":
            conn.via_queue = True
        data = parse_userdata((channel.get("channelvars") or {}).get(USERDATA_VAR))
        if data:
            conn.userdata.update(data)
        connected = (channel.get("connected") or {}).get("number", "")
        if conn.direction is Direction.INCOMING and connected and not conn.answered:
            conn.calling = connected
            conn.callingname = (channel.get("connected") or {}).get("name", "")

    def _on_created(self, link: str, event: AriEvent) -> list[CtiEvent]:
        channel = event["channel"]
        if (link, channel["id"]) in self.lines:
            return []
        conn = self._new_connection(link, channel, event.get("timestamp", ""))
        if conn is None:
            return []
        if conn.channel_id == channel["id"] and conn.delivered:  # taken over by `answer`
            return []
        ts = event.get("timestamp", "")
        if conn.direction is Direction.OUTGOING:
            out: list[CtiEvent] = [ServiceInitiated(conn.extension, conn.callid, ts)]
            if channel.get("state") == "Up":
                out += self._establish(conn, ts)
            return out
        return self._apply_state(conn, channel.get("state", ""), ts)

    def _on_state(self, link: str, event: AriEvent) -> list[CtiEvent]:
        conn = self.connections.get((link, event["channel"]["id"]))  # the channel's own call
        if conn is None:
            if (link, event["channel"]["id"]) in self.lines:
                return []  # its own call ended, a consultation line goes on
            return self._on_created(link, event)
        self._refresh(conn, event["channel"])
        return self._apply_state(conn, event["channel"].get("state", ""), event.get("timestamp", ""))

    def _apply_state(self, conn: Connection, state: str, ts: str) -> list[CtiEvent]:
        if state == "Ringing" and conn.direction is Direction.INCOMING and not conn.delivered:
            conn.delivered = True
            offered = self.queue_offer(conn.extension, conn.callid) if self.queue_offer else None
            if offered and not conn.lastredirection:
                conn.via_queue, conn.lastredirection = True, offered
            if conn.via_queue and not conn.lastredirection and self.queue_of is not None:
                conn.lastredirection = self.queue_of(conn.extension, conn.callid) or ""
            conn.state = ConnectionState.ALERTING
            return [Delivered(conn.extension, conn.callid, ts, alerting=conn.extension,
                              calling=conn.calling, callingname=conn.callingname,
                              called=conn.called,
                              lastredirection=conn.lastredirection, userdata=dict(conn.userdata))]
        if state == "Up" and not conn.answered and not conn.await_far_answer:
            return self._establish(conn, ts)
        return []

    def _establish(self, conn: Connection, ts: str) -> list[CtiEvent]:
        conn.answered = True
        conn.state = ConnectionState.CONNECTED
        answering = conn.extension if conn.direction is Direction.INCOMING else conn.called
        return [Established(conn.extension, conn.callid, ts, answering=answering,
                            calling=conn.calling, callingname=conn.callingname,
                            called=conn.called,
                            lastredirection=conn.lastredirection, userdata=dict(conn.userdata))]

    def _on_dialplan(self, link: str, event: AriEvent) -> list[CtiEvent]:
        conn = self.connections.get((link, event["channel"]["id"]))
        if conn is None:
            return []
        channel = event["channel"]
        self._refresh(conn, channel)
        if conn.direction is Direction.OUTGOING and not conn.originated:
            exten = (channel.get("dialplan") or {}).get("exten", "")
            if exten and exten != "s":
                conn.originated = True
                conn.called = exten
                return [Originated(conn.extension, conn.callid, event.get("timestamp", ""),
                                   calling=conn.extension, called=exten,
                                   userdata=dict(conn.userdata))]
        return []

    def _on_connected_line(self, link: str, event: AriEvent) -> list[CtiEvent]:
        conn = self.connections.get((link, event["channel"]["id"]))
        if conn is not None:
            self._refresh(conn, event["channel"])
        return []

    def _on_dial(self, link: str, event: AriEvent) -> list[CtiEvent]:
        peer_id = (event.get("peer") or {}).get("id", "")
        if (link, peer_id) in self.parked:
            return []
        if (link, peer_id) in self.reoffers and \
                event.get("dialstatus", "") in RETRY_DIAL_STATUSES:
            self._park(link, peer_id)
            return []
        # astcti says which connection it dialled a leg for (Dial names a caller channel,
        # which may carry several lines, or none at all)
        caller = event.get("caller")
        caller_id = self.dialled_for.get((link, (event.get("peer") or {}).get("id", ""))) or (
            caller["id"] if caller else None)
        if not caller_id:
            return []
        conn = self.connections.get((link, caller_id))
        if conn is None or conn.direction is not Direction.OUTGOING:
            return []
        status = event.get("dialstatus", "")
        ts = event.get("timestamp", "")
        if status == "" and not conn.originated:
            conn.originated = True
            return [Originated(conn.extension, conn.callid, ts, calling=conn.extension,
                               called=conn.called, userdata=dict(conn.userdata))]
        if status == "ANSWER" and conn.await_far_answer and not conn.answered:
            conn.await_far_answer = False
            return self._establish(conn, ts)
        if status == "RINGING" and not conn.delivered:
            conn.delivered = True
            conn.state = ConnectionState.ALERTING
            peer = event.get("peer") or {}
            alerting = conn.called or (peer.get("caller") or {}).get("number", "")
            return [Delivered(conn.extension, conn.callid, ts, alerting=alerting,
                              calling=conn.extension, called=conn.called,
                              lastredirection=conn.lastredirection, userdata=dict(conn.userdata))]
        cause = DIAL_STATUS_CAUSES.get(status)
        if cause and not conn.answered and conn.failed_cause is None:
            if status == "CANCEL":
                return []
            conn.failed_cause = cause
            conn.state = ConnectionState.FAILED
            return [Failed(conn.extension, conn.callid, ts, failing=conn.called,
                           called=conn.called, cause=cause)]
        return []

    def _on_hold(self, link: str, event: AriEvent) -> list[CtiEvent]:
        conn = self._conn(link, event)
        if conn is None or conn.state is ConnectionState.HELD:
            return []
        conn.state = ConnectionState.HELD
        return [Held(conn.extension, conn.callid, event.get("timestamp", ""),
                     holding=conn.extension)]

    def _on_unhold(self, link: str, event: AriEvent) -> list[CtiEvent]:
        conn = self._conn(link, event)
        if conn is None or conn.state is not ConnectionState.HELD:
            return []
        conn.state = ConnectionState.CONNECTED
        return [Retrieved(conn.extension, conn.callid, event.get("timestamp", ""),
                          retrieving=conn.extension)]

    def _on_hangup_request(self, link: str, event: AriEvent) -> list[CtiEvent]:
        if event.get("cause") is None:
            return []
        for conn in self._lines_of(link, (event.get("channel") or {}).get("id", "")):
            if conn.hangup_cause is None:
                conn.hangup_cause = int(event["cause"])
        return []

    def _on_destroyed(self, link: str, event: AriEvent) -> list[CtiEvent]:
        channel = event.get("channel") or {}
        channel_id = channel.get("id", "")
        self.plans.pop((link, channel_id), None)
        if (link, channel_id) in self.reoffers:
            self.reoffers.discard((link, channel_id))
            if channel.get("state") != "Up" and event.get("cause") is not None and \
                    int(event["cause"]) in RETRY_CAUSES:
                self._park(link, channel_id)
        if (link, channel_id) in self.parked:
            return []  # the connection waits for the next offer
        out = self._caller_gone(link, channel_id, event)
        gone = set(self.lines.get((link, channel_id), ())) | {channel_id}
        for key in [k for k, v in self.dialled_for.items() if v in gone and k[0] == link]:
            del self.dialled_for[key]  # the caller is gone (its far leg's Dial may come late)
        for key in [k for k in self.line_plans if k[0] == link and k[1] == channel_id]:
            del self.line_plans[key]
        out += self._far_leg_failed(link, event)
        conns = self._lines_of(link, channel_id)
        if conns:
            out += self._fire(link, channel_id, event.get("timestamp", ""))
        for conn in conns:
            out += self._on_destroyed_conn(link, event, conn)
        self.in_bridge.pop((link, channel_id), None)
        return out

    def _park(self, link: str, channel_id: str) -> None:
        """The phone refused a re-offered call busy: astcti offers it again (its `answer`
        keeps the caller), so the connection outlives this channel."""
        if (link, channel_id) not in self.parked:
            self.parked[(link, channel_id)] = self.dialled_for.pop((link, channel_id), None)

    def is_parked(self, link: str, channel_id: str) -> bool:
        """Call control asks: is the connection of this re-offered channel waiting for the
        next offer (then astcti must offer it again, or end the caller)?"""
        return (link, channel_id) in self.parked

    def _caller_gone(self, link: str, channel_id: str, event: AriEvent) -> list[CtiEvent]:
        """The caller of a parked connection left (or astcti gave up and ended it): the
        connection ends with the caller's cause."""
        out: list[CtiEvent] = []
        for key, caller in list(self.parked.items()):
            if key[0] == link and caller == channel_id:
                del self.parked[key]
                out += self._on_destroyed_conn(link, event, self.connections.get(key))
        return out

    def _far_leg_failed(self, link: str, event: AriEvent) -> list[CtiEvent]:
        """A leg astcti dialled ended unanswered: the caller's call failed (busy...), even when
        the Dial event that says so comes after the hangup."""
        channel = event.get("channel") or {}
        caller_id = self.dialled_for.pop((link, channel.get("id", "")), None)
        conn = self.connections.get((link, caller_id or ""))
        code = event.get("cause")
        if conn is None or conn.direction is not Direction.OUTGOING or conn.answered or \
                conn.failed_cause is not None or channel.get("state") == "Up" or code is None:
            return []
        cause = cause_name(int(code))
        if cause in ("normal", "callpickup"):
            return []
        conn.failed_cause = cause
        conn.state = ConnectionState.FAILED
        return [Failed(conn.extension, conn.callid, event.get("timestamp", ""),
                       failing=conn.called, called=conn.called, cause=cause)]

    def _on_destroyed_conn(self, link: str, event: AriEvent,
                           conn: Connection | None) -> list[CtiEvent]:
        if conn is None:
            return []
        code = event.get("cause")
        code = int(code) if code is not None else conn.hangup_cause
        ts = event.get("timestamp", "")
        out: list[CtiEvent] = []
        if conn.clear_cause is not None:
            cause = conn.clear_cause
        elif conn.failed_cause is not None:
            cause = conn.failed_cause
        elif conn.answered:
            cause = "normal" if code in (None, 0, 16, 31, 127) else cause_name(code)
        else:
            cause = cause_name(code)
            if conn.direction is Direction.INCOMING and code in (0, None) and conn.delivered:
                cause = "noanswer"
            if cause not in ("normal", "noanswer"):
                out.append(Failed(conn.extension, conn.callid, ts, failing=conn.extension,
                                  called=conn.called, cause=cause))
        out += self._clear(conn, ts, cause)
        return out

    def _clear(self, conn: Connection, ts: str, cause: str,
               resync: bool = False) -> list[CtiEvent]:
        self._forget(conn)
        out: list[CtiEvent] = [ConnectionCleared(conn.extension, conn.callid, ts,
                                                 releasing=conn.extension, cause=cause,
                                                 userdata=dict(conn.userdata), resync=resync)]
        call = self.calls.get(conn.callid)
        if call is not None:
            call.connections.pop(conn.key, None)
            if not call.connections:
                del self.calls[conn.callid]
                out += [CallCleared(ext, conn.callid, ts, cause=cause)
                        for ext in sorted(call.extensions)]
        return out

    # -- call control (astcti's own actions, told by astcti/cti/control.py) -----------------------
    def plan(self, link: str, channel_id: str, plan: Plan) -> None:
        """astcti is about to create this channel: how to read it when it appears."""
        self.plans[(link, channel_id)] = plan

    def forget_plan(self, link: str, channel_id: str) -> None:
        self.plans.pop((link, channel_id), None)
        self.dialled_for.pop((link, channel_id), None)

    def dialling(self, link: str, channel_id: str, for_channel: str) -> None:
        """astcti dials `channel_id` on behalf of `for_channel` (Dial events name no caller)."""
        self.dialled_for[(link, channel_id)] = for_channel

    def mark_hold(self, link: str, key: str) -> None:
        """astcti takes the channel out of this connection's bridge to hold it (ARI raises no
        ChannelHold)."""
        conn = self.connections.get((link, key))
        if conn is not None:
            conn.hold_pending = True

    def open_line(self, link: str, channel_id: str, bridge_id: str, plan: Plan) -> None:
        """astcti puts a channel that already has a call into another bridge for a new call of
        the same extension (a consultation on the agent's one SIP dialog): when the channel
        enters that bridge, a connection opens for `plan.callid`."""
        self.line_plans[(link, channel_id, bridge_id)] = plan

    def line_key(self, channel_id: str, callid: str) -> str:
        return f"{channel_id}/{callid}"

    def mark_leave(self, link: str, key: str, cause: str) -> None:
        """astcti takes this line's channel out of its bridge for good (the channel goes on
        with its other calls): the connection clears when the channel leaves the bridge."""
        conn = self.connections.get((link, key))
        if conn is not None:
            conn.leaving = cause

    def line(self, link: str, channel_id: str, bridge_id: str | None) -> Connection | None:
        """The connection of this channel whose call lives in that bridge (a channel with one
        connection: that one)."""
        conns = self._lines_of(link, channel_id)
        match = next((c for c in conns if bridge_id and c.bridge == bridge_id), None)
        return match or (conns[0] if len(conns) == 1 else None)

    def lines_of(self, link: str, channel_id: str) -> list[Connection]:
        return self._lines_of(link, channel_id)

    def restore_position(self, link: str, channel_id: str, bridge_id: str) -> None:
        """After a reconnect: the bridge a channel is in (which line the phone's own hold
        concerns)."""
        if (link, channel_id) in self.lines:
            self.in_bridge[(link, channel_id)] = bridge_id

    def bind(self, link: str, key: str, bridge_id: str) -> None:
        """The connection's call lives in this bridge (astcti knows before the event says)."""
        conn = self.connections.get((link, key))
        if conn is not None:
            conn.bridge = bridge_id

    def restore_hold(self, link: str, key: str, bridge_id: str | None = None) -> None:
        """After a reconnect: astcti finds this connection holding its call (no event: clients
        that resume get the state in their snapshot)."""
        conn = self.connections.get((link, key))
        if conn is not None:
            conn.state = ConnectionState.HELD
            conn.held_by_astcti = True
            if bridge_id:
                conn.bridge = bridge_id

    def restore_line(self, link: str, channel_id: str, callid: str, bridge_id: str,
                     called: str = "", held: bool = False) -> Connection | None:
        """After a reconnect: a consultation line astcti finds on an agent's channel (no
        event, as `restore_hold`)."""
        own = self.connections.get((link, channel_id))
        if own is None or own.callid == callid:
            return None
        conn = Connection(
            link=link, channel_id=channel_id, channel_name=own.channel_name,
            extension=own.extension, callid=callid, direction=Direction.OUTGOING,
            state=ConnectionState.HELD if held else ConnectionState.CONNECTED,
            calling=own.extension, called=called, since=own.since, answered=True,
            originated=True, delivered=True, held_by_astcti=held,
            key=self.line_key(channel_id, callid), bridge=bridge_id)
        self._add(conn)
        return conn

    def expect(self, link: str, trigger_channel: str, intent: Intent) -> None:
        """Fire `intent` when the trigger channel is destroyed (transfer) or bridged (conference)."""
        self.intents[(link, trigger_channel)] = intent
        if intent.kind == "transferred":
            for channel_id in intent.channels:
                conn = self.connections.get((link, channel_id))
                if conn is not None and conn.extension == intent.controller:
                    conn.clear_cause = "transferred"

    def _fire(self, link: str, channel_id: str, ts: str) -> list[CtiEvent]:
        intent = self.intents.pop((link, channel_id), None)
        if intent is None:
            return []
        out: list[CtiEvent] = []
        for cid in intent.channels:
            conn = self.connections.get((link, cid))
            if conn is None:
                continue
            if intent.kind == "transferred":
                out.append(Transferred(conn.extension, conn.callid, ts,
                                       transferring=intent.controller,
                                       transferred=intent.parties[0] if intent.parties else "",
                                       parties=list(intent.parties),
                                       userdata=dict(conn.userdata)))
            else:
                if conn.state is ConnectionState.HELD:
                    conn.state = ConnectionState.CONNECTED
                out.append(Conferenced(conn.extension, conn.callid, ts,
                                       controller=intent.controller, parties=list(intent.parties)))
        for key in intent.ends:  # the consultation merged into the call: its line ends
            conn = self.connections.get((link, key))
            if conn is not None:
                out += self._clear(conn, ts, "normal")
        return out

    def _party_events(self, conn: Connection, make: Callable[[Connection], CtiEvent]
                      ) -> list[CtiEvent]:
        """One event per watched connection of the call (the holder's first)."""
        call = self.calls.get(conn.callid)
        others = [c for c in (call.connections.values() if call else ()) if c is not conn]
        return [make(c) for c in [conn, *others]]

    def _on_left_bridge(self, link: str, event: AriEvent) -> list[CtiEvent]:
        channel_id = (event.get("channel") or {}).get("id", "")
        bridge = (event.get("bridge") or {}).get("id", "")
        if self.in_bridge.get((link, channel_id)) == bridge:
            del self.in_bridge[(link, channel_id)]
        conns = self._lines_of(link, channel_id)
        conn = next((c for c in conns if c.bridge == bridge), None)
        if conn is None and len(conns) == 1:
            conn = conns[0]
        if conn is None:
            return []
        ts = event.get("timestamp", "")
        if conn.leaving is not None:  # astcti ends this line; the channel goes on
            out = self._fire(link, conn.key, ts)
            return out + self._clear(conn, ts, conn.clear_cause or conn.failed_cause or
                                     conn.leaving)
        if not conn.hold_pending:
            return []
        conn.hold_pending = False
        conn.held_by_astcti = True
        conn.state = ConnectionState.HELD
        return self._party_events(conn, lambda c: Held(c.extension, c.callid, ts,
                                                       holding=conn.extension))

    def _on_entered_bridge(self, link: str, event: AriEvent) -> list[CtiEvent]:
        ts = event.get("timestamp", "")
        channel_id = (event.get("channel") or {}).get("id", "")
        bridge = (event.get("bridge") or {}).get("id", "")
        out = self._open_line(link, channel_id, bridge, ts)
        if (link, channel_id) in self.lines:
            self.in_bridge[(link, channel_id)] = bridge
        fired = self._fire(link, channel_id, ts)
        conn = self._line_in(link, channel_id, bridge)
        if conn is None or fired or not (conn.state is ConnectionState.HELD and
                                         conn.held_by_astcti):
            if conn is not None and fired:
                conn.held_by_astcti = False
            return out + fired
        conn.held_by_astcti = False
        conn.state = ConnectionState.CONNECTED
        return out + self._party_events(conn, lambda c: Retrieved(c.extension, c.callid, ts,
                                                                  retrieving=conn.extension))

    def _open_line(self, link: str, channel_id: str, bridge: str, ts: str) -> list[CtiEvent]:
        """A consultation astcti planned on this channel starts as the channel enters the
        consultation's bridge: the extension's new outgoing call (events as for makecall)."""
        plan = self.line_plans.pop((link, channel_id, bridge), None)
        own = self._lines_of(link, channel_id)
        if plan is None or not own:
            return []
        first = own[0]
        conn = Connection(
            link=link, channel_id=channel_id, channel_name=first.channel_name,
            extension=first.extension, callid=plan.callid, direction=Direction.OUTGOING,
            state=ConnectionState.INITIATED, since=ts, calling=first.extension,
            called=plan.called, userdata=dict(plan.userdata), await_far_answer=True,
            originated=True, key=self.line_key(channel_id, plan.callid), bridge=bridge)
        self._add(conn)
        return [ServiceInitiated(conn.extension, conn.callid, ts),
                Originated(conn.extension, conn.callid, ts, calling=conn.extension,
                           called=conn.called, userdata=dict(conn.userdata))]

    def _on_bridge_destroyed(self, link: str, event: AriEvent) -> list[CtiEvent]:
        """A conversation astcti ended: lines of channels that go on with another call (held
        there, or consulting from there) clear; a channel's last line clears with the channel."""
        bridge = (event.get("bridge") or {}).get("id", "")
        ts = event.get("timestamp", "")
        out: list[CtiEvent] = []
        for conn in [c for c in self.connections.values() if c.link == link and
                     c.bridge == bridge]:
            if conn.clear_cause is not None and (link, conn.channel_id) in self.intents:
                continue  # a transfer: it clears with its channel, after the event
            if len(self.lines.get((link, conn.channel_id), ())) > 1:
                out += self._clear(conn, ts, conn.clear_cause or conn.leaving or
                                   conn.failed_cause or "normal")
        return out

    def _on_phone_transfer(self, link: str, event: AriEvent) -> list[CtiEvent]:
        """A phone transferred its own call (SIP REFER): BridgeBlind/AttendedTransfer."""
        if event.get("result") not in (None, "Success"):
            return []
        ts = event.get("timestamp", "")
        transferer = event.get("channel") or event.get("transferer_first_leg") or {}
        conn = self.connections.get((link, transferer.get("id", "")))
        if conn is None:
            return []
        parties = [((event.get(k) or {}).get("caller") or {}).get("number", "")
                   for k in ("transferee", "transfer_target")]
        parties = [p for p in parties if p] or [event.get("exten", "")]
        out: list[CtiEvent] = []
        legs = [conn]
        second = self.connections.get(
            (link, (event.get("transferer_second_leg") or {}).get("id", "")))
        if second is not None:
            legs.append(second)
        for leg in legs:
            leg.clear_cause = "transferred"
        # the parties joined (watched ones) hear of it too, as with astcti's own transfers
        for key in ("transferee", "transfer_target"):
            party = self.connections.get((link, (event.get(key) or {}).get("id", "")))
            if party is not None and party not in legs:
                legs.append(party)
        for leg in legs:
            out.append(Transferred(leg.extension, leg.callid, ts, transferring=conn.extension,
                                   transferred=parties[0], parties=parties,
                                   userdata=dict(leg.userdata)))
        return out

    # -- reconnects -------------------------------------------------------------------------------
    def resync(self, link: str, channels: list[dict[str, Any]], ts: str) -> list[CtiEvent]:
        """Make the model match Asterisk's channels after a (re)connect; events for the gap."""
        current = {c["id"]: c for c in channels}
        self.parties.forget_link(link)
        self.parties.leaving([c for (conn_link, _), c in self.connections.items()
                              if conn_link == link])
        out: list[CtiEvent] = []
        # an offer in flight ends with the gap (its connection is cleared below)
        self.reoffers = {k for k in self.reoffers if k[0] != link or k[1] in current}
        self.parked = {k: v for k, v in self.parked.items() if k[0] != link or k[1] in current}
        for (conn_link, _key), conn in list(self.connections.items()):
            if conn_link == link and conn.channel_id not in current:
                out += self._clear(conn, ts, "normal", resync=True)
        for channel in channels:
            conn = self.connections.get((link, channel["id"]))
            if conn is None and (link, channel["id"]) not in self.lines:
                out += self._on_created(link, {"channel": channel, "timestamp": ts})
                conn = self.connections.get((link, channel["id"]))
                if conn is not None and conn.direction is Direction.OUTGOING:
                    out += self._on_dialplan(link, {"channel": channel, "timestamp": ts})
            elif conn is not None:
                self._refresh(conn, channel)
                out += self._apply_state(conn, channel.get("state", ""), ts)
        return self.parties.complete(out)

    def _count_down(self, extension: str) -> None:
        left = self.leg_count.get(extension, 1) - 1
        if left > 0:
            self.leg_count[extension] = left
        else:
            self.leg_count.pop(extension, None)

    def drop_extension(self, extension: str) -> None:
        """Forget an extension that is no longer configured (no events: nobody monitors it)."""
        self.leg_count.pop(extension, None)
        for conn in list(self.connections.values()):
            if conn.extension == extension:
                self._forget(conn)
                call = self.calls.get(conn.callid)
                if call is not None:
                    call.connections.pop(conn.key, None)
                    if not call.connections:
                        del self.calls[conn.callid]
