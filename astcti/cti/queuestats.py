"""Live queue statistics for wallboards: callers waiting, agents by state, today's figures.

`QueueBoard` is the pure model (no I/O, clock and day injected): callers join, are answered
or leave; counters run per local day. `QueueStatsService` feeds it from the daemon's flows
(the queue feed for waiting callers, the hub's events for answers and agent states, the ACD
service for the agents) and publishes `queuestatus` and `agentstatus` events on the `@queues`
topic, coalesced so a burst of changes costs one event per queue.

Where the waiting callers come from is the feed's business (`QueueFeed`): AMI's queue events
when astcti has a manager link, else the ACD service's reads of app_queue's functions. The
model only needs "joined", "answered", "left" and the order of the queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from astcti.cti.acd import Agent
from astcti.cti.events import (
    QUEUES_TOPIC, AgentLoggedOff, AgentLoggedOn, AgentNotReady, AgentReady, AgentStatus,
    AgentWorkNotReady, ConnectionCleared, CtiEvent, Delivered, Established, Held, QueueStatus,
    Retrieved, Transferred,
)
from astcti.cti.hub import Hub

if TYPE_CHECKING:
    from astcti.cti.acd import AcdService
    from astcti.cti.tracker import Tracker
    from astcti.store import Store
from astcti.tasks import cancel_and_wait, watch

log = logging.getLogger(__name__)

DEFAULT_SERVICE_LEVEL = 20  # seconds: the usual "80/20" target's 20
FLUSH_DELAY = 0.2  # seconds a change waits for others before the events go out
DAY_CHECK = 30.0  # seconds between checks that midnight passed (counters start again)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


@dataclass
class Caller:
    """A caller waiting in a queue."""

    callid: str
    calling: str
    callingname: str
    joined: float
    position: int = 0

    def view(self) -> dict[str, Any]:
        return {"callid": self.callid, "calling": self.calling, "callingname": self.callingname,
                "since": _iso(self.joined), "position": self.position}


@dataclass
class DayCounts:
    """What a queue did on one local day."""

    day: str
    answered: int = 0
    abandoned: int = 0
    answered_in_sl: int = 0
    wait_total: float = 0.0  # seconds waited by the answered calls


@dataclass
class QueueLine:
    name: str
    callers: dict[str, Caller] = field(default_factory=dict)  # callid -> caller, join order
    counts: DayCounts = field(default_factory=lambda: DayCounts(""))
    answered_ids: set[str] = field(default_factory=set)  # answered today (no double count)


class LocalDay:
    """Today's local date as text, worked out at most once a second (it is asked per event)."""

    def __init__(self) -> None:
        self._second = -1
        self._day = ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._day = second, date.fromtimestamp(second).isoformat()
        return self._day


