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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from astcti.cti.events import (
    QUEUES_TOPIC, AgentEvent, AgentLoggedOff, AgentStatus, ConnectionCleared, CtiEvent,
    Delivered, Established, Held, QueueStatus, Retrieved, Transferred,
)
from astcti.cti.hub import Hub

if TYPE_CHECKING:
    from astcti.cti.acd import Agent, AcdService
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


class QueueBoard:
    """The queues' figures. Every method returns whether anything shown changed."""

    def __init__(self, today: Callable[[], str] = lambda: date.today().isoformat(),
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


def agent_line(agent: Agent, calls: list[dict[str, Any]], handled: int) -> dict[str, Any]:
    """An agent's wallboard line: its call (if any) outranks its ACD state."""
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
        view.update(state="oncall" if talking else "ringing", since=current["since"],
                    callid=current["callid"], direction=current["direction"],
                    callsince=current["since"],
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
        self.handled: dict[str, tuple[str, int]] = {}  # agentid -> (day, answered queue calls)
        # feeds that see queue events (AMI): then the ACD service's reads are not needed
        self.feeds_with_events = 0
        self._dirty_queues: set[str] = set()
        self._dirty_agents: set[str] = set()  # extensions
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
        day, count = self.handled.get(agentid, ("", 0))
        return count if day == self.board.today() else 0

    def agent_lines(self) -> list[dict[str, Any]]:
        return [self._agent_line(a) for a in sorted(self.acd.agents.values(),
                                                     key=lambda a: a.agentid) if a.groups]

    def _agent_line(self, agent: Agent) -> dict[str, Any]:
        return agent_line(agent, self.tracker.snapshot(agent.extension),
                          self._handled(agent.agentid))

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
        if self.feeds_with_events:
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

    # -- inputs: the hub's events ---------------------------------------------------------------
    def on_cti_event(self, event: CtiEvent) -> None:
        """The hub's observer: answers of queue calls, agents' calls and state changes."""
        if isinstance(event, (QueueStatus, AgentStatus)):
            return
        agent = self.acd.agents.get(event.extension)
        if isinstance(event, Established) and event.lastredirection:
            at = _epoch(event.timestamp) or self.clock()
            if event.callid in self.board.line(event.lastredirection).callers or agent:
                self.caller_answered(event.lastredirection, event.callid, at)
            if agent is not None and event.lastredirection in agent.groups:
                today = self.board.today()
                day, count = self.handled.get(agent.agentid, (today, 0))
                self.handled[agent.agentid] = (today, (count if day == today else 0) + 1)
        if isinstance(event, AgentLoggedOff) and (agent is None or not agent.groups):
            self._publish_logged_off(event)  # the ACD service forgets the agent right after
            return
        if agent is not None and isinstance(event, (AgentEvent, Delivered, Established, Held,
                                                    Retrieved, ConnectionCleared,
                                                    Transferred)):
            self._dirty_agents.add(agent.extension)
            self._dirty_queues.update(agent.groups)
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
        now = _iso(self.clock())
        lines = self.agent_lines()
        for line in lines:
            ext = line["extension"]
            if ext in agents and self._shown_agents.get(ext) != line:
                self._shown_agents[ext] = line
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
