"""The CTI event catalogue: one dataclass per event, and its JSON form on the wire.

Every event goes to the monitors of one extension. `docs/protocol.md` is generated from the
classes below (their docstrings and fields), so this file is the reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class CtiEvent:
    """Fields common to every event."""

    NAME: ClassVar[str] = ""
    #: the astCTI author's word for the event (`eventtype` on the wire); "" when it has none
    EVENTTYPE: ClassVar[str] = ""
    extension: str
    callid: str
    timestamp: str

    @property
    def eventtype(self) -> str:
        return self.EVENTTYPE

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"msgtype": "event", "event": self.NAME}
        for f in _fields(type(self)):
            out[f] = getattr(self, f)
        eventtype = self.eventtype
        if eventtype:  # after today's fields: what clients saw before stays where it was
            out["eventtype"] = eventtype
        return out


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass
class ServiceInitiated(CtiEvent):
    """The extension started a call (off-hook / dialling begins)."""

    NAME: ClassVar[str] = "serviceinitiated"


@dataclass
class Originated(CtiEvent):
    """The extension's call is proceeding to the number it dialled."""

    NAME: ClassVar[str] = "originated"
    calling: str = ""
    called: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Delivered(CtiEvent):
    """A device is alerted: the extension itself (incoming) or the far end (outgoing)."""

    NAME: ClassVar[str] = "delivered"
    alerting: str = ""
    calling: str = ""
    callingname: str = ""  # the caller's name, when Asterisk has one
    called: str = ""
    origcalling: str = ""
    lastredirection: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)

    @property
    def eventtype(self) -> str:
        """`offer`: the extension itself rings; `alert`: its outgoing call rings the far end."""
        return "offer" if self.alerting == self.extension else "alert"


@dataclass
class Established(CtiEvent):
    """The call is answered; `answering` is the device that answered."""

    NAME: ClassVar[str] = "established"
    EVENTTYPE: ClassVar[str] = "connect"
    answering: str = ""
    calling: str = ""
    callingname: str = ""  # the caller's name, when Asterisk has one
    called: str = ""
    origcalling: str = ""
    lastredirection: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Held(CtiEvent):
    """The extension's connection is on hold."""

    NAME: ClassVar[str] = "held"
    EVENTTYPE: ClassVar[str] = "hold"
    holding: str = ""
    calling: str = ""
    called: str = ""
    origcalling: str = ""


@dataclass
class Retrieved(CtiEvent):
    """The extension's held connection is back."""

    NAME: ClassVar[str] = "retrieved"
    EVENTTYPE: ClassVar[str] = "retrieve"
    retrieving: str = ""
    calling: str = ""
    called: str = ""
    origcalling: str = ""


@dataclass
class ConnectionCleared(CtiEvent):
    """The extension's connection to the call ended (`cause`: why)."""

    NAME: ClassVar[str] = "connectioncleared"
    EVENTTYPE: ClassVar[str] = "disconnect"
    releasing: str = ""
    cause: str = "normal"
    calling: str = ""
    called: str = ""
    origcalling: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)
    resync: bool = False  # true when astcti learnt it on reconnecting to Asterisk


@dataclass
class PartyCleared(CtiEvent):
    """Another party left the extension's call (`releasing`: its number), e.g. a conference
    member released by `dropparty` or a caller that hung up; the extension is still in it."""

    NAME: ClassVar[str] = "partycleared"
    EVENTTYPE: ClassVar[str] = "disconnect"
    releasing: str = ""
    calling: str = ""
    called: str = ""
    origcalling: str = ""


@dataclass
class Idle(CtiEvent):
    """The extension has no call left (after its last `connectioncleared`; `callid`: the call
    that ended last)."""

    NAME: ClassVar[str] = "idle"
    EVENTTYPE: ClassVar[str] = "idle"


@dataclass
class CallCleared(CtiEvent):
    """The call no longer has any party astcti tracks."""

    NAME: ClassVar[str] = "callcleared"
    cause: str = "normal"


@dataclass
class Failed(CtiEvent):
    """The call could not reach `called` (busy, no answer, not obtainable...)."""

    NAME: ClassVar[str] = "failed"
    EVENTTYPE: ClassVar[str] = "fail"
    failing: str = ""
    calling: str = ""
    called: str = ""
    origcalling: str = ""
    cause: str = ""