class QueueBoard:
    """The queues' figures. Every method returns whether anything shown changed."""

    def __init__(self, today: Callable[[], str] = LocalDay(),
                 service_level: int = DEFAULT_SERVICE_LEVEL) -> None:
        self.today = today
        self.service_level = service_level
        self.queues: dict[str, QueueLine] = {}

    def line(self, queue: str) -> QueueLine:
        line = self.queues.get(queue)
        if line is None:
            line = self.queues[queue] = QueueLine(queue, counts=DayCounts(self.today()))
        self._roll(line)
        return line

    def _roll(self, line: QueueLine) -> bool:
        day = self.today()
        if line.counts.day == day:
            return False
        line.counts = DayCounts(day)
        line.answered_ids.clear()
        return True

    def roll_all(self) -> list[str]:
        """Queues whose counters started a new day."""
        return [name for name, line in self.queues.items() if self._roll(line)]

    # -- inputs ---------------------------------------------------------------------------------
    def joined(self, queue: str, callid: str, calling: str, callingname: str, at: float,
               position: int = 0) -> bool:
        line = self.line(queue)
        if callid in line.callers:
            return False
        line.callers[callid] = Caller(callid, calling, callingname, at,
                                      position or len(line.callers) + 1)
        return True

    def order(self, queue: str, callids: list[str]) -> bool:
        """The queue's callers by position (1 first), as Asterisk lists them."""
        line = self.line(queue)
        changed = False
        for position, callid in enumerate(callids, 1):
            caller = line.callers.get(callid)
            if caller is not None and caller.position != position:
                caller.position, changed = position, True
        return changed

    def answered(self, queue: str, callid: str, at: float, waited: float | None = None) -> bool:
        """An agent answered the caller (counted once a day per call)."""
        line = self.line(queue)
        caller = line.callers.pop(callid, None)
        if callid in line.answered_ids:
            return caller is not None
        if waited is None:
            waited = max(0.0, at - caller.joined) if caller is not None else None
        if waited is None:  # never seen waiting (e.g. astcti started meanwhile): count it
            waited = 0.0
        line.answered_ids.add(callid)
        counts = line.counts
        counts.answered += 1
        counts.wait_total += waited
        if waited <= self.service_level:
            counts.answered_in_sl += 1
        self._renumber(line)
        return True

    def left(self, queue: str, callid: str, at: float, abandoned: bool = True) -> bool:
        """The caller is no longer waiting: unless answered, an abandon (hung up or exited)."""
        line = self.line(queue)
        caller = line.callers.pop(callid, None)
        if caller is None:
            return False
        if abandoned and callid not in line.answered_ids:
            line.counts.abandoned += 1
        self._renumber(line)
        return True

    @staticmethod
    def _renumber(line: QueueLine) -> None:
        for position, caller in enumerate(sorted(line.callers.values(),
                                                 key=lambda c: (c.position, c.joined)), 1):
            caller.position = position

    # -- views ----------------------------------------------------------------------------------
    def view(self, queue: str) -> dict[str, Any]:
        line = self.line(queue)
        callers = sorted(line.callers.values(), key=lambda c: (c.position, c.joined))
        counts = line.counts
        ended = counts.answered + counts.abandoned
        return {
            "queue": queue,
            "waiting": len(callers),
            "longestsince": _iso(min(c.joined for c in callers)) if callers else "",
            "callers": [c.view() for c in callers],
            "answered": counts.answered,
            "abandoned": counts.abandoned,
            "answeredinsl": counts.answered_in_sl,
            "servicelevel": round(100.0 * counts.answered_in_sl / ended, 1) if ended else -1,
            "servicelevelseconds": self.service_level,
            "averagewait": round(counts.wait_total / counts.answered, 1) if counts.answered
            else 0,
            "day": counts.day,
        }


# -- agents on the wallboard ---------------------------------------------------------------------
ONCALL_STATES = {"connected", "held", "initiated"}


#: The events that change a wallboard: an agent's calls and states.
WATCHED_EVENTS = frozenset({Delivered, Established, Held, Retrieved, ConnectionCleared,
                            Transferred, AgentLoggedOn, AgentLoggedOff, AgentReady,
                            AgentNotReady, AgentWorkNotReady})


def agent_line(agent: Agent, calls: list[dict[str, Any]], handled: int,
               answered: dict[str, str] | None = None) -> dict[str, Any]:
    """An agent's wallboard line: its call (if any) outranks its ACD state; a call's time
    counts from its answer (`answered`: callid -> when) when known."""
    view: dict[str, Any] = {
        "extension": agent.extension, "agentid": agent.agentid, "groups": list(agent.groups),
        "state": agent.state, "reasoncode": agent.reason if agent.state == "notready" else "",
        "since": agent.since, "callid": "", "calling": "", "direction": "", "callsince": "",
        "acwuntil": _iso(agent.acw_until) if agent.acw_until and agent.state == "acw" else "",
        "handled": handled,
    }
    talking = [c for c in calls if c["state"] in ONCALL_STATES
               or (c["state"] == "alerting" and c["direction"] == "outgoing")]
    ringing = [c for c in calls if c["state"] == "alerting" and c["direction"] == "incoming"]
    current = (talking or ringing or [None])[0]
    if current is not None:
        began = (answered or {}).get(current["callid"], current["since"]) if talking \
            else current["since"]
        view.update(state="oncall" if talking else "ringing", since=began,
                    callid=current["callid"], direction=current["direction"],
                    callsince=began,
                    calling=current["called"] if current["direction"] == "outgoing"
                    else current["calling"])
    return view


def count_agents(lines: Iterable[dict[str, Any]], queue: str) -> dict[str, int]:
    counts = {"ready": 0, "notready": 0, "acw": 0, "oncall": 0, "loggedin": 0}
    for line in lines:
        if queue not in line["groups"]:
            continue
        counts["loggedin"] += 1
        state = "oncall" if line["state"] in ("oncall", "ringing") else line["state"]
        if state in counts:
            counts[state] += 1
    return counts


# -- queue members Asterisk reports (AMI) --------------------------------------------------------
#: AMI's member `Status` (Asterisk device states) -> the wallboard's words.
MEMBER_STATUS = {1: "ready", 2: "oncall", 3: "oncall", 6: "ringing", 7: "ringing", 8: "oncall",
                 4: "unavailable", 5: "unavailable"}
EXTENSION_OF = re.compile(r"^(?:hint:)?(?:[A-Za-z0-9]+/)?([^@/;]+)")


