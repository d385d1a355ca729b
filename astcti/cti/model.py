"""Calls and connections as a CTI client sees them (CSTA terms). Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ConnectionState(str, Enum):
    """CSTA local connection states."""

    INITIATED = "initiated"  # the device went off-hook / started a call
    ALERTING = "alerting"  # ringing (incoming) or ringing the far end (outgoing)
    CONNECTED = "connected"
    HELD = "held"
    QUEUED = "queued"
    FAILED = "failed"


class Direction(str, Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


@dataclass
class Connection:
    """One monitored extension's connection to a call.

    Usually one Asterisk channel carries one connection. An agent's phone leg may carry
    several (a held call and a consultation, with one SIP dialog): each is a *line* of that
    channel, told apart by the bridge its call lives in. `key` names the connection in the
    tracker: the channel id for the channel's own call, channel id + "/" + callid otherwise.
    """

    link: str
    channel_id: str
    channel_name: str
    extension: str
    callid: str
    direction: Direction
    state: ConnectionState
    calling: str = ""
    callingname: str = ""
    called: str = ""
    since: str = ""
    lastredirection: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)
    answered: bool = False
    originated: bool = False
    delivered: bool = False
    failed_cause: str | None = None
    hangup_cause: int | None = None
    held_by_astcti: bool = False
    via_queue: bool = False  # created by app_queue (dialplan app AppQueue)
    hold_pending: bool = False  # astcti is taking this channel out of its bridge to hold it
    await_far_answer: bool = False  # makecall/consultation: established when the far end answers
    clear_cause: str | None = None  # e.g. "transferred": overrides the cause of the clearing
    origcalling: str = ""  # the original caller, once the call was transferred to this extension
    key: str = ""  # tracker key (see the class doc); the channel id when empty
    bridge: str | None = None  # the bridge this connection's call lives in (when known)
    leaving: str | None = None  # astcti takes this line out of its bridge for good (the cause)

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.channel_id

    @property
    def is_line(self) -> bool:
        """A connection opened on a channel that already had its own call (consultation)."""
        return self.key != self.channel_id

    def view(self) -> dict[str, Any]:
        """The connection as `snapshot` reports it."""
        return {
            "callid": self.callid,
            "state": self.state.value,
            "direction": self.direction.value,
            "calling": self.calling,
            "callingname": self.callingname,
            "called": self.called,
            "since": self.since,
            "lastredirection": self.lastredirection,
            "userdata": dict(self.userdata),
        }


@dataclass
class Call:
    """A call (Asterisk linkedid) and the monitored connections astcti tracks in it."""

    callid: str
    connections: dict[str, Connection] = field(default_factory=dict)  # connection key -> it
    extensions: set[str] = field(default_factory=set)  # every monitored extension that took part
    origin: str = ""  # the calling number of the call's first connection: its original caller