@dataclass
class Diverted(CtiEvent):
    """A call that was alerting the extension went elsewhere."""

    NAME: ClassVar[str] = "diverted"
    diverting: str = ""
    newdestination: str = ""


@dataclass
class Transferred(CtiEvent):
    """The call was transferred: `transferring` left, the other parties are joined."""

    NAME: ClassVar[str] = "transferred"
    EVENTTYPE: ClassVar[str] = "transfer"
    transferring: str = ""
    transferred: str = ""
    parties: list[str] = field(default_factory=list)
    calling: str = ""
    called: str = ""
    origcalling: str = ""
    userdata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conferenced(CtiEvent):
    """The call became a conference of `parties`."""

    NAME: ClassVar[str] = "conferenced"
    EVENTTYPE: ClassVar[str] = "conference"
    controller: str = ""
    parties: list[str] = field(default_factory=list)
    calling: str = ""
    called: str = ""
    origcalling: str = ""


@dataclass
class Queued(CtiEvent):
    """The call waits in a queue the extension's agent serves."""

    NAME: ClassVar[str] = "queued"
    queue: str = ""
    position: int = 0
    calling: str = ""


@dataclass
class LinkStatus(CtiEvent):
    """The Asterisk link serving the extension went down or came back (callid is empty)."""

    link: str = ""
    reason: str = ""


@dataclass
class LinkUp(LinkStatus):
    """The Asterisk link serving the extension is back; astcti resynchronised its calls."""

    NAME: ClassVar[str] = "linkup"


@dataclass
class LinkDown(LinkStatus):
    """The Asterisk link serving the extension is down; call control fails until `linkup`."""

    NAME: ClassVar[str] = "linkdown"


# -- ACD agent events (issue 5; callid is empty) -------------------------------------------------
@dataclass
class AgentEvent(CtiEvent):
    """An ACD agent's state on the extension changed (callid is empty)."""

    agentid: str = ""
    groups: list[str] = field(default_factory=list)


@dataclass
class AgentLoggedOn(AgentEvent):
    """The agent logged in on the extension and is a member of `groups` (queues)."""

    NAME: ClassVar[str] = "agentloggedon"


@dataclass
class AgentLoggedOff(AgentEvent):
    """The agent left its queues (`reason`: request, or asterisk when the queue lost it)."""

    NAME: ClassVar[str] = "agentloggedoff"
    reason: str = "request"


@dataclass
class AgentReady(AgentEvent):
    """The agent takes queue calls."""

    NAME: ClassVar[str] = "agentready"


@dataclass
class AgentNotReady(AgentEvent):
    """The agent is paused in its queues (`reasoncode`: break, lunch, a number...)."""

    NAME: ClassVar[str] = "agentnotready"
    reasoncode: str = ""


@dataclass
class AgentWorkNotReady(AgentEvent):
    """After-call work: paused until `until` (ISO-8601; empty: until the agent says ready)."""

    NAME: ClassVar[str] = "agentworknotready"
    until: str = ""


# -- live state for desktops and wallboards (topics, not extension monitors) -------------------
#: Hub topics: names no extension can have (extensions never contain `@`).
EXTENSIONS_TOPIC = "@extensions"
QUEUES_TOPIC = "@queues"


@dataclass
class ExtensionState(CtiEvent):
    """A configured extension's line changed: `state` is idle, ringing, busy, onhold, away
    (idle, but its agent is not ready or in after-call work) or unavailable (the phone is not
    reachable); `devicestate` is Asterisk's word. Sent to connections that asked `directory`
    with `monitor` true (callid is empty)."""

    NAME: ClassVar[str] = "extensionstate"
    state: str = ""
    devicestate: str = ""
    agentid: str = ""
    agentstate: str = ""