@dataclass
class Member:
    """A queue member as Asterisk reports it (any member: a phone's `*45` login, a static
    member of queues.conf, or an astcti agent)."""

    interface: str
    name: str
    state_interface: str
    paused: dict[str, tuple[bool, str]] = field(default_factory=dict)  # queue -> (paused, reason)
    status: int = 1
    incall: bool = False
    since: str = ""
    shown_state: str = ""

    @property
    def extension(self) -> str:
        match = EXTENSION_OF.match(self.state_interface or self.interface)
        return match.group(1) if match else ""

    def state(self) -> tuple[str, str]:
        """(state, reason) from what Asterisk says."""
        word = MEMBER_STATUS.get(self.status, "ready")
        if self.incall and word == "ready":
            word = "oncall"
        if word in ("oncall", "ringing", "unavailable"):
            return word, ""
        paused = [reason for is_paused, reason in self.paused.values() if is_paused]
        if paused:
            return ("acw", "") if paused[0].lower() == "acw" else ("notready", paused[0])
        return "ready", ""


# -- the service ----------------------------------------------------------------------------------
class QueueStatsService:
    """Feeds the board, joins it with the agents and publishes what changed."""

    def __init__(self, store: Store, hub: Hub, tracker: Tracker, acd: AcdService,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.hub = hub
        self.tracker = tracker
        self.acd = acd
        self.clock = clock
        self.board = QueueBoard(service_level=self._service_level())
        # agentid (member name) -> (day, callids of the queue calls it answered that day)
        self.handled: dict[str, tuple[str, set[str]]] = {}
        self.members: dict[str, Member] = {}  # member interface -> what AMI says of it
        self._answered: dict[str, dict[str, str]] = {}  # extension -> callid -> answered at
        self._member_extensions: set[str] = set()
        # True while a feed that sees queue events (AMI) is connected: then the ACD service's
        # reads of the queues are not needed
        self.event_feed_up: Callable[[], bool] = lambda: False
        self._dirty_queues: set[str] = set()
        self._dirty_agents: set[str] = set()  # extensions
        self._dirty_members = False
        self._shown_queues: dict[str, dict[str, Any]] = {}
        self._shown_agents: dict[str, dict[str, Any]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._ticker: asyncio.Task[None] | None = None

    def _service_level(self) -> int:
        text = self.store.get_parameter("acti_servicelevel", "") or ""
        return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_SERVICE_LEVEL

    def apply_parameter(self, name: str, value: str) -> None:
        """`update parameter acti_servicelevel N` in astcti-shell takes effect at once."""
        if name == "acti_servicelevel":
            self.board.service_level = self._service_level()
            self._dirty_queues.update(self.queue_names())
            self._schedule()

    # -- what is shown --------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        names: set[str] = set(self.board.queues)
        for agent in self.acd.agents.values():
            names.update(agent.groups)
        for param in ("acti_wallboard_queues", "acti_agentgroups"):
            text = self.store.get_parameter(param, "") or ""
            names.update(q.strip() for q in text.split(",") if q.strip())
        return sorted(names)

    def _handled(self, agentid: str) -> int:
        day, calls = self.handled.get(agentid, ("", set()))
        return len(calls) if day == self.board.today() else 0

    def count_handled(self, agentid: str, callid: str) -> None:
        today = self.board.today()
        day, calls = self.handled.get(agentid, (today, set()))
        if day != today:
            calls = set()
        calls.add(callid)
        self.handled[agentid] = (today, calls)

    def agent_lines(self) -> list[dict[str, Any]]:
        """astcti's agents, then the queue members only Asterisk knows (e.g. a phone's login)."""
        agents = sorted((a for a in self.acd.agents.values() if a.groups),
                        key=lambda a: a.agentid)
        lines = [self._agent_line(a) for a in agents]
        own = {self.acd.interfaces(a.extension)[0] for a in agents}
        for member in sorted(self.members.values(), key=lambda m: m.name):
            if member.interface not in own and member.paused:
                lines.append(self._member_line(member))
        return lines

    def _member_line(self, member: Member) -> dict[str, Any]:
        state, reason = member.state()
        if state != member.shown_state:
            member.shown_state, member.since = state, _iso(self.clock())
        agent = Agent(member.extension, member.name, sorted(member.paused), state, reason,
                      member.since)
        return agent_line(agent, self.tracker.snapshot(member.extension)
                          if member.extension else [], self._handled(member.name),
                          self._answered.get(member.extension))

    def _agent_line(self, agent: Agent) -> dict[str, Any]:
        return agent_line(agent, self.tracker.snapshot(agent.extension),
                          self._handled(agent.agentid), self._answered.get(agent.extension))

    def queue_view(self, queue: str, lines: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
        view = self.board.view(queue)
        view.update(count_agents(self.agent_lines() if lines is None else lines, queue))
        return view

    def snapshot(self, queue: str | None = None) -> dict[str, Any]:
        lines = self.agent_lines()
        names = [queue] if queue else self.queue_names()
        return {"queues": [self.queue_view(q, lines) for q in names],
                "agents": [a for a in lines if not queue or queue in a["groups"]],
                "servicelevelseconds": self.board.service_level}

    # -- inputs: the queue feed ---------------------------------------------------------------
    def caller_joined(self, queue: str, callid: str, calling: str, callingname: str = "",
                      at: float | None = None, position: int = 0) -> None:
        if self.board.joined(queue, callid, calling, callingname,
                             self.clock() if at is None else at, position):
            self._mark_queue(queue)

    def caller_answered(self, queue: str, callid: str, at: float | None = None,
                        waited: float | None = None) -> None:
        if self.board.answered(queue, callid, self.clock() if at is None else at, waited):
            self._mark_queue(queue)

    def caller_left(self, queue: str, callid: str, at: float | None = None,
                    abandoned: bool = True) -> None:
        if self.board.left(queue, callid, self.clock() if at is None else at, abandoned):
            self._mark_queue(queue)

    def waiting_list(self, queue: str, callers: list[tuple[str, str]]) -> None:
        """A feed that reads the whole queue (callid, calling) by position: the difference
        with what the board holds is joins and departures (unanswered: abandoned)."""
        if self.event_feed_up():
            return  # AMI's events say exactly who left how
        now = self.clock()
        present = [callid for callid, _ in callers]
        for callid, calling in callers:
            self.caller_joined(queue, callid, calling, at=now)
        line = self.board.line(queue)
        for callid in [c for c in line.callers if c not in present]:
            self.caller_left(queue, callid, now)
        if self.board.order(queue, present):
            self._mark_queue(queue)

    def replace_callers(self, waiting: dict[str, list[tuple[str, str, str, float, int]]]
                        ) -> None:
        """After a (re)connect: per queue, every waiting caller (key, calling, name, joined,
        position) as Asterisk has them. Callers no longer there left unseen (not counted)."""
        for queue, callers in waiting.items():
            line = self.board.line(queue)
            present = {c[0] for c in callers}
            for key in [k for k in line.callers if k not in present]:
                self.board.left(queue, key, self.clock(), abandoned=False)
            for key, calling, name, joined, position in callers:
                self.board.joined(queue, key, calling, name, joined, position)
            self.board.order(queue, [c[0] for c in sorted(callers, key=lambda c: c[4])])
            self._dirty_queues.add(queue)
        self._schedule()

    def member_update(self, queue: str, interface: str, *, name: str = "",
                      state_interface: str = "", paused: bool | None = None,
                      reason: str | None = None, status: int | None = None,
                      incall: bool | None = None) -> None:
        """A queue member's state as Asterisk reports it (added, status, pause)."""
        member = self.members.get(interface)
        if member is None:
            member = self.members[interface] = Member(interface, name or interface,
                                                      state_interface or interface)
        member.name = name or member.name
        member.state_interface = state_interface or member.state_interface
        was = member.paused.get(queue, (False, ""))
        member.paused[queue] = (was[0] if paused is None else paused,
                                was[1] if reason is None else reason)
        if status is not None:
            member.status = status
        if incall is not None:
            member.incall = incall
        self._member_extensions.add(member.extension)
        self._dirty_queues.add(queue)
        self._dirty_members = True
        self._schedule()

    def member_removed(self, queue: str, interface: str) -> None:
        member = self.members.get(interface)
        if member is None:
            return
        member.paused.pop(queue, None)
        if not member.paused:
            del self.members[interface]
            self._member_extensions = {m.extension for m in self.members.values()}
            self._publish_member_gone(member, [queue])
        self._dirty_queues.add(queue)
        self._schedule()

    def replace_members(self, members: list[dict[str, Any]]) -> None:
        """After a (re)connect: every member of every queue (as `member_update` arguments)."""
        before = dict(self.members)
        self.members = {}
        self._member_extensions = set()
        for fields in members:
            self.member_update(**fields)
        for interface, member in before.items():
            if interface not in self.members:
                self._publish_member_gone(member, sorted(member.paused))

    def _publish_member_gone(self, member: Member, queues: list[str]) -> None:
        if member.interface in {self.acd.interfaces(a.extension)[0]
                                for a in self.acd.agents.values()}:
            return  # astcti's own agent: its agentloggedoff says it
        if self._shown_agents.pop(f"member:{member.name}", None) is not None:
            self.hub.publish(AgentStatus(member.extension, "", _iso(self.clock()),
                                         agentid=member.name, groups=queues,
                                         state="loggedoff"), QUEUES_TOPIC)

    # -- inputs: the hub's events ---------------------------------------------------------------
    def on_cti_event(self, event: CtiEvent) -> None:
        """The hub's observer: answers of queue calls, agents' calls and state changes.

        Called for every event astcti publishes: one type lookup sends the others away."""
        kind = type(event)
        if kind not in WATCHED_EVENTS:
            return
        agent = self.acd.agents.get(event.extension)
        if kind is Established and (agent is not None
                                    or event.extension in self._member_extensions):
            self._answered.setdefault(event.extension, {})[event.callid] = event.timestamp
        elif kind is ConnectionCleared:
            calls = self._answered.get(event.extension)
            if calls is not None:
                calls.pop(event.callid, None)
                if not calls:
                    del self._answered[event.extension]
        if kind is Established and event.lastredirection:  # type: ignore[attr-defined]
            queue = event.lastredirection  # type: ignore[attr-defined]
            at = _epoch(event.timestamp) or self.clock()
            if agent is not None or event.callid in self.board.line(queue).callers:
                self.caller_answered(queue, event.callid, at)
            if agent is not None and queue in agent.groups:
                self.count_handled(agent.agentid, event.callid)
        elif kind is AgentLoggedOff and (agent is None or not agent.groups):
            self._publish_logged_off(event)  # type: ignore[arg-type]  (forgotten right after)
            return
        if agent is not None:
            self._dirty_agents.add(agent.extension)
            self._dirty_queues.update(agent.groups)
            self._schedule()
        elif event.extension in self._member_extensions:  # a member only Asterisk manages
            self._dirty_agents.add(event.extension)
            self._dirty_members = True
            self._dirty_queues.update(q for m in self.members.values()
                                      if m.extension == event.extension for q in m.paused)
            self._schedule()

    def _publish_logged_off(self, event: AgentLoggedOff) -> None:
        self._shown_agents.pop(event.extension, None)
        self.hub.publish(AgentStatus(event.extension, "", event.timestamp, agentid=event.agentid,
                                     groups=list(event.groups), state="loggedoff",
                                     since=event.timestamp), QUEUES_TOPIC)
        self._dirty_queues.update(event.groups)
        self._schedule()

    # -- output ---------------------------------------------------------------------------------
    def _mark_queue(self, queue: str) -> None:
        self._dirty_queues.add(queue)
        self._schedule()

    def _schedule(self) -> None:
        if self._flush is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (unit tests of the model): flush now
            self.flush()
            return
        self._flush = loop.call_later(FLUSH_DELAY, self.flush)
        if self._ticker is None or self._ticker.done():
            self._ticker = watch(loop.create_task(self._tick(), name="queuestats-day"),
                                 "queue statistics")

    def flush(self) -> None:
        """Publish the lines that changed since they were last shown."""
        self._flush = None
        queues, self._dirty_queues = self._dirty_queues, set()
        agents, self._dirty_agents = self._dirty_agents, set()
        members, self._dirty_members = self._dirty_members, False
        now = _iso(self.clock())
        lines = self.agent_lines()
        acd = {a.extension for a in self.acd.agents.values()}
        for line in lines:
            ext = line["extension"]
            own = ext in acd
            key = ext if own else f"member:{line['agentid']}"
            if not (ext in agents or (members and not own)):
                continue
            if self._shown_agents.get(key) != line:
                self._shown_agents[key] = line
                self.hub.publish(AgentStatus(ext, line["callid"], now, **{
                    k: v for k, v in line.items() if k not in ("extension", "callid")}),
                    QUEUES_TOPIC)
        for queue in sorted(queues):
            view = self.queue_view(queue, lines)
            if self._shown_queues.get(queue) == view:
                continue
            self._shown_queues[queue] = view
            self.hub.publish(QueueStatus("", "", now, **view), QUEUES_TOPIC)

    async def _tick(self) -> None:
        """At midnight the day's counters start again: tell the wallboards."""
        while True:
            await asyncio.sleep(DAY_CHECK)
            rolled = self.board.roll_all()
            if rolled:
                self._dirty_queues.update(rolled)
                self._dirty_agents.update(self.acd.agents)
                self.flush()

    async def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        await cancel_and_wait(self._ticker)
        self._ticker = None
