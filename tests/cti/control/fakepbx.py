"""A stand-in for Asterisk behind call control's `ControlPbx`, for unit tests of the logic.

It keeps channels and bridges as Asterisk would and queues the ARI events each operation
causes (ChannelCreated, StasisStart, Dial, ChannelStateChange, ChannelEntered/LeftBridge,
ChannelDestroyed, BridgeDestroyed), shaped like the real ones in tests/cti/recordings. `Rig`
delivers them to the tracker and call control as the daemon does. It proves the service
logic and the tracker's reading of it; the lab tests prove the behaviour with Asterisk.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from astcti.cti.control import CallControl
from astcti.cti.directory import Directory
from astcti.cti.events import CtiEvent
from astcti.cti.tracker import Tracker

LINK = "l1"
_counter = itertools.count(1)


@dataclass
class FakeChannel:
    id: str
    name: str
    linkedid: str
    number: str
    state: str = "Down"
    bridge: str | None = None
    stasis: bool = True
    app_args: str = "leg"
    vars: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state,
                "caller": {"number": self.number, "name": ""},
                "connected": {"number": "", "name": ""},
                "channelvars": {"CHANNEL(linkedid)": self.linkedid},
                "dialplan": {"app_name": "Stasis" if self.stasis else "AppDial",
                             "app_data": f"astcti,{self.app_args}", "exten": "s"}}


class FakePbx:
    """ControlPbx's operations, on a model of Asterisk."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, set[str]] = {}
        self.events: list[dict[str, Any]] = []
        self.gates: dict[str, asyncio.Event] = {}  # op name -> released when set
        self.arrived: dict[str, int] = {}  # op name -> calls that reached it
        self.talk_answers = True  # a NOTIFY talk takes the endpoint's ringing channel off-hook
        self.exists = True

    # -- helpers for tests ----------------------------------------------------------------------
    def op_names(self) -> list[str]:
        return [op[0] for op in self.ops]

    def emit(self, kind: str, channel: FakeChannel | None = None, **extra: Any) -> None:
        event: dict[str, Any] = {"type": kind, "timestamp": "2026-01-01T00:00:00.000+0000",
                                 **extra}
        if channel is not None:
            event["channel"] = channel.snapshot()
        self.events.append(event)

    def phone_call(self, endpoint: str, number: str, *, app_args: str = "leg",
                   linkedid: str | None = None, state: str = "Up") -> FakeChannel:
        """A channel that exists already (e.g. a customer's call in Stasis)."""
        cid = f"ch-{next(_counter)}"
        chan = FakeChannel(cid, f"{endpoint}-{next(_counter):08x}", linkedid or cid, number,
                           state=state, app_args=app_args)
        self.channels[cid] = chan
        self.emit("ChannelCreated", chan)
        self.emit("StasisStart", chan, args=app_args.split(","))
        return chan

    def answer_phone(self, channel_id: str) -> None:
        """The phone behind this channel answers."""
        chan = self.channels[channel_id]
        chan.state = "Up"
        self.emit("ChannelStateChange", chan)
        self.emit("Dial", None, peer=chan.snapshot(), dialstatus="ANSWER")
        if not chan.stasis:  # an originated channel enters Stasis on answer
            chan.stasis = True
            self.emit("StasisStart", chan, args=chan.app_args.split(","))

    def reject_phone(self, channel_id: str, cause: int = 17, status: str = "BUSY") -> None:
        chan = self.channels[channel_id]
        self.emit("Dial", None, peer=chan.snapshot(), dialstatus=status)
        self._destroy(chan, cause)

    def hang_up_phone(self, channel_id: str) -> None:
        self._destroy(self.channels[channel_id], 16)

    def channel(self, endpoint: str) -> FakeChannel:
        return next(c for c in self.channels.values() if c.name.startswith(endpoint + "-"))

    def members(self) -> list[set[str]]:
        """Channel names (without suffix) in each bridge, as the lab tests compare them."""
        return [{self.channels[c].name.rsplit("-", 1)[0] for c in b}
                for b in self.bridges.values()]

    async def _op(self, *op: Any) -> None:
        self.ops.append(op)
        self.arrived[op[0]] = self.arrived.get(op[0], 0) + 1
        gate = self.gates.get(op[0])
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)

    def _leave(self, chan: FakeChannel) -> None:
        if chan.bridge is not None:
            self.bridges[chan.bridge].discard(chan.id)
            self.emit("ChannelLeftBridge", chan, bridge={"id": chan.bridge})
            chan.bridge = None

    def _destroy(self, chan: FakeChannel, cause: int) -> None:
        if chan.id not in self.channels:
            return
        self._leave(chan)
        del self.channels[chan.id]
        if chan.stasis:
            self.emit("StasisEnd", chan)
        self.emit("ChannelDestroyed", chan, cause=cause)

    # -- ControlPbx -----------------------------------------------------------------------------
    def app(self, link: str) -> str:
        return "astcti"

    def on_event(self, event: dict[str, Any]) -> bool:
        return False

    async def create(self, link: str, endpoint: str, channel_id: str, *,
                     originator: str | None = None,
                     variables: dict[str, str] | None = None) -> None:
        await self._op("create", endpoint, channel_id, originator, dict(variables or {}))
        linkedid = self.channels[originator].linkedid if originator in self.channels \
            else channel_id
        chan = FakeChannel(channel_id, f"{endpoint}-{next(_counter):08x}", linkedid,
                           (variables or {}).get("CALLERID(num)", ""))
        self.channels[channel_id] = chan
        self.emit("ChannelCreated", chan)
        self.emit("StasisStart", chan, args=["leg"])

    async def originate(self, link: str, endpoint: str, channel_id: str, *, app_args: str,
                        timeout: int, variables: dict[str, str] | None = None,
                        caller_id: str | None = None) -> None:
        await self._op("originate", endpoint, channel_id, app_args, dict(variables or {}))
        chan = FakeChannel(channel_id, f"{endpoint}-{next(_counter):08x}", channel_id, "",
                           stasis=False, app_args=app_args)
        self.channels[channel_id] = chan
        self.emit("ChannelCreated", chan)
        chan.state = "Ringing"
        self.emit("ChannelStateChange", chan)

    def start_originate(self, link: str, endpoint: str, channel_id: str, *, app_args: str,
                        timeout: int, variables: dict[str, str] | None = None,
                        caller_id: str | None = None) -> Awaitable[None]:
        return self.originate(link, endpoint, channel_id, app_args=app_args, timeout=timeout,
                              variables=variables, caller_id=caller_id)

    async def dial(self, link: str, channel_id: str, caller: str | None, timeout: int) -> None:
        await self._op("dial", channel_id, caller)
        chan = self.channels[channel_id]
        self.emit("Dial", None, peer=chan.snapshot(), dialstatus="")
        chan.state = "Ringing"
        self.emit("ChannelStateChange", chan)
        self.emit("Dial", None, peer=chan.snapshot(), dialstatus="RINGING")

    async def hangup(self, link: str, channel_id: str, reason: str = "normal") -> None:
        await self._op("hangup", channel_id)
        chan = self.channels.get(channel_id)
        if chan is not None:
            self._destroy(chan, 16)

    async def answer(self, link: str, channel_id: str) -> None:
        await self._op("answer", channel_id)
        chan = self.channels[channel_id]
        chan.state = "Up"
        self.emit("ChannelStateChange", chan)

    async def ring(self, link: str, channel_id: str) -> None:
        await self._op("ring", channel_id)

    async def dtmf(self, link: str, channel_id: str, digits: str) -> None:
        await self._op("dtmf", channel_id, digits)

    async def set_var(self, link: str, channel_id: str, variable: str, value: str) -> None:
        await self._op("set_var", channel_id, variable, value)
        if channel_id in self.channels:
            self.channels[channel_id].vars[variable] = value

    async def get_var(self, link: str, channel_id: str, variable: str) -> str:
        return self.channels[channel_id].vars.get(variable, "")

    async def new_bridge(self, link: str, bridge_id: str) -> None:
        await self._op("new_bridge", bridge_id)
        self.bridges[bridge_id] = set()

    async def add(self, link: str, bridge_id: str, *channel_ids: str) -> None:
        await self._op("add", bridge_id, *channel_ids)
        for channel_id in channel_ids:
            chan = self.channels[channel_id]
            self._leave(chan)
            chan.bridge = bridge_id
            self.bridges[bridge_id].add(channel_id)
            self.emit("ChannelEnteredBridge", chan, bridge={"id": bridge_id})

    async def remove(self, link: str, bridge_id: str, channel_id: str) -> None:
        await self._op("remove", bridge_id, channel_id)
        chan = self.channels.get(channel_id)
        if chan is not None and chan.bridge == bridge_id:
            self._leave(chan)

    async def moh(self, link: str, bridge_id: str, on: bool) -> None:
        await self._op("moh", bridge_id, on)

    async def destroy(self, link: str, bridge_id: str) -> None:
        await self._op("destroy", bridge_id)
        for channel_id in list(self.bridges.get(bridge_id, ())):
            self._leave(self.channels[channel_id])
        if self.bridges.pop(bridge_id, None) is not None:
            self.emit("BridgeDestroyed", None, bridge={"id": bridge_id})

    async def list(self, link: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        bridges = [{"id": b, "bridge_class": "stasis", "name": "astcti", "channels": sorted(m)}
                   for b, m in self.bridges.items()]
        return bridges, [c.snapshot() for c in self.channels.values()]

    async def dialplan_exists(self, link: str, context: str, destination: str) -> bool:
        await self._op("dialplan_exists", destination)
        return self.exists

    async def notify_talk(self, link: str, resource: str) -> str:
        await self._op("notify_talk", resource)
        if self.talk_answers:
            for chan in list(self.channels.values()):
                if chan.name.startswith(f"PJSIP/{resource}-") and chan.state == "Ringing":
                    self.answer_phone(chan.id)
        return "SUCCESS"


class Rig:
    """Tracker + call control + fake Asterisk, wired as the daemon wires them."""

    running: list[asyncio.Future[None]] = []  # event feeders, stopped after each test

    def __init__(self, extensions: tuple[str, ...] = ("101", "102", "103")) -> None:
        self.pbx = FakePbx()
        self.directory = Directory()
        self.link = SimpleNamespace(name=LINK, up=True, config=SimpleNamespace(app="astcti"),
                                    endpoints={f"PJSIP/{e}" for e in extensions})

        async def subscribe(sources: Any) -> None:
            return None

        self.link.subscribe = subscribe
        self.link.unsubscribe = subscribe
        self.directory.add_link(self.link)  # type: ignore[arg-type]
        self.tracker = Tracker(self.directory.resolve)
        self.control = CallControl(self.tracker, self.directory,
                                   pbx=self.pbx)  # type: ignore[arg-type]
        self.cti: list[CtiEvent] = []

    async def start(self, *answer_modes: tuple[str, str]) -> Rig:
        for ext in self.link.endpoints:
            await self.directory.add(ext.split("/")[1], "PJSIP")
        await self.directory.link_up(self.link)  # type: ignore[arg-type]
        for ext, mode in answer_modes:
            self.directory.set_answer(ext, mode)
        self._feeder = asyncio.ensure_future(self._feed())
        Rig.running.append(self._feeder)
        return self

    def _deliver(self) -> None:
        while self.pbx.events:
            event = self.pbx.events.pop(0)
            self.cti += self.tracker.handle(LINK, event)
            self.control.on_event(self.link, event)  # type: ignore[arg-type]

    async def _feed(self) -> None:
        """Events reach astcti while requests are in flight, as from a real Asterisk."""
        while True:
            self._deliver()
            await asyncio.sleep(0.001)

    async def pump(self) -> None:
        """Deliver the queued ARI events and let the reactions run, until all is quiet."""
        for _ in range(500):
            self._deliver()
            await asyncio.sleep(0)
            if not self.pbx.events and not self.control.reactions._tasks:
                return
            if self.control.reactions._tasks:
                await asyncio.wait(list(self.control.reactions._tasks), timeout=0.05)
        raise AssertionError("the fake PBX never went quiet")

    def names(self, extension: str, callid: str | None = None) -> list[str]:
        return [e.NAME for e in self.cti if e.extension == extension and
                (callid is None or e.callid == callid)]

    def events(self, name: str, extension: str) -> list[CtiEvent]:
        return [e for e in self.cti if e.NAME == name and e.extension == extension]

    async def customer_with(self, ext: str) -> tuple[str, str, str]:
        """A customer's call to `ext` through astcti (Stasis dial), answered: (callid,
        customer channel, agent channel)."""
        customer = self.pbx.phone_call("PJSIP/trunk", "0912345678", app_args=f"dial,PJSIP/{ext},30",
                                       state="Ring")
        await self.pump()
        agent = self.pbx.channel(f"PJSIP/{ext}")
        self.pbx.answer_phone(agent.id)
        await self.pump()
        return customer.linkedid, customer.id, agent.id
