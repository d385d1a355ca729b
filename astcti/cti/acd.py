"""ACD agents on Asterisk queues: login, logout, ready/not ready/after-call work.

Asterisk's queues are the truth: an agent is a dynamic queue member whose state interface is
the extension, "not ready" is a paused member (with the reason), after-call work is a pause
with reason `acw` that ends by itself. astcti keeps the agent id and reason in the store so it
survives daemon restarts, and re-reads membership and pause state from Asterisk on every link
(re)connect, so what it reports never drifts from `queue show`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from astcti.cti.directory import Directory
from astcti.cti.events import (
    AgentEvent, AgentLoggedOff, AgentLoggedOn, AgentNotReady, AgentReady, AgentWorkNotReady,
    ConnectionCleared, CtiEvent, Delivered, Established, Queued,
)
from astcti.cti.hub import Hub
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import AGENT_SHIM_CONTEXT
from astcti.pbx.link import AsteriskLink
from astcti.pbx.queues import SUCCESS, QueueControl, QueueError
from astcti.store import Store
from astcti.store.store import AgentRow
from astcti.store.writer import ImmediateWriter, StoreWriter
from astcti.tasks import Tasks

if TYPE_CHECKING:
    from astcti.pbx.ami import AmiLink

log = logging.getLogger(__name__)

READY, NOTREADY, ACW = "ready", "notready", "acw"
AUTO_IN, MANUAL_IN = "auto", "manual"  # how a ready agent takes queue calls (Avaya's words)
#: Request words -> state; the seed's Avaya-style names are aliases.
STATE_WORDS: dict[str, str] = {"ready": READY, "auto": READY, "manual": READY,
                               "notready": NOTREADY, "aux": NOTREADY, "acw": ACW}
ACW_REASON = "acw"
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
REASON_RE = re.compile(r"^[A-Za-z0-9_ .-]{1,32}$")
PAUSE_DEVICE_PREFIX = "Queue:"
MAX_OFFERS = 10_000  # queue offers remembered (AMI AgentCalled) until their call is seen to end
POLL_INTERVAL = 1.0  # seconds between reads of waiting callers while agents are logged in


class AcdError(AstctiError):
    """A refused ACD request; the message is what the client reads."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Agent:
    extension: str
    agentid: str
    groups: list[str]
    state: str = NOTREADY
    reason: str = ""
    since: str = ""
    acw_until: float | None = None
    mode: str = ""  # when ready: auto (auto-in) or manual (manual-in: after-call work follows)
    queue_calls: dict[str, str] = field(default_factory=dict)  # callid -> queue (delivered)
    answered: set[str] = field(default_factory=set)  # callids of answered queue calls

    def row(self) -> AgentRow:
        return AgentRow(self.extension, self.agentid, tuple(self.groups), self.state,
                        self.reason, self.since, self.acw_until, self.mode)

    def view(self) -> dict[str, object]:
        return {"agentid": self.agentid, "groups": list(self.groups), "state": self.state,
                "reasoncode": self.reason if self.state == NOTREADY else "",
                "since": self.since, "acwuntil": _iso(self.acw_until) if self.acw_until else ""}


