"""Stasis reactions: what call control does when Asterisk reports something about its calls.

`on_event` runs in the event stream (after the tracker): it only notes facts (a leg answered,
a leg gone) and spawns the reactions, each under the locks of the channels it touches:
- a call entered the app from the dialplan (`Stasis(app,dial,DIALSTRING,TIMEOUT)`): dial the
  callee for it (`channels/create` + `dial`, `originator=` the caller: one linkedid = callid);
- a dialled leg rings / fails: ring the caller / end what waited for it with the same cause;
- a dialled leg answered: bridge it with the leg it was dialled for, or into the conversation
  it was dialled into; the agent's makecall leg entered Stasis on answer: dial the far end;
- a leg hung up: release what depended on it (the clean-up rule);
- a leg `answer` re-offered was refused busy (the tracker parked its connection): offer the
  call again (`ControlServices.offer_again`), the caller ringing on;
- Asterisk put an unknown channel in one of astcti's bridges (a phone's own transfer): adopt it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from astcti.cti.control.bridging import FAR_RING_SECONDS, Bridging
from astcti.cti.control.model import Leg
from astcti.cti.control.phones import AnswerMode, answer_mode
from astcti.cti.control.services import ControlServices
from astcti.cti.control.takeover import Takeover
from astcti.cti.tracker import Plan
from astcti.pbx.ari import AriError, AriEvent
from astcti.pbx.dialplan import AGENT_SHIM_CONTEXT

log = logging.getLogger(__name__)

#: Q.850 cause -> ARI hangup reason, to give a caller the far end's outcome.
HANGUP_REASONS = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "normal",
                  1: "unallocated", 3: "unallocated", 20: "unallocated", 34: "congestion",
                  38: "congestion", 41: "congestion", 42: "congestion"}
DIAL_REASONS = {"BUSY": "busy", "NOANSWER": "no_answer", "CHANUNAVAIL": "congestion",
                "CONGESTION": "congestion"}


class StasisReactions:
    """React to the ARI events of astcti's own calls."""

    def __init__(self, bridging: Bridging, services: ControlServices) -> None:
        self.b = bridging
        self.state = bridging.state
        self.pbx = bridging.pbx
        self.services = services
        self.takeover: Takeover | None = None  # calls astcti takes over (Stasis on demand)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- dispatch -------------------------------------------------------------------------------
    def on_event(self, link: str, event: AriEvent) -> None:
        kind = event.get("type")
        if self.pbx.on_event(event) or kind == "ChannelUserevent":
            return
        channel = event.get("channel") or {}
        leg = self.state.leg(link, channel.get("id", ""))
        if kind == "StasisStart":
            args = event.get("args") or []
            if args and args[0] == "dial":
                # known at once: its hangup may come before the reaction runs
                self.state.add_leg(Leg(link, channel["id"], channel["name"],
                                       number=(channel.get("caller") or {}).get("number", ""),
                                       up=channel.get("state") == "Up"))
                self._spawn(link, [channel["id"]], self._dial_request, link, event)
            elif args and args[0] == "adopt" and self.takeover is not None:
                self.takeover.arrived(link, channel, args[1] if len(args) > 1 else "")
            elif args and args[0] == "agent" and leg is not None and leg.then is not None:
                leg.mark_up()  # an originated leg enters Stasis when answered
                self._spawn(link, [leg.id], self.services.agent_answered, leg)
        elif kind == "Dial":
            peer = self.state.leg(link, (event.get("peer") or {}).get("id", ""))
            if peer is not None and self.b.tracker.is_parked(link, peer.id):
                self._offer_again(peer)  # refused busy: not the caller's failure
            elif peer is not None and peer.peer is not None:
                self._spawn(link, [peer.id, peer.peer], self._dial_progress, peer, event)
        elif kind == "ChannelStateChange" and leg is not None:
            state = channel.get("state")
            if state == "Up" and leg.mark_up() and leg.then is None:
                self._spawn(link, [leg.id], self._answered, leg)
            elif state == "Ringing" and leg.then is not None and leg.extension:
                self._talk_on_ring(leg)
        elif kind == "ChannelEnteredBridge":
            conv = self.state.conv(link, (event.get("bridge") or {}).get("id", ""))
            if conv is not None and channel.get("id") not in conv.members and \
                    channel.get("id") != conv.holder:
                self._spawn(link, [*conv.members], self._adopt, conv, channel)
        elif kind in ("BridgeBlindTransfer", "BridgeAttendedTransfer") and \
                event.get("result") == "Success":
            ids = [(event.get(k) or {}).get("id", "")
                   for k in ("channel", "transferer_first_leg", "transferer_second_leg")]
            mine = [i for i in ids if self.state.leg(link, i) is not None]
            if mine:
                self._spawn(link, mine, self._transferred_away, link, mine)
        elif kind in ("ChannelDestroyed", "StasisEnd") and leg is not None and not leg.gone:
            # StasisEnd carries no hangup cause: enough for an answered leg only (a Local
            # channel swapped in by Asterisk raises no ChannelDestroyed to the app)
            if kind == "ChannelDestroyed" or leg.up:
                leg.gone = True
                leg.answered.set()  # nobody waits for an answer any more
                if kind == "ChannelDestroyed":
                    leg.ended.set()
                if self.b.tracker.is_parked(link, leg.id):
                    self._offer_again(leg)
                self._spawn(link, [leg.id], self._gone, leg, event)

    def _offer_again(self, leg: Leg) -> None:
        """A re-offered leg was refused busy (the tracker keeps its connection): offer the
        call again (once per leg, whichever of Dial and ChannelDestroyed tells first)."""
        if leg.replaced:
            return
        leg.replaced = True  # its end is not the call's end
        self._spawn(leg.link, [], self.services.offer_again, leg)

    def _spawn(self, link: str, seeds: list[str], handler: Any, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._run(link, seeds, handler, args))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _run(self, link: str, seeds: list[str], handler: Any, args: tuple[Any, ...]
                   ) -> None:
        async with self.b.locked(link, seeds.copy):
            await handler(*args)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call control task failed", exc_info=task.exception())

    async def idle(self) -> None:
        """Wait for the reactions in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- reactions ------------------------------------------------------------------------------
    async def _dial_request(self, link: str, event: AriEvent) -> None:
        """A call entered the app from the dialplan: dial the callee for it."""
        channel = event["channel"]
        args = event.get("args") or []
        caller = self.state.leg(link, channel["id"])
        if caller is None or caller.gone:
            return  # hung up before astcti got to it
        dialstring = args[1] if len(args) > 1 else ""
        try:
            timeout = int(args[2]) if len(args) > 2 and args[2] else FAR_RING_SECONDS
        except ValueError:
            timeout = FAR_RING_SECONDS
        if not dialstring:
            log.warning("Stasis(%s,dial) without a dial string from %s: hanging up",
                        self.pbx.app(link), channel["name"])
            await self.pbx.hangup(link, caller.id, "unallocated")
            return
        caller_id = channel.get("caller") or {}
        variables = {"CONNECTEDLINE(num,i)": caller_id.get("number", ""),
                     "CONNECTEDLINE(name,i)": caller_id.get("name", ""),
                     "ASTCTI_DIRECT": "1"}
        # a queue's call comes through the member shim (Local/<ext>@astcti-agent-...;2)
        from_queue = f"@{AGENT_SHIM_CONTEXT}-" in channel.get("name", "")
        try:
            callee = await self.b.create(link, dialstring, originator=caller.id,
                                         variables=variables, peer=caller.id,
                                         dialled_for=caller.id,
                                         plan=Plan(via_queue=True) if from_queue else None)
            try:
                await self.pbx.dial(link, callee.id, caller.id, timeout)
            except BaseException:
                await self.pbx.hangup(link, callee.id)
                raise
        except Exception as exc:
            log.info("cannot dial %s for %s: %s", dialstring, channel["name"], exc)
            await self.pbx.hangup(link, caller.id, "congestion")

    async def _dial_progress(self, leg: Leg, event: AriEvent) -> None:
        link = leg.link
        peer = self.state.leg(link, leg.peer) if leg.peer else None
        status = event.get("dialstatus", "")
        if peer is None or peer.gone or leg.gone:
            return
        if status == "RINGING" and not peer.up:
            await self.pbx.ring(link, peer.id)
        elif status in DIAL_REASONS and not leg.replaced:
            await self.pbx.hangup(link, leg.id)
            await self._far_failed(leg, DIAL_REASONS[status])

    async def _far_failed(self, leg: Leg, reason: str) -> None:
        """The leg dialled for `leg.peer` will not answer: end what waited for it."""
        link = leg.link
        target = self.state.incoming_to(link, leg.id)
        if target is not None:  # makecall, consultation, single-step transfer/conference
            self.state.unexpect(target, leg.id)
            await self.b.settle(target)
        elif leg.peer is not None and not self.state.gone(link, leg.peer) and \
                (link, leg.peer) not in self.state.member_of:  # a call from the dialplan
            await self.pbx.hangup(link, leg.peer, reason)

    async def _answered(self, leg: Leg) -> None:
        """A leg astcti dialled answered: bridge it with the leg it was dialled for."""
        link = leg.link
        if leg.gone or leg.peer is None:
            return
        peer = self.state.leg(link, leg.peer)
        target = self.state.incoming_to(link, leg.id)
        if peer is None or peer.gone:
            if target is None or not (target.members or target.holder):
                await self.pbx.hangup(link, leg.id)
                return
        try:
            if target is not None:  # dialled into a conversation (consult/transfer/...)
                if target.moh and target.holder is None:
                    await self.pbx.moh(link, target.bridge_id, False)
                    target.moh = False
                await self.b.join(target, leg.id)
            elif peer is not None and (link, peer.id) in self.state.member_of:
                await self.b.join(self.state.member_of[(link, peer.id)], leg.id)
            elif peer is not None:  # a call from the dialplan: answer the caller, bridge
                if not peer.up:
                    await self.pbx.answer(link, peer.id)
                    peer.mark_up()
                await self.b.bridge(link, [peer.id, leg.id])
        except AriError as exc:
            log.info("bridging %s with %s failed: %s", leg.name, peer.name if peer else "-",
                     exc.message)
            await self.pbx.hangup(link, leg.id)
            if peer is not None and target is None:
                await self.pbx.hangup(link, peer.id)

    async def _gone(self, leg: Leg, event: AriEvent) -> None:
        """A leg hung up: release what depended on it, leave Asterisk clean."""
        link = leg.link
        for other in self.state.dialled_for(link, leg.id):
            if not other.up and not other.gone and self.state.incoming_to(link, other.id) is None:
                await self.pbx.hangup(link, other.id)  # stop ringing a callee whose caller left
        if leg.peer is not None and not leg.up and not leg.replaced:
            cause = event.get("cause")
            reason = HANGUP_REASONS.get(int(cause), "normal") if cause is not None else "normal"
            await self._far_failed(leg, reason)
        member = self.state.member_of.pop((link, leg.id), None)
        if member is not None:
            member.members.discard(leg.id)
            await self.b.settle(member)
        for conv in self.state.held_by(link, leg.id):
            self.state.set_holder(conv, None)  # the agent left its held call: release it
            for channel_id in list(conv.members):
                await self.pbx.hangup(link, channel_id)
            await self.b.settle(conv)
        while (conv := self.state.incoming_to(link, leg.id)) is not None:
            self.state.unexpect(conv, leg.id)
            await self.b.settle(conv)
        self.state.forget_leg(link, leg.id)

    async def _transferred_away(self, link: str, channel_ids: list[str]) -> None:
        """A phone transferred its call itself (REFER): Asterisk put a Local channel in the
        transferring leg's place and left that leg in astcti's app, out of any bridge. It has
        nothing more to do: hang it up (the phone's transfer completes), unless it still has
        another call of astcti's."""
        for channel_id in channel_ids:
            member = self.state.member_of.pop((link, channel_id), None)
            if member is not None:
                member.members.discard(channel_id)
            if not self.state.calls_of(link, channel_id) and not self.state.gone(link, channel_id):
                await self.pbx.hangup(link, channel_id)

    async def _adopt(self, conv: Any, channel: dict[str, Any]) -> None:
        """Asterisk put a channel in one of astcti's bridges (e.g. the Local channel of a
        phone's own transfer): it is a party of that conversation from now on."""
        link = conv.link
        if (link, channel["id"]) in self.state.member_of or channel.get("id") in conv.incoming:
            return
        leg = self.state.leg(link, channel["id"])
        if leg is None:
            leg = self.state.add_leg(Leg(link, channel["id"], channel.get("name", ""),
                                         number=(channel.get("caller") or {}).get("number", ""),
                                         up=True))
        conv.members.add(leg.id)
        self.state.member_of[(link, leg.id)] = conv

    def _talk_on_ring(self, leg: Leg) -> None:
        """makecall to a phone that honours NOTIFY talk: tell it to go off-hook as it rings
        (auto-answer headers do the same for phones that honour them)."""
        ext = self.b.directory.extensions.get(leg.extension or "")
        if ext is None or ext.technology != "PJSIP" or \
                answer_mode(ext, self.services.default_answer) is not AnswerMode.TALK:
            return
        task = asyncio.get_running_loop().create_task(self.pbx.notify_talk(leg.link, ext.number))
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._done)