@dataclass
class QueueStatus(CtiEvent):
    """A queue's live figures changed (extension and callid are empty). `waiting` callers
    (`callers`: callid, calling, callingname, since, position), `longestsince` (when the
    longest-waiting caller joined; empty when none waits: count the wait up from it), agents
    `ready`/`notready`/`acw`/`oncall` (ringing or talking)/`loggedin`, and since midnight
    (astcti's local time, `day`): `answered`, `abandoned`, `answeredinsl` (answered within
    `servicelevelseconds`), `servicelevel` (percent of answered + abandoned answered within
    it; -1 before the first call of the day), `averagewait` (seconds, answered calls).
    Sent to connections that asked `queuestats` with `monitor` true."""

    NAME: ClassVar[str] = "queuestatus"
    queue: str = ""
    waiting: int = 0
    longestsince: str = ""
    callers: list[dict[str, Any]] = field(default_factory=list)
    ready: int = 0
    notready: int = 0
    acw: int = 0
    oncall: int = 0
    loggedin: int = 0
    answered: int = 0
    abandoned: int = 0
    answeredinsl: int = 0
    servicelevel: float = -1
    servicelevelseconds: int = 20
    averagewait: float = 0
    day: str = ""


@dataclass
class AgentStatus(CtiEvent):
    """An ACD agent's wallboard line changed (`extension` is the agent's, `callid` its current
    call or empty): `state` ready, notready, acw, ringing, oncall (talking or holding) or
    loggedoff (its last event), `reasoncode`, `since` (when that state began), `groups`, the
    current call's `calling`/`direction`/`callsince`, `acwuntil`, and `handled` (queue calls
    it answered since midnight). Sent with `queuestatus`."""

    NAME: ClassVar[str] = "agentstatus"
    agentid: str = ""
    groups: list[str] = field(default_factory=list)
    state: str = ""
    reasoncode: str = ""
    since: str = ""
    calling: str = ""
    direction: str = ""
    callsince: str = ""
    acwuntil: str = ""
    handled: int = 0


CATALOGUE: tuple[type[CtiEvent], ...] = (
    ServiceInitiated, Originated, Delivered, Established, Held, Retrieved, ConnectionCleared,
    PartyCleared, CallCleared, Idle, Failed, Diverted, Transferred, Conferenced, Queued, LinkDown, LinkUp,
    AgentLoggedOn, AgentLoggedOff, AgentReady, AgentNotReady, AgentWorkNotReady,
    ExtensionState, QueueStatus, AgentStatus,
)

#: Events that carry the parties of the call (`calling`, `called`, `origcalling`): the tracker
#: fills them from the extension's connection.
PARTY_EVENTS: tuple[type[CtiEvent], ...] = (
    Delivered, Established, Held, Retrieved, ConnectionCleared, PartyCleared, Failed,
    Transferred, Conferenced,
)

#: eventtype -> its meaning, for docs/protocol.md (the author's vocabulary side by side)
EVENTTYPES: dict[str, str] = {
    "offer": "an incoming call rings at the extension (`delivered` with alerting = extension)",
    "alert": "the extension's outgoing call rings at the far end (`delivered`, alerting = far"
             " end)",
    "connect": "`established`", "hold": "`held`", "retrieve": "`retrieved`",
    "transfer": "`transferred`", "conference": "`conferenced`",
    "disconnect": "a party left: `connectioncleared` (the extension itself: releasing ="
                  " extension) or `partycleared` (another party: releasing = its number)",
    "fail": "`failed`", "idle": "`idle`: the extension has no call left",
}

#: Q.850 cause codes (as Asterisk reports them) -> CSTA cause names.
CAUSES: dict[int, str] = {
    0: "normal", 16: "normal", 17: "busy", 18: "noanswer", 19: "noanswer", 21: "callrejected",
    1: "destnotobtainable", 3: "destnotobtainable", 20: "destnotobtainable",
    22: "destnotobtainable", 27: "destnotobtainable", 28: "invalidnumber",
    34: "networkcongestion", 38: "networkcongestion", 41: "networkcongestion",
    42: "networkcongestion", 26: "callpickup", 31: "normal", 58: "resourcesnotavailable",
    127: "normal",
}

#: Dial's DIALSTATUS -> CSTA cause names.
DIAL_STATUS_CAUSES: dict[str, str] = {
    "BUSY": "busy", "NOANSWER": "noanswer", "CHANUNAVAIL": "destnotobtainable",
    "CONGESTION": "networkcongestion", "CANCEL": "callcancelled", "INVALIDARGS":
    "destnotobtainable",
}


def cause_name(code: int | None) -> str:
    if code is None:
        return "normal"
    return CAUSES.get(code, "normal")