def _iso(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def parse_groups(text: str) -> list[str]:
    """'support, sales' -> ['support', 'sales']; AcdError on a name Asterisk cannot have."""
    groups: list[str] = []
    for name in (g.strip() for g in text.split(",")):
        if not name:
            continue
        if not QUEUE_NAME_RE.match(name):
            raise AcdError(f"bad field groups: {name[:40]!r} is not a queue name", 400)
        if name not in groups:
            groups.append(name)
    return groups


class AcdService:
    """Agents per extension, their queue membership through the link, and their events."""

    def __init__(self, store: Store, directory: Directory, hub: Hub,
                 clock: Callable[[], float] = time.time,
                 writer: StoreWriter | ImmediateWriter | None = None) -> None:
        self.store = store
        self.writer = writer or ImmediateWriter(store)  # saves agents off the event path
        self.tasks = Tasks("ACD")
        self.directory = directory
        self.hub = hub
        self.clock = clock
        self.agents: dict[str, Agent] = {}
        self.controls: dict[str, QueueControl] = {}  # link name -> helper
        self.waiting: dict[str, tuple[str, int]] = {}  # callid -> (queue, position)
        self.offers: dict[tuple[str, str], str] = {}  # (extension, callid) -> queue, from AMI
        self._names: dict[str, tuple[str, str]] = {}  # waiting channel name -> (callid, number)
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()  # extensions with a queue change in flight
        self._claims: dict[str, str] = {}  # agent id -> extension of a login in progress
        self._acw_tasks: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        # queue statistics: each read of a queue's callers, (callid, number) by position
        self.on_waiting: Callable[[str, list[tuple[str, str]]], None] | None = None
        # (link, queue) -> callers by position: (caller key, callid, number)
        self._queues: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        self._fed: set[str] = set()  # links whose waiting callers come from AMI events
        for row in store.agents():
            self.agents[row.extension] = Agent(row.extension, row.agentid, list(row.groups),
                                               row.state, row.reason, row.since, row.acw_until,
                                               row.mode)

    # -- configuration --------------------------------------------------------------------------
    def _param(self, name: str, default: str) -> str:
        return self.store.get_parameter(name, default) or default

    def interfaces(self, extension: str) -> tuple[str, str]:
        """(member interface, state interface) of an extension's agent.

        FreePBX's own agent login (*45) adds `Local/<ext>@from-queue/n` with state interface
        `hint:<ext>@ext-local`; using the same lets the phone's feature codes and astcti see one
        member. On plain Asterisk a PJSIP agent is `Local/<ext>@astcti-agent/n` (state interface
        the endpoint): the queue's calls pass through astcti's Stasis app, so call control works
        on them.
        """
        if self._param("acti_flavour", "asterisk").lower() == "freepbx":
            return f"Local/{extension}@from-queue/n", f"hint:{extension}@ext-local"
        ext = self.directory.extensions.get(extension)
        endpoint = ext.endpoint if ext else f"PJSIP/{extension}"
        if endpoint.startswith("PJSIP/"):
            # through astcti's Stasis app, so queue calls can be held and transferred
            return f"Local/{extension}@{AGENT_SHIM_CONTEXT}/n", endpoint
        return endpoint, endpoint

    def default_groups(self, agentid: str) -> list[str]:
        text = (self.store.get_parameter(f"acti_agentgroups_{agentid}")
                or self._param("acti_agentgroups", ""))
        return parse_groups(text)

    def check_reason(self, reason: str) -> str:
        reason = reason.strip()
        if not reason:
            return ""
        if not REASON_RE.match(reason):
            raise AcdError(f"bad field reasoncode: {reason[:40]!r} is not a reason code", 400)
        allowed = [r.strip().lower() for r in self._param("acti_reasoncodes", "").split(",")
                   if r.strip()]
        if allowed and reason.lower() not in allowed:
            raise AcdError(f"unknown reason code {reason!r}: use one of {', '.join(allowed)}"
                           " (parameter acti_reasoncodes)", 400)
        return reason

    def _control(self, extension: str) -> QueueControl:
        link = self.directory.link_of(extension)
        if link is None or not link.up:
            raise AcdError(self.directory.why_unserved(extension), 409)
        control = self.controls.get(link.name)
        if control is None:
            control = self.controls[link.name] = QueueControl(link)
        return control

    def _lock(self, extension: str) -> asyncio.Lock:
        return self._locks.setdefault(extension, asyncio.Lock())

    def _pause_sources(self, agent: Agent) -> list[str]:
        iface = self.interfaces(agent.extension)[0]
        return [f"deviceState:{PAUSE_DEVICE_PREFIX}{q}_pause_{iface}" for q in agent.groups]

    # -- requests -------------------------------------------------------------------------------
    def agent(self, extension: str) -> Agent | None:
        return self.agents.get(extension)

    def agents_view(self) -> list[dict[str, object]]:
        """Every logged-in agent with its extension, by extension (`show agents`)."""
        return [{"extension": ext, **agent.view()} for ext, agent in sorted(self.agents.items())]

    async def login(self, extension: str, agentid: str, groups: list[str] | None) -> Agent:
        async with self._lock(extension):
            current = self.agents.get(extension)
            if current is not None:
                raise AcdError(f"extension {extension} already has agent {current.agentid}"
                               " logged in: acdlogout first")
            for other in self.agents.values():
                if other.agentid == agentid:
                    raise AcdError(f"agent {agentid} is already logged in on extension"
                                   f" {other.extension}: acdlogout there first")
            claimed = self._claims.get(agentid)
            if claimed is not None:  # the same agent id logging in elsewhere at this moment
                raise AcdError(f"agent {agentid} is logging in on extension {claimed} right"
                               " now: only one extension per agent", 409)
            self._claims[agentid] = extension  # held until this login is done, either way
            try:
                return await self._login(extension, agentid, groups)
            finally:
                self._claims.pop(agentid, None)

    async def _login(self, extension: str, agentid: str, groups: list[str] | None) -> Agent:
        """acdlogin's work (under the extension's lock, the agent id claimed)."""
        groups = groups or self.default_groups(agentid)
        if not groups:
            raise AcdError("no queue to join: pass groups or set parameter"
                           f" acti_agentgroups (or acti_agentgroups_{agentid})", 400)
        control = self._control(extension)
        exists = await control.exists(groups)
        missing = [q for q, ok in exists.items() if not ok]
        if missing:
            raise AcdError(f"queue {', '.join(missing)} does not exist on Asterisk: check"
                           " the name or create it in queues.conf", 404)
        iface, state_iface = self.interfaces(extension)
        state = READY if self._param("acti_loginstate", "notready").lower() in (
            "ready", "auto", "manual") else NOTREADY
        members = await control.membership(groups, iface)
        joined: list[str] = []
        self._busy.add(extension)
        try:
            for queue in groups:
                if members[queue] is not None:  # already a member (e.g. a feature code)
                    await self._apply_pause(control, queue, iface, state, "")
                    continue
                status = await control.add(queue, iface, state_iface, f"{agentid}",
                                           paused=state != READY)
                if status not in SUCCESS["add"]:
                    raise QueueError(f"cannot join queue {queue}: Asterisk said {status}")
                joined.append(queue)
        except (QueueError, AriError) as exc:
            for queue in joined:  # nothing half done
                try:
                    await control.remove(queue, iface)
                except (QueueError, AriError):
                    log.warning("could not undo join of %s to %s", iface, queue)
            raise AcdError(str(exc) if isinstance(exc, QueueError) else exc.message, 502)
        finally:
            self._busy.discard(extension)
        agent = Agent(extension, agentid, groups, state, "", _iso(),
                      mode=AUTO_IN if state == READY else "")
        self.agents[extension] = agent
        self._save(agent)
        await control.link.subscribe(self._pause_sources(agent))
        self._publish(AgentLoggedOn, agent)
        self._publish_state(agent)
        self._ensure_poller()
        return agent

    async def logout(self, extension: str, agentid: str, groups: list[str] | None) -> Agent:
        async with self._lock(extension):
            agent = self._logged_in(extension, agentid)
            leaving = [q for q in (groups or agent.groups)]
            unknown = [q for q in leaving if q not in agent.groups]
            if unknown:
                raise AcdError(f"agent {agentid} is not in queue {', '.join(unknown)}", 409)
            control = self._control(extension)
            iface = self.interfaces(extension)[0]
            await control.link.unsubscribe(self._pause_sources(replace_groups(agent, leaving)))
            self._busy.add(extension)
            try:
                for queue in leaving:
                    status = await control.remove(queue, iface)
                    if status not in SUCCESS["remove"] and status != "NOTINQUEUE":
                        raise AcdError(f"cannot leave queue {queue}: Asterisk said {status}", 502)
                    agent.groups.remove(queue)
            except QueueError as exc:
                raise AcdError(str(exc), 502) from None
            finally:
                self._busy.discard(extension)
                self._after_change(agent, leaving)
            return agent

    def _after_change(self, agent: Agent, left: list[str]) -> None:
        """Persist and announce a (partial) logout."""
        gone = [q for q in left if q not in agent.groups]
        if not gone:
            return
        self._publish(AgentLoggedOff, replace_groups(agent, gone), reason="request")
        if agent.groups:
            self._save(agent)
        else:
            self._forget(agent)

    def _save(self, agent: Agent) -> None:
        row = agent.row()
        self.writer.put(f"agent:{row.extension}", lambda store: store.save_agent(row))

    def _forget(self, agent: Agent) -> None:
        self.agents.pop(agent.extension, None)
        ext = agent.extension
        self.writer.put(f"agent:{ext}", lambda store: store.remove_agent(ext))
        task = self._acw_tasks.pop(agent.extension, None)
        if task is not None:
            task.cancel()

    def _logged_in(self, extension: str, agentid: str | None) -> Agent:
        agent = self.agents.get(extension)
        if agent is None:
            raise AcdError(f"no agent is logged in on extension {extension}: acdlogin first")
        if agentid and agent.agentid != agentid:
            raise AcdError(f"extension {extension} has agent {agent.agentid} logged in,"
                           f" not {agentid}")
        return agent

    async def set_state(self, extension: str, agentid: str, word: str, reason: str) -> Agent:
        state = STATE_WORDS.get(word.lower())
        if state is None:
            raise AcdError(f"unknown state {word!r}: use ready, notready, acw (or auto, manual,"
                           " aux)", 400)
        reason = self.check_reason(reason) if state == NOTREADY else ""
        async with self._lock(extension):
            agent = self._logged_in(extension, agentid)
            await self._set_state(agent, state, reason,
                                  mode=MANUAL_IN if word.lower() == MANUAL_IN else AUTO_IN)
            return agent

    async def _set_state(self, agent: Agent, state: str, reason: str,
                         mode: str | None = None) -> None:
        """`mode` (auto or manual) is kept for a ready agent; None keeps the current one."""
        control = self._control(agent.extension)
        iface = self.interfaces(agent.extension)[0]
        pause_reason = ACW_REASON if state == ACW else reason
        self._busy.add(agent.extension)
        try:
            for queue in agent.groups:
                await self._apply_pause(control, queue, iface, state, pause_reason)
        except QueueError as exc:
            raise AcdError(str(exc), 502) from None
        finally:
            self._busy.discard(agent.extension)
        agent.state, agent.reason, agent.since = state, pause_reason, _iso()
        agent.acw_until = None
        if state == READY:
            agent.mode = mode or agent.mode or AUTO_IN
        task = self._acw_tasks.pop(agent.extension, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if state == ACW:
            timeout = float(self._param("acti_acwtimeout", "30") or 0)
            if timeout > 0:
                agent.acw_until = self.clock() + timeout
                self._start_acw_timer(agent)
        self._save(agent)
        self._publish_state(agent)

    @staticmethod
    async def _apply_pause(control: QueueControl, queue: str, iface: str, state: str,
                           reason: str) -> None:
        if state == READY:
            status = await control.unpause(queue, iface)
            ok = SUCCESS["unpause"]
        else:
            status = await control.pause(queue, iface, reason)
            ok = SUCCESS["pause"]
        if status not in ok:
            raise QueueError(f"cannot change state in queue {queue}: Asterisk said {status}"
                             " (is the agent still a member? `queue show` tells)")

    # -- after-call work --------------------------------------------------------------------------
    def _start_acw_timer(self, agent: Agent) -> None:
        until = agent.acw_until
        if until is None:
            return

        async def end_acw() -> None:
            await asyncio.sleep(max(0.0, until - self.clock()))
            async with self._lock(agent.extension):
                current = self.agents.get(agent.extension)
                if current is not agent or agent.state != ACW or agent.acw_until != until:
                    return
                try:
                    await self._set_state(agent, READY, "")
                except AstctiError as exc:
                    log.warning("after-call work of agent %s did not end: %s", agent.agentid,
                                exc)

        old = self._acw_tasks.pop(agent.extension, None)
        if old is not None:
            old.cancel()
        self._acw_tasks[agent.extension] = self.tasks.spawn(
            end_acw(), name=f"acw-{agent.extension}")

    def _auto_acw(self, agent: Agent) -> None:
        """After a queue call: after-call work when the parameter says so, or always for an
        agent in manual-in mode (that is what manual-in means)."""
        if agent.mode != MANUAL_IN and self._param("acti_autoacw", "0") not in ("1", "yes",
                                                                                 "true"):
            return

        async def start() -> None:
            async with self._lock(agent.extension):
                if self.agents.get(agent.extension) is agent and agent.state == READY:
                    try:
                        await self._set_state(agent, ACW, "")
                    except AstctiError as exc:
                        log.warning("automatic after-call work for agent %s failed: %s",
                                    agent.agentid, exc)

        self.tasks.spawn(start(), name=f"autoacw-{agent.extension}")

    # -- events ---------------------------------------------------------------------------------
    def _publish(self, cls: type[AgentEvent], agent: Agent, **extra: object) -> None:
        self.hub.publish(cls(agent.extension, "", _iso(), agentid=agent.agentid,
                             groups=list(agent.groups), **extra))  # type: ignore[arg-type]

    def _publish_state(self, agent: Agent) -> None:
        if agent.state == READY:
            self._publish(AgentReady, agent)
        elif agent.state == ACW:
            self._publish(AgentWorkNotReady, agent,
                          until=_iso(agent.acw_until) if agent.acw_until else "")
        else:
            self._publish(AgentNotReady, agent, reasoncode=agent.reason)

    def on_agent_called(self, _ami: object, event: dict[str, Any]) -> None:
        """app_queue offers a call to a member (AMI `AgentCalled`, class agent): the queue a
        call of a FreePBX-form member (`Local/<ext>@from-queue/n`) comes from, which ARI cannot
        tell (the member's Local channel rings the phone with its own Dial())."""
        match = re.match(r"^Local/([^@/]+)@", str(event.get("Interface", "")))
        queue, callid = str(event.get("Queue", "")), str(event.get("Linkedid", ""))
        if match and queue and callid:
            if len(self.offers) >= MAX_OFFERS:  # calls whose agent leg we never saw end
                self.offers.pop(next(iter(self.offers)))
            self.offers[(match.group(1), callid)] = queue

    def queue_offered(self, extension: str, callid: str) -> str | None:
        """The queue that offered this call to the extension, if AMI said so (the tracker's)."""
        return self.offers.get((extension, callid))

    def queue_of(self, extension: str, callid: str) -> str | None:
        """The queue a call reached the extension's agent through (the tracker's lookup)."""
        agent = self.agents.get(extension)
        waiting = self.waiting.get(callid)
        if waiting is not None and (agent is None or waiting[0] in agent.groups):
            return waiting[0]
        if agent is not None and len(agent.groups) == 1:
            return agent.groups[0]
        return None  # several queues and the caller was not seen waiting: do not guess

    def on_event(self, link: AsteriskLink, event: AriEvent,
                 cti_events: list[CtiEvent]) -> None:
        """The app's event stream (after the tracker): helper replies, pauses, queue calls."""
        kind = event.get("type")
        if kind == "ChannelUserevent":
            control = self.controls.get(link.name)
            if control is not None:
                control.on_event(event)
        elif kind == "DeviceStateChanged":
            self._on_pause_state(event)
        for cti in cti_events:
            if isinstance(cti, ConnectionCleared):
                self.offers.pop((cti.extension, cti.callid), None)
            agent = self.agents.get(cti.extension)
            if agent is None:
                continue
            if isinstance(cti, Delivered) and cti.lastredirection in agent.groups:
                agent.queue_calls[cti.callid] = cti.lastredirection
            elif isinstance(cti, Established) and cti.callid in agent.queue_calls:
                agent.answered.add(cti.callid)
            elif isinstance(cti, ConnectionCleared) and cti.callid in agent.queue_calls:
                agent.queue_calls.pop(cti.callid, None)
                if cti.callid in agent.answered:
                    agent.answered.discard(cti.callid)
                    self._auto_acw(agent)

    def _on_pause_state(self, event: AriEvent) -> None:
        """A pause or unpause astcti did not make (e.g. the phone's feature code)."""
        device = (event.get("device_state") or {})
        name, value = device.get("name", ""), device.get("state", "")
        if not name.startswith(PAUSE_DEVICE_PREFIX) or "_pause_" not in name:
            return
        queue, _, iface = name[len(PAUSE_DEVICE_PREFIX):].partition("_pause_")
        for agent in self.agents.values():
            if agent.extension in self._busy or queue not in agent.groups:
                continue
            if self.interfaces(agent.extension)[0] != iface:
                continue
            paused = value == "INUSE"
            if paused and agent.state == READY:
                agent.state, agent.reason, agent.since = NOTREADY, "", _iso()
            elif value == "NOT_INUSE" and agent.state != READY:
                agent.state, agent.reason, agent.since, agent.acw_until = READY, "", _iso(), None
            else:
                continue
            self._save(agent)
            self._publish_state(agent)

    # -- Asterisk is the truth --------------------------------------------------------------------
    async def on_link_up(self, link: AsteriskLink) -> None:
        """Re-read every stored agent this Asterisk serves; correct and announce any drift."""
        old = self.controls.get(link.name)
        if old is not None:
            await old.close_probe()  # of the previous connection, if Asterisk still has it
        self.controls[link.name] = QueueControl(link)
        for agent in list(self.agents.values()):
            if self.directory.serving.get(agent.extension) != link.name:
                continue
            try:
                async with self._lock(agent.extension):
                    await self._resync(link, agent)
            except (AstctiError, AriError) as exc:
                log.warning("cannot re-read agent %s on %s: %s", agent.agentid, link.name,
                            getattr(exc, "message", exc))
        self._ensure_poller()

    async def _resync(self, link: AsteriskLink, agent: Agent) -> None:
        control = self.controls[link.name]
        iface = self.interfaces(agent.extension)[0]
        members = await control.membership(agent.groups, iface)
        lost = [q for q, m in members.items() if m is None]
        if lost:
            await link.unsubscribe(self._pause_sources(replace_groups(agent, lost)))
            for queue in lost:
                agent.groups.remove(queue)
            self._publish(AgentLoggedOff, replace_groups(agent, lost), reason="asterisk")
            if not agent.groups:
                self._forget(agent)
                log.info("agent %s on %s is no longer in any queue: logged off", agent.agentid,
                         agent.extension)
                return
        await link.subscribe(self._pause_sources(agent))
        paused = any(members[q] for q in agent.groups)
        before = (agent.state, agent.reason)
        if not paused:
            agent.state, agent.reason, agent.acw_until = READY, "", None
        elif agent.state == READY:
            agent.state, agent.reason = NOTREADY, ""
        if (agent.state, agent.reason) != before:
            agent.since = _iso()
            self._publish_state(agent)
        if agent.state == ACW and agent.acw_until:
            self._start_acw_timer(agent)
        self._save(agent)

    # -- callers waiting in the queues ---------------------------------------------------------
    # app_queue tells AMI (QueueCallerJoin/Leave/Abandon) who waits; where an Asterisk has an
    # AMI link those events feed the lists as they happen (no polling, no channel). Without AMI
    # the poller reads QUEUE_WAITING_COUNT/QUEUE_GET_CHANNEL once a second while agents are
    # logged in, on ONE probe channel per Asterisk kept for as long as it polls (ARI evaluates
    # dialplan functions only on a channel).
    AMI_EVENTS = ("QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon")

    def attach_ami(self, ami: AmiLink) -> Callable[[], None]:
        """Follow the waiting callers of `ami`'s Asterisk from its events; returns the detach."""
        link = ami.config.sibling
        removers = [ami.on(name, self._on_ami_caller) for name in self.AMI_EVENTS]

        async def resync(source: AmiLink) -> None:
            try:
                await self._ami_resync(link, source)
            except AstctiError as exc:  # app_queue not loaded yet, AMI down again, no answer
                log.warning("%s: cannot read the waiting callers (the ACD polls the queues"
                            " meanwhile): %s", source.name, exc)

        ami.up_hooks.append(resync)

        def detach() -> None:
            for remove in removers:
                remove()
            if resync in ami.up_hooks:
                ami.up_hooks.remove(resync)
            self._fed.discard(link)
        return detach

    def _fed_by_ami(self, link: AsteriskLink) -> bool:
        ami = getattr(link, "ami", None)
        return ami is not None and ami.up and link.name in self._fed

    def _on_ami_caller(self, ami: AmiLink, event: dict[str, object]) -> None:
        link, queue = ami.config.sibling, str(event.get("Queue", ""))
        uniqueid = str(event.get("Uniqueid", ""))
        if not queue or not uniqueid or link not in self._fed:
            return
        callers = [c for c in self._queues.get((link, queue), []) if c[0] != uniqueid]
        if event.get("Event") == "QueueCallerJoin":
            callid = str(event.get("Linkedid") or uniqueid)
            position = _int(event.get("Position"), len(callers) + 1)
            callers.insert(max(0, min(position - 1, len(callers))),
                           (uniqueid, callid, str(event.get("CallerIDNum", ""))))
        self._set_queue(link, queue, callers)

    async def _ami_resync(self, link: str, ami: AmiLink) -> None:
        """After an AMI (re)connect: every queue's callers as Asterisk has them now."""
        lists: dict[str, list[tuple[int, tuple[str, str, str]]]] = {}
        for message in await ami.queue_status():
            queue = str(message.get("Queue", ""))
            if message.get("Event") == "QueueParams" and queue:
                lists.setdefault(queue, [])
            elif message.get("Event") == "QueueEntry" and queue:
                uniqueid = str(message.get("Uniqueid", ""))
                lists.setdefault(queue, []).append((
                    _int(message.get("Position")),
                    (uniqueid, str(message.get("Linkedid") or uniqueid),
                     str(message.get("CallerIDNum", "")))))
        self._fed.add(link)
        for (name, queue) in [k for k in self._queues if k[0] == link and k[1] not in lists]:
            self._set_queue(name, queue, [])
        for queue, entries in lists.items():
            self._set_queue(link, queue, [caller for _pos, caller in sorted(entries)])

    def _set_queue(self, link: str, queue: str, callers: list[tuple[str, str, str]]) -> None:
        """A queue's callers now, first first: announce new positions, update `waiting`."""
        if callers:
            self._queues[(link, queue)] = callers
        else:
            self._queues.pop((link, queue), None)
        for position, (_uid, callid, number) in enumerate(callers, 1):
            if self.waiting.get(callid) != (queue, position):
                self._announce(callid, queue, position, number)
        self.waiting = {callid: (q, position) for (_l, q), entries in self._queues.items()
                        for position, (_uid, callid, _n) in enumerate(entries, 1)}
        if self.on_waiting is not None:
            self.on_waiting(queue, [(callid, number) for _uid, callid, number in callers])

    def _ensure_poller(self) -> None:
        if self.agents and (self._poller is None or self._poller.done()):
            self._poller = self.tasks.spawn(self._poll(), name="acd-poll")

    async def stop(self) -> None:
        await self.tasks.cancel_all()
        self._poller = None
        self._acw_tasks.clear()
        for control in self.controls.values():
            await control.close_probe()

    async def _poll(self) -> None:
        """Announce callers waiting in an agent's queues (`queued`, with their position) on the
        Asterisks that have no AMI link, while agents are logged in."""
        try:
            while self.agents:
                try:
                    await self._poll_once()
                except (AstctiError, AriError) as exc:
                    log.debug("queue poll: %s", getattr(exc, "message", exc))
                except Exception:
                    log.exception("queue poll failed")
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            for control in self.controls.values():
                await control.close_probe()

    async def _poll_once(self) -> None:
        by_link: dict[str, set[str]] = {}
        for agent in self.agents.values():
            name = self.directory.serving.get(agent.extension)
            if name:
                by_link.setdefault(name, set()).update(agent.groups)
        for name, queues in by_link.items():
            control = self.controls.get(name)
            if control is None or not control.link.up:
                continue
            if self._fed_by_ami(control.link):
                await control.close_probe()
                continue
            for queue in sorted(queues):
                channels = await control.waiting(queue, keep=True)
                unknown = [c for c in channels if c and c not in self._names]
                if unknown:
                    for ch in await control.link.call("channels", "list") or []:
                        linkedid = (ch.get("channelvars") or {}).get("CHANNEL(linkedid)")
                        self._names[ch["name"]] = (linkedid or ch["id"],
                                                   (ch.get("caller") or {}).get("number", ""))
                self._set_queue(name, queue, [(channel, *self._names[channel])
                                              for channel in channels if channel in self._names])
            for key in [k for k in self._queues if k[0] == name and k[1] not in queues]:
                self._set_queue(name, key[1], [])
        live = set(self.waiting)
        self._names = {n: v for n, v in self._names.items() if v[0] in live}

    def _announce(self, callid: str, queue: str, position: int, number: str) -> None:
        for agent in self.agents.values():
            if queue in agent.groups and callid not in agent.queue_calls:
                self.hub.publish(Queued(agent.extension, callid, _iso(), queue=queue,
                                        position=position, calling=number))


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def replace_groups(agent: Agent, groups: list[str]) -> Agent:
    """A copy of the agent naming other groups (for an event about those queues only)."""
    return replace(agent, groups=list(groups), queue_calls={}, answered=set())
