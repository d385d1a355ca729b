"""The bridge/leg model in motion: what happens in Asterisk when a conversation gains, holds,
moves or loses a party. Shared by the request services and the Stasis reactions.

Every operation here runs with the locks of the channels it touches held by its caller
(`Bridging.locked`), and tells the tracker beforehand what ARI will not say (who holds, which
call a moved channel's bridge belongs to, a line that ends without its channel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from astcti.cti.control.model import CallState, Conversation, Held, Leg, Locks, Verdict
from astcti.cti.control.pbx import ControlPbx, new_id
from astcti.cti.model import Connection
from astcti.pbx.dialplan import HOLDING_VAR

if TYPE_CHECKING:
    from astcti.cti.directory import Directory
    from astcti.cti.tracker import Tracker

log = logging.getLogger(__name__)

FAR_RING_SECONDS = 60


class LockedCall:
    """The locks of the seeds' channels and of every conversation they take part in. When a
    lock had to be waited for, the conversations may have changed meanwhile: they are read
    again and, if they grew, the wider set is taken. Taken free (the usual case), nothing ran in
    between and the first reading stands."""

    __slots__ = ("_state", "_locks", "_link", "_seeds", "_held")

    def __init__(self, state: CallState, locks: Locks, link: str,
                 seeds: Callable[[], Iterable[str]]) -> None:
        self._state = state
        self._locks = locks
        self._link = link
        self._seeds = seeds
        self._held: Held | None = None

    async def __aenter__(self) -> None:
        state, link = self._state, self._link
        keys = state.closure(link, self._seeds())
        while True:
            held = self._locks.hold([f"{link}:{k}" for k in keys])
            await held.__aenter__()
            if held.waited:
                again = state.closure(link, self._seeds())
                if not again <= keys:
                    held.release()
                    keys |= again
                    continue
            self._held = held
            return

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None


class Bridging:
    """Operations on conversations (mixing bridges) and their legs."""

    def __init__(self, state: CallState, pbx: ControlPbx, tracker: Tracker,
                 directory: Directory) -> None:
        self.state = state
        self.pbx = pbx
        self.tracker = tracker
        self.directory = directory
        self.locks = Locks()
        self.dial_context = "from-internal"

    # -- locking --------------------------------------------------------------------------------
    def locked(self, link: str, seeds: Callable[[], Iterable[str]]) -> LockedCall:
        """`async with bridging.locked(link, seeds):` the locks of every channel the work may
        touch (see :class:`LockedCall`)."""
        return LockedCall(self.state, self.locks, link, seeds)

    # -- lookups --------------------------------------------------------------------------------
    def endpoint_for(self, link: str, destination: str) -> tuple[str, bool]:
        """The dial string of a destination; True when it goes through the dialplan."""
        ext = self.directory.extensions.get(destination)
        if ext is not None and self.directory.serving.get(destination) == link:
            return ext.endpoint, False
        return f"Local/{destination}@{self.dial_context}", True

    def number(self, link: str, channel_id: str) -> str:
        """Who a party is, for events: its watched extension, else its caller id."""
        for conn in self.tracker.lines_of(link, channel_id):
            return conn.extension
        leg = self.state.leg(link, channel_id)
        return leg.number if leg else ""

    def watched(self, link: str, channel_ids: Iterable[str]) -> list[str]:
        """Tracker keys of the watched connections among these channels (their own calls)."""
        return [c for c in channel_ids if (link, c) in self.tracker.connections]

    def others(self, conv: Conversation, channel_id: str) -> list[str]:
        return [m for m in conv.members if m != channel_id]

    def conv_for(self, conn: Connection) -> Conversation | None:
        """The conversation a connection's call lives in."""
        conv = self.state.conv(conn.link, conn.bridge)
        if conv is not None and (conn.channel_id in conv.members or
                                 conv.holder == conn.channel_id):
            return conv
        calls = self.state.calls_of(conn.link, conn.channel_id)
        if len(calls) == 1 and len(self.tracker.lines_of(conn.link, conn.channel_id)) <= 1:
            return calls[0]
        return None

    def other_calls(self, link: str, channel_id: str, conv: Conversation) -> bool:
        """Does the channel take part in another conversation (so it must not be hung up)?"""
        return any(c is not conv for c in self.state.calls_of(link, channel_id))

    # -- building -------------------------------------------------------------------------------
    async def bridge(self, link: str, members: list[str]) -> Conversation:
        bridge_id = new_id()
        await self.pbx.new_bridge(link, bridge_id)
        conv = self.state.add_conv(Conversation(link, bridge_id))
        left = [self._enter(conv, channel_id) for channel_id in members]
        if members:  # (a consultation's bridge starts empty: the far end is dialled into it)
            await self.pbx.add(link, bridge_id, *members)  # one request for all of them
        for old in left:
            if old is not None:
                await self.settle(old)
        return conv

    async def join(self, conv: Conversation, channel_id: str) -> None:
        """Put the channel in the conversation (one move out of the bridge it was in; that
        conversation then settles)."""
        old = self._enter(conv, channel_id)
        await self.pbx.add(conv.link, conv.bridge_id, channel_id)
        if old is not None:
            await self.settle(old)

    def _enter(self, conv: Conversation, channel_id: str) -> Conversation | None:
        """The model's side of a join; returns the conversation the channel leaves, if any."""
        link = conv.link
        old = self.state.member_of.get((link, channel_id))
        if old is conv:
            old = None
        elif old is not None:
            old.members.discard(channel_id)
        if channel_id in conv.incoming:
            conv.recall = None  # the destination took the call: no recall any more
        conv.members.add(channel_id)
        self.state.unexpect(conv, channel_id)
        if conv.holder == channel_id:
            self.state.set_holder(conv, None)
        self.state.member_of[(link, channel_id)] = conv
        return old

    async def leave(self, conv: Conversation, channel_id: str, cause: str = "normal") -> None:
        """A channel that goes on with another call leaves this conversation for good: its
        line here clears, the channel is not hung up."""
        link = conv.link
        line = self.tracker.line(link, channel_id, conv.bridge_id)
        if line is not None:
            self.tracker.mark_leave(link, line.key, cause)
        conv.members.discard(channel_id)
        if self.state.member_of.get((link, channel_id)) is conv:
            del self.state.member_of[(link, channel_id)]
        if conv.holder == channel_id:
            self.state.set_holder(conv, None)
            await self.note_holding(link, channel_id)
        else:
            await self.pbx.remove(link, conv.bridge_id, channel_id)
        await self.settle(conv)

    async def settle(self, conv: Conversation) -> None:
        """Apply the clean-up rule (model.Conversation.verdict)."""
        if conv.closing:
            return
        link = conv.link
        alive = [m for m in conv.members if not self.state.gone(link, m)]
        holder_alive = conv.holder is not None and not self.state.gone(link, conv.holder)
        verdict = conv.verdict(alive, holder_alive)
        if verdict is Verdict.KEEP:
            return
        if verdict is Verdict.RECALL:
            # a single-step transfer's destination did not take the call: ring the agent
            # again rather than drop the customer (once; a second failure ends the call)
            agent, conv.recall = conv.recall, None
            assert agent is not None
            try:
                await self.far_into(conv, agent, originator=alive[0], peer=alive[0],
                                    caller_number=self.number(link, alive[0]))
                log.info("transfer not answered: recalling %s", agent)
                return
            except Exception as exc:
                log.info("recall of %s failed: %s", agent, exc)
        conv.closing = True
        holder = conv.holder if holder_alive else None
        for channel_id in [*alive, *([holder] if holder else [])]:
            if self.other_calls(link, channel_id, conv):
                line = self.tracker.line(link, channel_id, conv.bridge_id)
                if line is not None:
                    self.tracker.mark_leave(link, line.key, "normal")
                if channel_id in conv.members:
                    await self.pbx.remove(link, conv.bridge_id, channel_id)
            else:
                await self.pbx.hangup(link, channel_id)
        self.state.drop_conv(conv)
        for channel_id in list(conv.members):
            if self.state.member_of.get((link, channel_id)) is conv:
                del self.state.member_of[(link, channel_id)]
        self.state.set_holder(conv, None)
        if holder:
            await self.note_holding(link, holder)
        await self.pbx.destroy(link, conv.bridge_id)

    async def discard(self, conv: Conversation) -> None:
        """Forget and destroy a conversation whose parties were all moved elsewhere."""
        link = conv.link
        self.state.drop_conv(conv)
        for key in [k for k, c in self.state.member_of.items() if c is conv]:
            del self.state.member_of[key]
        await self.pbx.destroy(link, conv.bridge_id)

    # -- hold -----------------------------------------------------------------------------------
    async def hold(self, conn: Connection, conv: Conversation) -> None:
        """The agent's channel leaves (it hears silence); the others hear music on hold."""
        link, channel_id = conn.link, conn.channel_id
        self.tracker.mark_hold(link, conn.key)
        conv.members.discard(channel_id)
        self.state.set_holder(conv, channel_id)
        if self.state.member_of.get((link, channel_id)) is conv:
            del self.state.member_of[(link, channel_id)]
        await self.pbx.remove(link, conv.bridge_id, channel_id)
        await self.pbx.moh(link, conv.bridge_id, True)
        conv.moh = True
        await self.note_holding(link, channel_id)

    async def retrieve(self, conn: Connection, conv: Conversation) -> None:
        if conv.moh:
            await self.pbx.moh(conn.link, conv.bridge_id, False)
            conv.moh = False
        self.state.set_holder(conv, None)
        await self.join(conv, conn.channel_id)
        await self.note_holding(conn.link, conn.channel_id)

    async def note_holding(self, link: str, channel_id: str) -> None:
        """Remember in Asterisk which calls the channel holds, so a restarted astcti knows."""
        held = ",".join(sorted(c.bridge_id for c in self.state.held_by(link, channel_id)))
        await self.pbx.set_var(link, channel_id, HOLDING_VAR, held)

    # -- new parties ----------------------------------------------------------------------------
    async def far_into(self, conv: Conversation, destination: str, *, originator: str | None,
                       peer: str, caller_number: str, channel_id: str | None = None,
                       dialled_for: str | None = None,
                       extra: dict[str, str] | None = None) -> Leg:
        """Dial `destination` into the conversation (it joins on answer). `originator` shares
        its call id with the new leg; without one the leg starts a call of its own."""
        link = conv.link
        endpoint, via_dialplan = self.endpoint_for(link, destination)
        variables = {"CONNECTEDLINE(num,i)": caller_number, "CALLERID(num)": caller_number,
                     **(extra or {})}
        if via_dialplan:
            variables["ASTCTI_DIRECT"] = "1"
        far = await self.create(link, endpoint, originator=originator, variables=variables,
                                peer=peer, number=destination, channel_id=channel_id,
                                dialled_for=dialled_for or peer)
        self.state.expect(conv, far.id)
        try:
            await self.pbx.dial(link, far.id, None, FAR_RING_SECONDS)
        except BaseException:
            self.state.unexpect(conv, far.id)
            await self.pbx.hangup(link, far.id)
            raise
        return far

    async def create(self, link: str, endpoint: str, *, originator: str | None = None,
                     variables: dict[str, str] | None = None, plan=None, number: str = "",
                     peer: str | None = None, channel_id: str | None = None,
                     dialled_for: str | None = None) -> Leg:
        """A leg in Stasis from birth, known to the tracker before its first event."""
        channel_id = channel_id or new_id()
        if plan is not None:
            self.tracker.plan(link, channel_id, plan)
        leg = self.state.add_leg(Leg(link, channel_id, endpoint, number=number, peer=peer))
        if dialled_for is not None:
            self.tracker.dialling(link, channel_id, dialled_for)
        try:
            await self.pbx.create(link, endpoint, channel_id, originator=originator,
                                  variables=variables)
        except BaseException:
            self.state.forget_leg(link, channel_id)
            self.tracker.forget_plan(link, channel_id)
            await self.pbx.hangup(link, channel_id)
            raise
        return leg
