"""Third-party call control: astcti's calls in Stasis, bridges, hold, transfer, conference.

ARI can only answer, hold, bridge, move or send DTMF to channels inside a Stasis application,
so the dialplan (`asterisk-conf/asterisk/extensions_astcti.conf.j2`, context `astcti-dial`)
hands calls to and from agents to astcti's app with `Stasis(app,dial,DIALSTRING,TIMEOUT)`.
This service then creates the other leg (`channels/create` + `dial`, in Stasis from birth,
`originator=` the first leg so both share one linkedid: the callid) and bridges the two in a
mixing bridge. Requests (makecall, hold, transfer...) move channels between bridges.

The service decides and calls ARI; the tracker (pure) turns the resulting ARI events into CTI
events. What ARI does not report (astcti's own hold, a transfer's intent, which channel is the
agent's makecall leg) is told to the tracker by plain method calls before the ARI operation.

Model: a `Conv` is one mixing bridge and the channels talking in it; `holder` is the agent's
channel taken out of it to hold it (the others hear music on hold, the agent silence). Rule:
a conversation with a single party left and nobody holding it or being dialled into it is
over: astcti hangs the last party up and destroys the bridge, so Asterisk is left clean.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from urllib.parse import urlencode
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from astcti.cti.model import Connection, ConnectionState, Direction
from astcti.cti.tracker import Intent, Plan, Tracker
from astcti.cti.userdata import UserDataService
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import AGENT_SHIM_CONTEXT, LINKEDID_VAR

if TYPE_CHECKING:
    from astcti.cti.directory import Directory
    from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

#: Auto-answer headers common desk phones honour (Polycom/Yealink/Snom/Grandstream/Cisco...).
AUTO_ANSWER_HEADERS = {
    "Call-Info": "<sip:127.0.0.1>;answer-after=0",
    "Alert-Info": "<http://127.0.0.1>;info=alert-autoanswer;delay=0",
    "Answer-Mode": "Auto",
    "P-Auto-answer": "normal",
}
DTMF_RE = re.compile(r"^[0-9*#A-Da-d,wW]{1,64}$")
#: Q.850 cause -> ARI hangup reason, to give a caller the far end's outcome.
HANGUP_REASONS = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "normal",
                  1: "unallocated", 3: "unallocated", 20: "unallocated", 34: "congestion",
                  38: "congestion", 41: "congestion", 42: "congestion"}
DIAL_REASONS = {"BUSY": "busy", "NOANSWER": "no_answer", "CHANUNAVAIL": "congestion",
                "CONGESTION": "congestion"}
HOLDING_VAR = "ASTCTI_HOLDING"  # on an agent channel: the bridge it holds
AGENT_RING_SECONDS = 30
FAR_RING_SECONDS = 60


class ControlError(AstctiError):
    """A control request that cannot be carried out: `words` for the client, HTTP `status`."""

    def __init__(self, words: str, status: int) -> None:
        super().__init__(words)
        self.words = words
        self.status = status


@dataclass
class Leg:
    """A channel in astcti's Stasis app."""

    link: str
    id: str
    name: str
    number: str = ""  # caller id number (who this party is, for events)
    peer: str | None = None  # the leg this one was dialled for (bridged with it on answer)
    up: bool = False
    gone: bool = False
    replaced: bool = False  # `answer` re-offered the call on another leg
    answered_by_peer: bool = False


@dataclass
class Conv:
    """One mixing bridge and who talks in it."""

    link: str
    bridge_id: str
    members: set[str] = field(default_factory=set)
    holder: str | None = None  # agent channel out of the bridge while the call is held
    incoming: set[str] = field(default_factory=set)  # legs being dialled into it
    moh: bool = False
    closing: bool = False
    recall: str | None = None  # single-step transfer: the agent to ring again if it fails


class CallControl:
    """The service behind the call control requests and the Stasis event handling."""

    def __init__(self, tracker: Tracker, directory: Directory,
                 dial_context: str = "from-internal") -> None:
        self.tracker = tracker
        self.directory = directory
        self.dial_context = dial_context
        self.userdata: UserDataService | None = None  # set by the daemon: data follows calls
        self.legs: dict[tuple[str, str], Leg] = {}
        self.convs: dict[tuple[str, str], Conv] = {}  # (link, bridge id)
        self.conv_of: dict[tuple[str, str], Conv] = {}  # (link, channel id) -> its conv
        # makecall/consultation agent legs waiting to be answered: destination, caller, userdata
        self._pending_far: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- helpers --------------------------------------------------------------------------------
    def _link(self, name: str) -> AsteriskLink:
        return self.directory.links[name]

    async def _ari(self, link: str, resource: str, operation: str, **params: Any) -> Any:
        try:
            return await self._link(link).call(resource, operation, **params)
        except AriError as exc:
            log.debug("ARI %s.%s %s: %s", resource, operation, params, exc.message)
            raise AriError(exc.status, f"{resource}.{operation}: {exc.message}") from None

    async def _quiet(self, link: str, resource: str, operation: str, **params: Any) -> None:
        """An operation whose failure only means the object is already gone."""
        try:
            await self._ari(link, resource, operation, **params)
        except AriError as exc:
            if exc.status not in (404, 409, 422):
                log.warning("%s.%s %s: %s", resource, operation, params, exc.message)
        except Exception as exc:  # link down: the resync will tell
            log.info("%s.%s %s: %s", resource, operation, params, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call control task failed", exc_info=task.exception())

    @staticmethod
    def _new_id() -> str:
        return f"astcti-{uuid.uuid4().hex[:20]}"

    def _endpoint_for(self, link: str, destination: str) -> tuple[str, bool]:
        """The dial string of a destination; True when it goes through the dialplan."""
        ext = self.directory.extensions.get(destination)
        if ext is not None and self.directory.serving.get(destination) == link:
            return ext.endpoint, False
        return f"Local/{destination}@{self.dial_context}", True

    async def _routable(self, link: str, destination: str, channel_id: str) -> bool:
        if not self._endpoint_for(link, destination)[1]:
            return True
        variable = f"DIALPLAN_EXISTS({self.dial_context},{destination},1)"
        try:  # the function needs a channel (a global read returns nothing)
            reply = await self._ari(link, "channels", "getChannelVar", channelId=channel_id,
                                    variable=variable)
        except AriError:
            return False
        return str((reply or {}).get("value", "0")) == "1"

    async def _create(self, link: str, endpoint: str, *, originator: str | None = None,
                      variables: dict[str, str] | None = None, plan: Plan | None = None,
                      number: str = "", peer: str | None = None) -> Leg:
        """A channel in Stasis from birth (not dialled yet)."""
        channel_id = self._new_id()
        if plan is not None:
            self.tracker.plan(link, channel_id, plan)
        leg = Leg(link, channel_id, endpoint, number=number, peer=peer)
        self.legs[(link, channel_id)] = leg
        if peer is not None:
            self.tracker.dialling(link, channel_id, peer)
        query = {"endpoint": endpoint, "app": self._link(link).config.app, "appArgs": "leg",
                 "channelId": channel_id}
        if originator:
            query["originator"] = originator
        try:
            # variables in the body: set before the channel is handed to Stasis (no race)
            await self._link(link).rest.send_json(
                "POST", f"channels/create?{urlencode(query)}", {"variables": variables or {}})
        except AriError as exc:
            self.legs.pop((link, channel_id), None)
            self.tracker.forget_plan(link, channel_id)
            raise AriError(exc.status, f"channels.create {endpoint}: {exc.message}") from None
        except BaseException:
            self.legs.pop((link, channel_id), None)
            self.tracker.forget_plan(link, channel_id)
            await self._quiet(link, "channels", "hangup", channelId=channel_id)
            raise
        return leg

    async def _dial(self, leg: Leg, caller: str | None, timeout: int) -> None:
        try:
            for attempt in range(50):  # `create` returns before the channel is in Stasis
                try:
                    await self._ari(leg.link, "channels", "dial", channelId=leg.id,
                                    caller=caller, timeout=timeout)
                    break
                except AriError as exc:
                    if exc.status != 409 or "not in Stasis" not in exc.message or attempt == 49:
                        raise
                    await asyncio.sleep(0.02)
        except BaseException:
            await self._hangup(leg.link, leg.id)
            raise

    async def _hangup(self, link: str, channel_id: str, reason: str = "normal") -> None:
        await self._quiet(link, "channels", "hangup", channelId=channel_id, reason=reason)

    async def _bridge(self, link: str, members: list[str]) -> Conv:
        bridge_id = self._new_id()
        await self._ari(link, "bridges", "create", type="mixing", bridgeId=bridge_id,
                        name="astcti")
        conv = Conv(link, bridge_id)
        self.convs[(link, bridge_id)] = conv
        for channel_id in members:
            await self._join(conv, channel_id)
        return conv

    async def _join(self, conv: Conv, channel_id: str) -> None:
        old = self.conv_of.get((conv.link, channel_id))
        if old is not None and old is not conv:
            old.members.discard(channel_id)
        if channel_id in conv.incoming:
            conv.recall = None  # the destination took the call: no recall any more
        conv.members.add(channel_id)
        conv.incoming.discard(channel_id)
        self.conv_of[(conv.link, channel_id)] = conv
        await self._ari(conv.link, "bridges", "addChannel", bridgeId=conv.bridge_id,
                        channel=channel_id)
        if old is not None and old is not conv:
            await self._settle(old)

    async def _settle(self, conv: Conv) -> None:
        """Apply the rule: a conversation reduced to one party is over."""
        if conv.closing:
            return
        alive = [m for m in conv.members if not self._gone(conv.link, m)]
        holder_alive = conv.holder is not None and not self._gone(conv.link, conv.holder)
        if conv.incoming and (alive or holder_alive):
            return
        if len(alive) >= 2 or (holder_alive and alive):
            return
        if conv.recall is not None and len(alive) == 1 and not holder_alive:
            # a single-step transfer's destination did not take the call: ring the agent
            # again rather than drop the customer (once; a second failure ends the call)
            agent, conv.recall = conv.recall, None
            try:
                await self._far_into(conv, alive[0], agent, self._number(conv.link, alive[0]))
                log.info("transfer not answered: recalling %s", agent)
                return
            except Exception as exc:
                log.info("recall of %s failed: %s", agent, exc)
        conv.closing = True
        for channel_id in [*alive, *([conv.holder] if holder_alive else [])]:
            await self._hangup(conv.link, channel_id)
        await self._quiet(conv.link, "bridges", "destroy", bridgeId=conv.bridge_id)
        self.convs.pop((conv.link, conv.bridge_id), None)
        for channel_id in list(conv.members) + ([conv.holder] if conv.holder else []):
            if self.conv_of.get((conv.link, channel_id)) is conv:
                del self.conv_of[(conv.link, channel_id)]

    def _gone(self, link: str, channel_id: str) -> bool:
        leg = self.legs.get((link, channel_id))
        return leg is None or leg.gone

    # -- ARI events -----------------------------------------------------------------------------
    def on_event(self, link: AsteriskLink, event: AriEvent) -> None:
        """Called for every ARI event (after the tracker): react to our channels' events."""
        kind = event.get("type")
        if kind == "StasisStart":
            args = event.get("args") or []
            if args and args[0] == "dial":
                channel = event["channel"]  # known at once: its hangup may come before the task
                self.legs[(link.name, channel["id"])] = Leg(
                    link.name, channel["id"], channel["name"],
                    number=(channel.get("caller") or {}).get("number", ""),
                    up=channel.get("state") == "Up")
                self._spawn(self._locked(self._on_dial_request, link.name, event))
        elif kind == "Dial":
            peer = (event.get("peer") or {}).get("id", "")
            if (link.name, peer) in self.legs:
                self._spawn(self._locked(self._on_dial_progress, link.name, event))
        elif kind == "ChannelStateChange":
            channel = event.get("channel") or {}
            leg = self.legs.get((link.name, channel.get("id", "")))
            if leg is not None and channel.get("state") == "Up" and not leg.up:
                leg.up = True
                self._spawn(self._locked(self._on_answered, link.name, leg))
        elif kind == "ChannelEnteredBridge":
            bridge = (event.get("bridge") or {}).get("id", "")
            channel = event.get("channel") or {}
            conv = self.convs.get((link.name, bridge))
            if conv is not None and channel.get("id") not in conv.members and \
                    channel.get("id") != conv.holder:
                self._spawn(self._locked(self._adopt, conv, channel))
        elif kind in ("ChannelDestroyed", "StasisEnd"):
            channel = event.get("channel") or {}
            leg = self.legs.get((link.name, channel.get("id", "")))
            # StasisEnd carries no hangup cause: enough for an answered leg only (a Local
            # channel swapped in by Asterisk raises no ChannelDestroyed to the app)
            if leg is not None and not leg.gone and (kind == "ChannelDestroyed" or leg.up):
                leg.gone = True
                self._spawn(self._locked(self._on_gone, link.name, leg, event))

    async def _adopt(self, conv: Conv, channel: dict[str, Any]) -> None:
        """Asterisk put a channel in one of astcti's bridges (e.g. the Local channel of a
        phone's own blind transfer): it is a party of that conversation from now on."""
        key = (conv.link, channel["id"])
        if key in self.conv_of or channel.get("id") in conv.incoming:
            return
        leg = self.legs.get(key)
        if leg is None:
            leg = self.legs[key] = Leg(conv.link, channel["id"], channel.get("name", ""),
                                       number=(channel.get("caller") or {}).get("number", ""),
                                       up=True)
        conv.members.add(leg.id)
        self.conv_of[key] = conv

    async def _locked(self, handler: Any, *args: Any) -> None:
        async with self._lock:
            await handler(*args)

    async def _on_dial_request(self, link: str, event: AriEvent) -> None:
        """A call entered the app from the dialplan: dial the callee for it."""
        channel = event["channel"]
        args = event.get("args") or []
        caller = self.legs.get((link, channel["id"]))
        if caller is None or caller.gone:
            return  # hung up before astcti got to it
        dialstring = args[1] if len(args) > 1 else ""
        try:
            timeout = int(args[2]) if len(args) > 2 and args[2] else FAR_RING_SECONDS
        except ValueError:
            timeout = FAR_RING_SECONDS
        if not dialstring:
            log.warning("Stasis(%s,dial) without a dial string from %s: hanging up",
                        self._link(link).config.app, channel["name"])
            await self._hangup(link, caller.id, "unallocated")
            return
        caller_id = channel.get("caller") or {}
        variables = {"CONNECTEDLINE(num,i)": caller_id.get("number", ""),
                     "CONNECTEDLINE(name,i)": caller_id.get("name", ""),
                     "ASTCTI_DIRECT": "1"}
        # a queue's call comes through the member shim (Local/<ext>@astcti-agent/n)
        from_queue = f"@{AGENT_SHIM_CONTEXT}-" in channel.get("name", "")  # Local/101@astcti-agent-...;2
        try:
            callee = await self._create(link, dialstring, originator=caller.id,
                                        variables=variables, peer=caller.id,
                                        plan=Plan(via_queue=True) if from_queue else None)
            await self._dial(callee, caller.id, timeout)
        except Exception as exc:
            log.info("cannot dial %s for %s: %s", dialstring, channel["name"], exc)
            await self._hangup(link, caller.id, "congestion")

    async def _on_dial_progress(self, link: str, event: AriEvent) -> None:
        leg = self.legs.get((link, event["peer"]["id"]))
        if leg is None or leg.peer is None:
            return
        peer = self.legs.get((link, leg.peer))
        status = event.get("dialstatus", "")
        if peer is None or peer.gone:
            return
        if status == "RINGING" and not peer.up:
            await self._quiet(link, "channels", "ring", channelId=peer.id)
        elif status in DIAL_REASONS and not leg.replaced:
            await self._hangup(link, leg.id)
            await self._far_failed(link, leg, DIAL_REASONS[status])

    async def _far_failed(self, link: str, leg: Leg, reason: str) -> None:
        """The leg dialled for `leg.peer` will not answer: end what waited for it."""
        target = next((c for c in self.convs.values()
                       if c.link == link and leg.id in c.incoming), None)
        if target is not None:  # makecall, consultation, single-step transfer/conference
            target.incoming.discard(leg.id)
            await self._settle(target)
        elif leg.peer is not None and not self._gone(link, leg.peer) and \
                (link, leg.peer) not in self.conv_of:  # a call from the dialplan
            await self._hangup(link, leg.peer, reason)

    async def _on_answered(self, link: str, leg: Leg) -> None:
        """A leg astcti dialled answered: bridge it with the leg it was dialled for."""
        if leg.gone:
            return
        if await self.on_agent_up(link, leg) or leg.peer is None:
            return
        peer = self.legs.get((link, leg.peer))
        if peer is None or peer.gone:
            await self._hangup(link, leg.id)
            return
        conv = self.conv_of.get((link, peer.id))
        target = next((c for c in self.convs.values() if leg.id in c.incoming), None)
        try:
            if target is not None:  # dialled into an existing conversation (transfer/conference)
                if target.moh:
                    await self._quiet(link, "bridges", "stopMoh", bridgeId=target.bridge_id)
                    target.moh = False
                await self._join(target, leg.id)
            elif conv is not None:  # makecall/consultation: the agent waits in its bridge
                await self._join(conv, leg.id)
            else:
                if not peer.up:
                    await self._ari(link, "channels", "answer", channelId=peer.id)
                    peer.up = True
                await self._bridge(link, [peer.id, leg.id])
        except AriError as exc:
            log.info("bridging %s with %s failed: %s", leg.name, peer.name, exc.message)
            await self._hangup(link, leg.id)
            await self._hangup(link, peer.id)

    async def _on_gone(self, link: str, leg: Leg, event: AriEvent) -> None:
        """A leg hung up: release what depended on it, leave Asterisk clean."""
        for other in list(self.legs.values()):
            if other.link == link and other.peer == leg.id and not other.up and not other.gone:
                await self._hangup(link, other.id)  # stop ringing a callee whose caller left
        if leg.peer is not None and not leg.up and not leg.replaced:
            cause = event.get("cause")
            reason = HANGUP_REASONS.get(int(cause), "normal") if cause is not None else "normal"
            await self._far_failed(link, leg, reason)
        conv = self.conv_of.pop((link, leg.id), None)
        if conv is not None:
            conv.members.discard(leg.id)
            if conv.holder == leg.id:
                conv.holder = None
                for member in list(conv.members):  # the agent left its held call: release it
                    await self._hangup(link, member)
            await self._settle(conv)
        for conv in list(self.convs.values()):
            conv.incoming.discard(leg.id)
        self._pending_far.pop((link, leg.id), None)
        self.legs.pop((link, leg.id), None)

    # -- lookups for requests ---------------------------------------------------------------------
    def connection(self, extension: str, callid: str) -> Connection:
        conn = self.tracker.find(extension, callid)
        if conn is None:
            raise ControlError("invalid call id", 404)
        return conn

    def _controlled(self, conn: Connection) -> Conv:
        conv = self.conv_of.get((conn.link, conn.channel_id))
        if conv is None:
            raise ControlError("call not controllable: it did not pass through astcti's Stasis"
                               " application (see docs/call-control.md)", 409)
        return conv

    def _active(self, extension: str, callid: str) -> tuple[Connection, Conv]:
        conn = self.connection(extension, callid)
        if conn.state is not ConnectionState.CONNECTED:
            raise ControlError("no active call", 409)
        conv = self._controlled(conn)
        if conv.holder == conn.channel_id or conn.channel_id not in conv.members:
            raise ControlError("no active call", 409)
        return conn, conv

    def _held(self, extension: str, callid: str) -> tuple[Connection, Conv]:
        conn = self.connection(extension, callid)
        conv = self.conv_of.get((conn.link, conn.channel_id))
        if conn.state is not ConnectionState.HELD or conv is None or \
                conv.holder != conn.channel_id:
            raise ControlError("no held call", 409)
        return conn, conv

    def _number(self, link: str, channel_id: str) -> str:
        leg = self.legs.get((link, channel_id))
        conn = self.tracker.connections.get((link, channel_id))
        if conn is not None:
            return conn.extension
        return leg.number if leg else ""

    def party_number(self, link: str, channel_id: str) -> str:
        """Who a channel of astcti's calls is (the tracker names a party that leaves)."""
        return self._number(link, channel_id)

    def _watched(self, link: str, channels: list[str]) -> list[str]:
        return [c for c in channels if (link, c) in self.tracker.connections]

    async def _check_with_helper(self, link: str, destination: str) -> None:
        """DIALPLAN_EXISTS needs a channel: a Local one, created but never dialled."""
        if not self._endpoint_for(link, destination)[1]:
            return
        helper = self._new_id()
        try:
            await self._ari(link, "channels", "create", endpoint=f"Local/check@{self.dial_context}",
                            app=self._link(link).config.app, appArgs="check", channelId=helper)
        except AriError as exc:
            log.info("destination check for %s failed: %s", destination, exc.message)
            raise ControlError("destination not obtainable", 404) from None
        try:
            await self._check_destination(link, destination, helper)
        finally:
            await self._hangup(link, helper)
            await self._quiet(link, "channels", "hangup", channelId=helper.replace(";1", ";2"))

    async def _check_destination(self, link: str, destination: str, channel_id: str) -> None:
        if not await self._routable(link, destination, channel_id):
            raise ControlError("destination not obtainable", 404)

    def _link_of_extension(self, extension: str) -> str:
        link = self.directory.link_of(extension)
        if link is None or not link.up:
            raise ControlError(self.directory.why_unserved(extension),
                               404 if extension not in self.directory.extensions else 409)
        return link.name

    # -- requests ---------------------------------------------------------------------------------
    async def makecall(self, extension: str, destination: str,
                       userdata: dict[str, Any] | None = None) -> str:
        """Call the agent's phone (auto-answer), then the destination; the new callid."""
        link = self._link_of_extension(extension)
        async with self._lock:
            return await self._agent_call(link, extension, destination, userdata or {},
                                          check=True)

    async def _agent_call(self, link: str, extension: str, destination: str,
                          userdata: dict[str, Any], check: bool = False) -> str:
        if check:
            await self._check_with_helper(link, destination)
        ext = self.directory.extensions[extension]
        variables = {f"PJSIP_HEADER(add,{name})": value
                     for name, value in AUTO_ANSWER_HEADERS.items()} if ext.technology == \
            "PJSIP" else {}
        variables["CONNECTEDLINE(num,i)"] = destination
        plan = Plan(outgoing=True, called=destination, userdata=userdata)
        agent = await self._create(link, ext.endpoint, variables=variables, plan=plan,
                                   number=extension)
        self._pending_far[(link, agent.id)] = (destination, extension, userdata)
        await self._dial(agent, None, AGENT_RING_SECONDS)
        return agent.id  # created without originator: its linkedid is its own id

    async def on_agent_up(self, link: str, leg: Leg) -> bool:
        """The agent answered its makecall/consultation leg: bridge it, dial the far end."""
        pending = self._pending_far.pop((link, leg.id), None)
        if pending is None:
            return False
        destination, extension, userdata = pending
        endpoint, via_dialplan = self._endpoint_for(link, destination)
        conv = await self._bridge(link, [leg.id])
        variables = {"CONNECTEDLINE(num,i)": extension, "CALLERID(num)": extension}
        if via_dialplan:
            variables["ASTCTI_DIRECT"] = "1"
        if userdata:
            variables["ASTCTI_USERDATA"] = json.dumps(userdata)
        try:
            far = await self._create(link, endpoint, originator=leg.id, variables=variables,
                                     peer=leg.id, number=destination)
            conv.incoming.add(far.id)
            await self._dial(far, leg.id, FAR_RING_SECONDS)
        except Exception as exc:
            log.info("makecall from %s to %s failed: %s", extension, destination, exc)
            conv.incoming.clear()
            await self._settle(conv)
        return True

    async def answer(self, extension: str, callid: str) -> None:
        """Re-offer the ringing call to the phone with auto-answer headers."""
        conn = self.connection(extension, callid)
        if conn.direction is not Direction.INCOMING or conn.state is not ConnectionState.ALERTING:
            raise ControlError("no alerting call", 409)
        async with self._lock:
            leg = self.legs.get((conn.link, conn.channel_id))
            if leg is None or leg.peer is None or leg.gone:
                raise ControlError("call not controllable: it did not pass through astcti's"
                                   " Stasis application (see docs/call-control.md)", 409)
            ext = self.directory.extensions[extension]
            variables = {f"PJSIP_HEADER(add,{name})": value
                         for name, value in AUTO_ANSWER_HEADERS.items()}
            peer = self.legs.get((conn.link, leg.peer))
            if peer is not None:
                variables["CONNECTEDLINE(num,i)"] = peer.number
            leg.replaced = True
            new = await self._create(conn.link, ext.endpoint, originator=leg.peer,
                                     variables=variables, plan=Plan(replaces=leg.id),
                                     peer=leg.peer)
            await self._hangup(conn.link, leg.id)
            await self._dial(new, leg.peer, AGENT_RING_SECONDS)

    async def hangup(self, extension: str, callid: str) -> None:
        conn = self.connection(extension, callid)
        async with self._lock:
            await self._hangup(conn.link, conn.channel_id)

    async def hold(self, extension: str, callid: str) -> None:
        async with self._lock:
            conn, conv = self._active(extension, callid)
            await self._hold(conn, conv)

    async def _hold(self, conn: Connection, conv: Conv) -> None:
        self.tracker.mark_hold(conn.link, conn.channel_id)
        conv.members.discard(conn.channel_id)
        conv.holder = conn.channel_id
        await self._ari(conn.link, "bridges", "removeChannel", bridgeId=conv.bridge_id,
                        channel=conn.channel_id)
        await self._quiet(conn.link, "bridges", "startMoh", bridgeId=conv.bridge_id)
        conv.moh = True
        # remembered in Asterisk, so a restarted astcti knows this lone party is held
        await self._quiet(conn.link, "channels", "setChannelVar", channelId=conn.channel_id,
                          variable=HOLDING_VAR, value=conv.bridge_id)

    async def retrieve(self, extension: str, callid: str) -> None:
        async with self._lock:
            conn, conv = self._held(extension, callid)
            await self._retrieve(conn, conv)

    async def _retrieve(self, conn: Connection, conv: Conv) -> None:
        if conv.moh:
            await self._quiet(conn.link, "bridges", "stopMoh", bridgeId=conv.bridge_id)
            conv.moh = False
        conv.holder = None
        await self._quiet(conn.link, "channels", "setChannelVar", channelId=conn.channel_id,
                          variable=HOLDING_VAR, value="")
        await self._join(conv, conn.channel_id)

    async def consultation(self, extension: str, callid: str, destination: str,
                           userdata: dict[str, Any] | None = None) -> str:
        async with self._lock:
            conn, conv = self._active(extension, callid)
            await self._check_destination(conn.link, destination, conn.channel_id)
            await self._hold(conn, conv)
            # a consultation is a new Asterisk call (new linkedid): it starts with the held
            # call's user data, the request's own keys winning
            data = {**(self.userdata.get(callid) if self.userdata else {}), **(userdata or {})}
            try:
                new_callid = await self._agent_call(conn.link, extension, destination, data)
            except Exception:
                await self._retrieve(conn, conv)
                raise
            if self.userdata is not None:
                self.userdata.hand_over(callid, new_callid)
            return new_callid

    def _pair(self, extension: str, activecallid: str, heldcallid: str
              ) -> tuple[Connection, Conv, Connection, Conv]:
        active, aconv = self._active(extension, activecallid)
        held, hconv = self._held(extension, heldcallid)
        return active, aconv, held, hconv

    async def reconnect(self, extension: str, activecallid: str, heldcallid: str) -> None:
        async with self._lock:
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            for channel_id in list(aconv.members):
                await self._hangup(active.link, channel_id)
            await self._retrieve(held, hconv)

    async def alternate(self, extension: str, activecallid: str, heldcallid: str) -> None:
        async with self._lock:
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            await self._hold(active, aconv)
            await self._retrieve(held, hconv)

    async def transfer(self, extension: str, activecallid: str, heldcallid: str) -> None:
        """Join the held call's parties with the consulted ones; release the agent."""
        async with self._lock:
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            link = active.link
            moving = [m for m in aconv.members if m != active.channel_id]
            staying = [m for m in hconv.members]
            parties = [self._number(link, c) for c in staying + moving]
            self.tracker.expect(link, held.channel_id, Intent(
                "transferred", extension,
                [held.channel_id, active.channel_id, *self._watched(link, staying + moving)],
                parties))
            if hconv.moh:
                await self._quiet(link, "bridges", "stopMoh", bridgeId=hconv.bridge_id)
                hconv.moh = False
            hconv.holder = None
            self.conv_of.pop((link, held.channel_id), None)
            aconv.members.discard(active.channel_id)
            self.conv_of.pop((link, active.channel_id), None)
            for channel_id in moving:
                await self._join(hconv, channel_id)
            await self._hangup(link, held.channel_id)
            await self._hangup(link, active.channel_id)
            await self._settle(aconv)

    async def transfer_blind(self, extension: str, callid: str, destination: str) -> None:
        """Single-step transfer: the other party is dialled to `destination`; the agent leaves."""
        async with self._lock:
            conn, conv = self._active(extension, callid)
            link = conn.link
            await self._check_destination(link, destination, conn.channel_id)
            others = [m for m in conv.members if m != conn.channel_id]
            if not others:
                raise ControlError("no active call", 409)
            await self._far_into(conv, others[0], destination, extension)
            conv.recall = extension
            self.tracker.expect(link, conn.channel_id, Intent(
                "transferred", extension, [conn.channel_id, *self._watched(link, others)],
                [self._number(link, c) for c in others] + [destination]))
            conv.members.discard(conn.channel_id)
            self.conv_of.pop((link, conn.channel_id), None)
            await self._quiet(link, "bridges", "removeChannel", bridgeId=conv.bridge_id,
                              channel=conn.channel_id)
            await self._quiet(link, "bridges", "startMoh", bridgeId=conv.bridge_id)
            conv.moh = True
            await self._hangup(link, conn.channel_id)

    async def _far_into(self, conv: Conv, originator: str, destination: str,
                        caller_number: str) -> Leg:
        link = conv.link
        endpoint, via_dialplan = self._endpoint_for(link, destination)
        variables = {"CONNECTEDLINE(num,i)": caller_number, "CALLERID(num)": caller_number}
        if via_dialplan:
            variables["ASTCTI_DIRECT"] = "1"
        far = await self._create(link, endpoint, originator=originator, variables=variables,
                                 peer=originator, number=destination)
        conv.incoming.add(far.id)
        await self._dial(far, originator, FAR_RING_SECONDS)
        return far

    async def conference(self, extension: str, activecallid: str, heldcallid: str) -> None:
        """All three talk: the consulted parties join the held call, the agent returns to it."""
        async with self._lock:
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            link = active.link
            moving = [m for m in aconv.members if m != active.channel_id]
            staying = list(hconv.members)
            parties = [extension] + [self._number(link, c) for c in staying + moving]
            self.tracker.expect(link, held.channel_id, Intent(
                "conferenced", extension,
                [held.channel_id, *self._watched(link, staying + moving)], parties))
            aconv.members.discard(active.channel_id)
            self.conv_of.pop((link, active.channel_id), None)
            for channel_id in moving:
                await self._join(hconv, channel_id)
            await self._retrieve(held, hconv)
            await self._hangup(link, active.channel_id)
            await self._settle(aconv)

    async def conference_add(self, extension: str, callid: str, destination: str) -> None:
        """Single-step conference: dial `destination` into the extension's call."""
        async with self._lock:
            conn, conv = self._active(extension, callid)
            link = conn.link
            await self._check_destination(link, destination, conn.channel_id)
            far = await self._far_into(conv, conn.channel_id, destination, extension)
            members = list(conv.members)
            self.tracker.expect(link, far.id, Intent(
                "conferenced", extension, self._watched(link, members),
                [self._number(link, c) for c in members] + [destination]))

    async def drop_party(self, extension: str, callid: str, party: str) -> None:
        """Release one party (by its number) of the extension's conversation."""
        async with self._lock:
            conn, conv = self._active(extension, callid)
            target = next((m for m in sorted(conv.members)
                           if self._number(conn.link, m) == party), None)
            if target is None:
                raise ControlError(f"no party {party} in the call", 404)
            await self._hangup(conn.link, target)

    async def dtmf(self, extension: str, callid: str, digits: str) -> None:
        if not DTMF_RE.match(digits):
            raise ControlError("invalid DTMF digits: use 0-9 * # A-D, and , or w to pause", 400)
        async with self._lock:
            conn, conv = self._active(extension, callid)
            others = [m for m in conv.members if m != conn.channel_id]
            if not others:
                raise ControlError("no active call", 409)
            for channel_id in others:
                await self._ari(conn.link, "channels", "sendDTMF", channelId=channel_id,
                                dtmf=digits.upper().replace("W", ","))

    # -- link lifecycle ---------------------------------------------------------------------------
    async def resync(self, link: AsteriskLink) -> None:
        """After a (re)connect: adopt the app's bridges and channels still in Asterisk, so the
        clean-up rule ends them properly (astcti may have restarted in the middle of a call).
        Who held what is not in Asterisk: a bridge left alone is kept until its last party goes."""
        app = link.config.app
        try:
            bridges = await link.rest.call("bridges", "list") or []
            channels = await link.rest.call("channels", "list") or []
        except AriError as exc:
            log.warning("%s: cannot resync call control: %s", link.name, exc.message)
            return
        async with self._lock:
            self.forget_link(link.name)
            linked: dict[str, list[Leg]] = {}  # linkedid -> its legs in astcti's app
            roots: dict[str, Leg] = {}  # linkedid -> the leg the others were dialled for
            for channel in channels:
                plan = channel.get("dialplan") or {}
                args = str(plan.get("app_data", "")).split(",")
                if plan.get("app_name") != "Stasis" or args[0] != app:
                    continue
                leg = Leg(link.name, channel["id"], channel["name"],
                          number=(channel.get("caller") or {}).get("number", ""),
                          up=channel.get("state") == "Up")
                self.legs[(link.name, leg.id)] = leg
                linkedid = (channel.get("channelvars") or {}).get(LINKEDID_VAR) or leg.id
                linked.setdefault(linkedid, []).append(leg)
                if (len(args) > 1 and args[1] == "dial") or leg.id == linkedid:
                    roots.setdefault(linkedid, leg)
            for bridge in bridges:
                if bridge.get("bridge_class") != "stasis" or bridge.get("name") != "astcti":
                    continue
                conv = Conv(link.name, bridge["id"])
                self.convs[(link.name, conv.bridge_id)] = conv
                for channel_id in bridge.get("channels") or []:
                    if (link.name, channel_id) in self.legs:
                        conv.members.add(channel_id)
                        self.conv_of[(link.name, channel_id)] = conv
                if len(conv.members) == 1:
                    conv.holder = await self._find_holder(link.name, conv.bridge_id)
                    if conv.holder is not None:
                        self.conv_of[(link.name, conv.holder)] = conv
                        conv.moh = True
                        self.tracker.restore_hold(link.name, conv.holder)
            # legs outside any bridge were being dialled (or answered) when astcti went away:
            # tie them to the leg they were dialled for, as if astcti had never left
            waiting: list[Leg] = []
            for linkedid, legs in linked.items():
                root = roots.get(linkedid)
                for leg in legs:
                    if root is None or leg is root or (link.name, leg.id) in self.conv_of:
                        continue
                    leg.peer = root.id
                    self.tracker.dialling(link.name, leg.id, root.id)
                    conv = self.conv_of.get((link.name, root.id))
                    if conv is not None:
                        conv.incoming.add(leg.id)
                    if leg.up:
                        waiting.append(leg)
            for conv in list(self.convs.values()):
                if conv.link == link.name:
                    await self._settle(conv)  # parties that left while astcti was away
            for leg in waiting:
                await self._on_answered(link.name, leg)
        if self.legs:
            log.info("%s: call control resumed %d channel(s) in %d bridge(s)", link.name,
                     len([k for k in self.legs if k[0] == link.name]),
                     len([k for k in self.convs if k[0] == link.name]))

    async def _find_holder(self, link: str, bridge_id: str) -> str | None:
        """The agent channel holding this bridge (HOLDING_VAR), among unbridged Stasis legs."""
        bridged = set(self.conv_of)
        for key, leg in self.legs.items():
            if key[0] != link or key in bridged or not leg.up:
                continue
            try:
                reply = await self._ari(link, "channels", "getChannelVar", channelId=leg.id,
                                        variable=HOLDING_VAR)
            except AriError:
                continue
            if (reply or {}).get("value") == bridge_id:
                return leg.id
        return None

    def forget_link(self, link: str) -> None:
        """The link went down: what astcti knew of its Stasis channels is stale."""
        for key in [k for k in self.legs if k[0] == link]:
            del self.legs[key]
        for key in [k for k in self.convs if k[0] == link]:
            del self.convs[key]
        for key in [k for k in self.conv_of if k[0] == link]:
            del self.conv_of[key]
