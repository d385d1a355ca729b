"""The call control requests: makecall, answer, hangup, hold, retrieve, consultation, reconnect,
alternate, transfer, conference, dtmf; and `converse`, which makes channels already in Stasis a
conversation of astcti's (the entry point for calls taken over from the dialplan).

Each request finds the extension's connection in the tracker, takes the locks of the channels
it may touch, checks the state again inside them, then moves channels between bridges through
`Bridging`. An agent keeps ONE leg: a consultation holds the first call's bridge and puts the
agent's same channel in a new bridge with the consulted party.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from astcti.cti.control.bridging import Bridging
from astcti.cti.control.model import NOT_CONTROLLABLE, ControlError, Conversation, FarCall, Leg
from astcti.cti.control.pbx import new_id
from astcti.cti.control.phones import (
    TALK_WAIT_SECONDS, AnswerMode, answer_mode, auto_answer_variables, not_supported,
)
from astcti.cti.model import Connection, ConnectionState, Direction
from astcti.cti.tracker import Intent, Plan
from astcti.pbx.ari import AriError
from astcti.pbx.dialplan import CALLID_VAR, USERDATA_VAR

if TYPE_CHECKING:
    from astcti.cti.control.takeover import Takeover
    from astcti.cti.directory import Extension
    from astcti.cti.userdata import UserDataService

log = logging.getLogger(__name__)

DTMF_RE = re.compile(r"^[0-9*#A-Da-d,wW]{1,64}$")
AGENT_RING_SECONDS = 30
#: How long a re-offered call keeps being offered again while the phone answers busy.
REOFFER_WINDOW = 8.0
#: How long to wait for a cancelled leg to be gone before the phone is offered the call again.
OFFER_GONE_WAIT = 2.0


class ControlServices:
    """Request logic on top of the bridge/leg model."""

    def __init__(self, bridging: Bridging) -> None:
        self.b = bridging
        self.state = bridging.state
        self.pbx = bridging.pbx
        self.tracker = bridging.tracker
        self.directory = bridging.directory
        self.userdata: UserDataService | None = None  # set by the daemon: data follows calls
        self.takeover: Takeover | None = None  # calls astcti does not own (Stasis on demand)
        self.default_answer = AnswerMode.REOFFER.value

    # -- lookups --------------------------------------------------------------------------------
    def connection(self, extension: str, callid: str) -> Connection:
        conn = self.tracker.find(extension, callid)
        if conn is None:
            raise ControlError("invalid call id", 404)
        return conn

    async def _own(self, extension: str, callid: str) -> None:
        """Stasis on demand: an answered call that is not in astcti's app (FreePBX's Dial, a
        queue, a plain Dial route) is taken over before the request goes on."""
        conn = self.connection(extension, callid)
        if self.takeover is None or conn.state is not ConnectionState.CONNECTED or \
                self.takeover.owns(conn) or self.b.conv_for(conn) is not None:
            return
        await self.takeover.take(conn)

    def _active(self, extension: str, callid: str) -> tuple[Connection, Conversation]:
        """The extension's connection to this call, talking in one of astcti's bridges."""
        conn = self.connection(extension, callid)
        if conn.state is not ConnectionState.CONNECTED:
            raise ControlError("no active call", 409)
        conv = self.b.conv_for(conn)
        if conv is None:
            if self.state.leg(conn.link, conn.channel_id) is None:
                raise ControlError(NOT_CONTROLLABLE, 409)
            raise ControlError("no active call", 409)
        if conn.channel_id not in conv.members:
            raise ControlError("no active call", 409)
        return conn, conv

    def _held(self, extension: str, callid: str) -> tuple[Connection, Conversation]:
        conn = self.connection(extension, callid)
        conv = self.b.conv_for(conn)
        if conn.state is not ConnectionState.HELD or conv is None or \
                conv.holder != conn.channel_id:
            raise ControlError("no held call", 409)
        return conn, conv

    def _pair(self, extension: str, activecallid: str, heldcallid: str
              ) -> tuple[Connection, Conversation, Connection, Conversation]:
        active, aconv = self._active(extension, activecallid)
        held, hconv = self._held(extension, heldcallid)
        if active.channel_id != held.channel_id and aconv is hconv:
            raise ControlError("no held call", 409)
        return active, aconv, held, hconv

    def _seeds(self, extension: str, *callids: str):
        """The channels of the extension's connections to these calls (lock seeds), found
        again each time the lock helper asks."""
        def seeds() -> list[str]:
            out = []
            for callid in callids:
                conn = self.tracker.find(extension, callid)
                if conn is not None:
                    out.append(conn.channel_id)
            return out
        return seeds

    def _link_of_extension(self, extension: str) -> str:
        link = self.directory.link_of(extension)
        if link is None or not link.up:
            raise ControlError(self.directory.why_unserved(extension),
                               404 if extension not in self.directory.extensions else 409)
        return link.name

    async def _check_destination(self, link: str, destination: str) -> None:
        if not self.b.endpoint_for(link, destination)[1]:
            return
        if not await self.pbx.dialplan_exists(link, self.b.dial_context, destination):
            raise ControlError("destination not obtainable", 404)

    # -- makecall -------------------------------------------------------------------------------
    async def makecall(self, extension: str, destination: str,
                       userdata: dict[str, Any] | None = None) -> str:
        """Ring the agent's phone (auto-answer headers; one originate request) and, when it
        answers, dial the destination from it. Returns the new callid."""
        link = self._link_of_extension(extension)
        await self._check_destination(link, destination)
        ext = self.directory.extensions[extension]
        variables = auto_answer_variables(ext)
        variables["CONNECTEDLINE(num,i)"] = destination
        agent_id = new_id()
        # the originate first, then what astcti notes of it: no event of the new channel can
        # be read before the await below, and the phone's INVITE leaves ~40 us sooner
        sent = self.pbx.start_originate(link, ext.endpoint, agent_id, app_args="agent",
                                        timeout=AGENT_RING_SECONDS, variables=variables)
        try:
            self.tracker.plan(link, agent_id, Plan(outgoing=True, called=destination,
                                                   userdata=userdata or {}))
            self.state.add_leg(Leg(link, agent_id, ext.endpoint, number=extension,
                                   then=FarCall(destination, extension, userdata or {}),
                                   extension=extension))
            await sent
        except BaseException:
            self.state.forget_leg(link, agent_id)
            self.tracker.forget_plan(link, agent_id)
            raise
        return agent_id  # originated without originator: its linkedid is its own id

    async def agent_answered(self, leg: Leg) -> None:
        """The agent's phone answered its makecall leg (now in Stasis): bridge it, dial the
        destination with the agent's caller id."""
        far_call, leg.then = leg.then, None
        if far_call is None or leg.gone:
            return
        link = leg.link
        conv = await self.b.bridge(link, [leg.id])
        extra = {USERDATA_VAR: json.dumps(far_call.userdata)} if far_call.userdata else {}
        try:
            await self.b.far_into(conv, far_call.destination, originator=leg.id, peer=leg.id,
                                  caller_number=far_call.extension, extra=extra)
        except Exception as exc:
            log.info("makecall from %s to %s failed: %s", far_call.extension,
                     far_call.destination, exc)
            self.state.clear_incoming(conv)
            await self.b.settle(conv)

    # -- answer ---------------------------------------------------------------------------------
    async def answer(self, extension: str, callid: str) -> None:
        """Take the ringing phone off-hook: NOTIFY talk where the phone honours it, else ring
        it again with auto-answer headers; refused for phones answered by hand."""
        conn = self.connection(extension, callid)
        link = conn.link
        leg = self.state.leg(link, conn.channel_id)
        if conn.direction is Direction.INCOMING and conn.state is ConnectionState.CONNECTED \
                and leg is not None and leg.answering:
            return  # another client's `answer` took it off-hook a moment ago: done
        if conn.direction is not Direction.INCOMING or conn.state is not ConnectionState.ALERTING:
            raise ControlError("no alerting call", 409)
        ext = self.directory.extensions[extension]
        mode = answer_mode(ext, self.default_answer)
        if mode is AnswerMode.NONE:
            raise ControlError(not_supported(ext), 409)
        if leg is None and self.takeover is not None:
            await self._answer_foreign(conn, ext, mode)
            return
        if leg is None or leg.peer is None:
            raise ControlError(NOT_CONTROLLABLE, 409)
        async with self.b.locked(link, lambda: [leg.id]):
            if leg.answering or leg.replaced or leg.up:
                return  # already being answered (one leg, whoever asked first)
            if leg.gone:
                raise ControlError("no alerting call", 409)
            leg.answering = True
        if mode is AnswerMode.TALK and ext.technology == "PJSIP":
            status = await self.pbx.notify_talk(link, ext.number)
            if status == "SUCCESS":
                try:
                    await asyncio.wait_for(leg.answered.wait(), TALK_WAIT_SECONDS)
                    return
                except TimeoutError:
                    log.info("%s did not go off-hook on NOTIFY talk: re-offering", extension)
            else:
                log.info("NOTIFY talk to %s: %s: re-offering", extension, status)
        async with self.b.locked(link, lambda: [leg.id]):
            if leg.up or leg.gone or leg.replaced:
                return
            await self._reoffer(leg, ext)

    async def _answer_foreign(self, conn: Connection, ext: Extension, mode: AnswerMode) -> None:
        """`answer` for a call astcti does not own (FreePBX's Dial rings the phone): NOTIFY
        talk needs no takeover; else the caller is taken over and the phone rung again."""
        assert self.takeover is not None
        if mode is AnswerMode.TALK and ext.technology == "PJSIP":
            status = await self.pbx.notify_talk(conn.link, ext.number)
            if status == "SUCCESS":
                deadline = asyncio.get_running_loop().time() + TALK_WAIT_SECONDS
                while asyncio.get_running_loop().time() < deadline:
                    if conn.state is not ConnectionState.ALERTING:
                        return  # off-hook (or gone): the call goes on in FreePBX's Dial
                    await asyncio.sleep(0.05)
                log.info("%s did not go off-hook on NOTIFY talk: re-offering", ext.number)
            else:
                log.info("NOTIFY talk to %s: %s: re-offering", ext.number, status)
        if conn.state is ConnectionState.ALERTING:
            await self.takeover.reoffer(conn, ext)

    async def _reoffer(self, leg: Leg, ext) -> None:
        """Cancel the ringing leg and call the same phone again with auto-answer headers,
        once the cancelled leg is gone (a phone taking one call at a time is free again)."""
        link = leg.link
        variables = auto_answer_variables(ext)
        peer = self.state.leg(link, leg.peer) if leg.peer else None
        if peer is not None:
            variables["CONNECTEDLINE(num,i)"] = peer.number
        target = self.state.incoming_to(link, leg.id)
        # a call from the dialplan may be offered again if the phone refuses it busy (the
        # caller keeps ringing); one dialled into a conversation fails as any dialled leg
        new = await self.b.create(link, ext.endpoint, originator=leg.peer, variables=variables,
                                  plan=Plan(replaces=leg.id, retry=target is None),
                                  peer=leg.peer, dialled_for=leg.peer)
        leg.replaced = True
        new.answering = True  # it IS the answer: a later `answer` finds the call answered
        new.extension = ext.number
        new.offers = leg.offers + 1
        new.first_offer = leg.first_offer or asyncio.get_running_loop().time()
        if target is not None:  # it was being dialled into a conversation: the new one is
            self.state.unexpect(target, leg.id)
            self.state.expect(target, new.id)
        if not leg.gone:
            await self.pbx.hangup(link, leg.id)
        try:
            await asyncio.wait_for(leg.ended.wait(), OFFER_GONE_WAIT)
        except TimeoutError:
            log.info("%s still up %.0f s after it was hung up: offering %s again anyway",
                     leg.name, OFFER_GONE_WAIT, ext.number)
        try:
            await self.pbx.dial(link, new.id, leg.peer, AGENT_RING_SECONDS)
        except BaseException:
            await self.pbx.hangup(link, new.id)
            raise

    async def offer_again(self, leg: Leg) -> None:
        """The phone refused a re-offered call busy: a single-line phone may still be ending
        the ring it was just cancelled (486 until the 487 is acknowledged). Offer the call
        again, a little later each time, while the caller rings on; after REOFFER_WINDOW
        seconds the caller gets busy, as from any busy phone."""
        link = leg.link
        if not leg.gone:
            await self.pbx.hangup(link, leg.id)
        try:
            await asyncio.wait_for(leg.ended.wait(), OFFER_GONE_WAIT)
        except TimeoutError:
            pass
        ext = self.directory.extensions.get(leg.extension or "")
        elapsed = asyncio.get_running_loop().time() - leg.first_offer
        peer_id = leg.peer or ""
        if ext is not None and elapsed < REOFFER_WINDOW:
            await asyncio.sleep(min(0.1 * 2 ** leg.offers, 1.0))
        async with self.b.locked(link, lambda: [peer_id]):
            peer = self.state.leg(link, peer_id)
            if peer is None or peer.gone:
                return  # the caller left: its end clears the connection
            if ext is None or elapsed >= REOFFER_WINDOW:
                log.info("%s refused the call offered again %d times: the caller gets busy",
                         leg.name, leg.offers)
                await self.pbx.hangup(link, peer_id, "busy")
                return
            log.info("%s refused the call offered again (busy): offering it again",
                     leg.name)
            try:
                await self._reoffer(leg, ext)
            except Exception as exc:
                log.info("offering the call to %s again failed: %s", ext.number, exc)
                await self.pbx.hangup(link, peer_id, "busy")

    # -- one call -------------------------------------------------------------------------------
    async def hangup(self, extension: str, callid: str) -> None:
        """Clear the extension's connection. A channel with another call (a consultation)
        stays: only this call's conversation is released."""
        conn = self.connection(extension, callid)
        link = conn.link
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn = self.connection(extension, callid)
            conv = self.b.conv_for(conn)
            if conv is None or not self.b.other_calls(link, conn.channel_id, conv):
                await self.pbx.hangup(link, conn.channel_id)
                return
            for channel_id in [*self.b.others(conv, conn.channel_id), *conv.incoming]:
                await self.pbx.hangup(link, channel_id)
            await self.b.leave(conv, conn.channel_id)

    async def hold(self, extension: str, callid: str) -> None:
        await self._own(extension, callid)
        link = self.connection(extension, callid).link
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            await self.b.hold(conn, conv)

    async def retrieve(self, extension: str, callid: str) -> None:
        """Take back a held call; a call the agent is talking in meanwhile is held first
        (one audio path per phone)."""
        link = self.connection(extension, callid).link
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._held(extension, callid)
            await self._hold_current(conn)
            await self.b.retrieve(conn, conv)

    async def _hold_current(self, conn: Connection) -> None:
        current = self.state.member_of.get((conn.link, conn.channel_id))
        if current is None:
            return
        line = self.tracker.line(conn.link, conn.channel_id, current.bridge_id)
        if line is not None and line.key != conn.key:
            await self.b.hold(line, current)

    async def dtmf(self, extension: str, callid: str, digits: str) -> None:
        if not DTMF_RE.match(digits):
            raise ControlError("invalid DTMF digits: use 0-9 * # A-D, and , or w to pause", 400)
        await self._own(extension, callid)
        link = self.connection(extension, callid).link
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            others = self.b.others(conv, conn.channel_id)
            if not others:
                raise ControlError("no active call", 409)
            for channel_id in others:  # the far leg's device gets them (RFC 4733 or INFO)
                await self.pbx.dtmf(link, channel_id, digits.upper().replace("W", ","))

    async def drop_party(self, extension: str, callid: str, party: str) -> None:
        """Release one party (by its number) of the extension's conversation."""
        link = self.connection(extension, callid).link
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            target = next((m for m in sorted(conv.members)
                           if m != conn.channel_id and self.b.number(link, m) == party), None)
            if target is None:
                raise ControlError(f"no party {party} in the call", 404)
            await self.pbx.hangup(link, target)

    # -- two calls at one phone -----------------------------------------------------------------
    async def consultation(self, extension: str, callid: str, destination: str,
                           userdata: dict[str, Any] | None = None) -> str:
        """Hold the call and call `destination` from the agent's SAME leg: the phone gets no
        second call. The consultation is a call of its own (new callid)."""
        link = self.connection(extension, callid).link
        await self._check_destination(link, destination)
        await self._own(extension, callid)
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            # a consultation starts with the held call's user data, the request's keys winning
            data = {**(self.userdata.get(callid) if self.userdata else {}), **(userdata or {})}
            await self.b.hold(conn, conv)
            new_callid = new_id()
            try:
                await self._consult(conn, extension, destination, new_callid, data)
            except Exception:
                await self.b.retrieve(conn, conv)
                raise
        if self.userdata is not None:
            self.userdata.hand_over(callid, new_callid)
        return new_callid

    async def _consult(self, conn: Connection, extension: str, destination: str,
                       callid: str, data: dict[str, Any]) -> None:
        link, agent = conn.link, conn.channel_id
        bridge = await self.b.bridge(link, [])
        self.tracker.open_line(link, agent, bridge.bridge_id,
                               Plan(outgoing=True, called=destination, userdata=data,
                                    callid=callid))
        try:
            await self.b.join(bridge, agent)
            extra = {CALLID_VAR: callid, **({USERDATA_VAR: json.dumps(data)} if data else {})}
            # the consulted party's leg id is the new call's id (no originator: own linkedid;
            # Asterisk merges linkedids in the bridge, so the id is also kept in a variable)
            await self.b.far_into(bridge, destination, originator=None, peer=agent,
                                  caller_number=extension, channel_id=callid,
                                  dialled_for=self.tracker.line_key(agent, callid),
                                  extra=extra)
        except Exception:
            self.state.clear_incoming(bridge)
            await self.b.leave(bridge, agent)
            raise

    async def reconnect(self, extension: str, activecallid: str, heldcallid: str) -> None:
        """Release the consultation and go back to the held call."""
        link = self.connection(extension, heldcallid).link
        async with self.b.locked(link, self._seeds(extension, activecallid, heldcallid)):
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            for channel_id in [*self.b.others(aconv, active.channel_id), *aconv.incoming]:
                await self.pbx.hangup(link, channel_id)
            line = self.tracker.line(link, active.channel_id, aconv.bridge_id)
            if line is not None and line.key != held.key:
                self.tracker.mark_leave(link, line.key, "normal")
            await self.b.retrieve(held, hconv)

    async def alternate(self, extension: str, activecallid: str, heldcallid: str) -> None:
        link = self.connection(extension, heldcallid).link
        async with self.b.locked(link, self._seeds(extension, activecallid, heldcallid)):
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            await self.b.hold(active, aconv)
            await self.b.retrieve(held, hconv)

    async def transfer(self, extension: str, activecallid: str, heldcallid: str) -> None:
        """Join the held call's parties with the consulted ones; release the agent."""
        link = self.connection(extension, heldcallid).link
        async with self.b.locked(link, self._seeds(extension, activecallid, heldcallid)):
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            moving = self.b.others(aconv, active.channel_id)
            staying = list(hconv.members)
            parties = [self.b.number(link, c) for c in staying + moving]
            keys = list(dict.fromkeys([held.key, active.key,
                                       *self.b.watched(link, staying + moving)]))
            self.tracker.expect(link, held.channel_id,
                                Intent("transferred", extension, keys, parties))
            if hconv.moh:
                await self.pbx.moh(link, hconv.bridge_id, False)
                hconv.moh = False
            self.state.set_holder(hconv, None)
            aconv.closing = True  # emptied on purpose: no clean-up rule on the way
            for channel_id in moving:
                await self.b.join(hconv, channel_id)
            for channel_id in dict.fromkeys([held.channel_id, active.channel_id]):
                await self.pbx.hangup(link, channel_id)
            await self.b.discard(aconv)

    async def conference(self, extension: str, activecallid: str, heldcallid: str) -> None:
        """All talk: the consulted parties join the held call, the agent returns to it."""
        link = self.connection(extension, heldcallid).link
        async with self.b.locked(link, self._seeds(extension, activecallid, heldcallid)):
            active, aconv, held, hconv = self._pair(extension, activecallid, heldcallid)
            moving = self.b.others(aconv, active.channel_id)
            staying = list(hconv.members)
            parties = [extension] + [self.b.number(link, c) for c in staying + moving]
            one_leg = active.channel_id == held.channel_id
            self.tracker.expect(link, held.channel_id, Intent(
                "conferenced", extension,
                [held.key, *self.b.watched(link, staying + moving)], parties,
                ends=[active.key] if one_leg else []))
            aconv.closing = True  # emptied on purpose: no clean-up rule on the way
            for channel_id in moving:
                await self.b.join(hconv, channel_id)
            await self.b.retrieve(held, hconv)  # the agent's one leg moves back
            if not one_leg:  # a consultation from another leg of the agent's phone
                await self.pbx.hangup(link, active.channel_id)
            await self.b.discard(aconv)

    # -- single step ----------------------------------------------------------------------------
    async def transfer_blind(self, extension: str, callid: str, destination: str) -> None:
        """Single-step transfer: the other party is dialled to `destination`; the agent leaves."""
        link = self.connection(extension, callid).link
        await self._check_destination(link, destination)
        await self._own(extension, callid)
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            others = self.b.others(conv, conn.channel_id)
            if not others:
                raise ControlError("no active call", 409)
            await self.b.far_into(conv, destination, originator=others[0], peer=others[0],
                                  caller_number=extension)
            conv.recall = extension
            intent = Intent("transferred", extension,
                            [conn.key, *self.b.watched(link, others)],
                            [self.b.number(link, c) for c in others] + [destination])
            await self.pbx.moh(link, conv.bridge_id, True)
            conv.moh = True
            if self.b.other_calls(link, conn.channel_id, conv):
                self.tracker.expect(link, conn.key, intent)
                await self.b.leave(conv, conn.channel_id, "transferred")
                return
            self.tracker.expect(link, conn.channel_id, intent)
            conv.members.discard(conn.channel_id)
            if self.state.member_of.get((link, conn.channel_id)) is conv:
                del self.state.member_of[(link, conn.channel_id)]
            await self.pbx.remove(link, conv.bridge_id, conn.channel_id)
            await self.pbx.hangup(link, conn.channel_id)

    async def conference_add(self, extension: str, callid: str, destination: str) -> None:
        """Single-step conference: dial `destination` into the extension's call."""
        link = self.connection(extension, callid).link
        await self._check_destination(link, destination)
        await self._own(extension, callid)
        async with self.b.locked(link, self._seeds(extension, callid)):
            conn, conv = self._active(extension, callid)
            members = list(conv.members)
            far_id = new_id()
            self.tracker.expect(link, far_id, Intent(
                "conferenced", extension,
                [conn.key, *self.b.watched(link, [m for m in members if m != conn.channel_id])],
                [self.b.number(link, c) for c in members] + [destination]))
            await self.b.far_into(conv, destination, originator=conn.channel_id,
                                  peer=conn.channel_id, caller_number=extension,
                                  channel_id=far_id)

    # -- taking calls over ----------------------------------------------------------------------
    async def converse(self, link: str, channels: list[dict[str, Any]]) -> Conversation:
        """Make channels already in astcti's Stasis app (answered) one conversation: the entry
        point for calls moved into Stasis from the dialplan (e.g. an AMI Redirect to an adopt
        context). Afterwards every request works on them as on astcti's own calls."""
        ids = [c["id"] for c in channels]
        for channel in channels:
            if self.state.leg(link, channel["id"]) is None:
                self.state.add_leg(Leg(link, channel["id"], channel.get("name", ""),
                                       number=(channel.get("caller") or {}).get("number", ""),
                                       up=channel.get("state") == "Up"))
        async with self.b.locked(link, lambda: ids):
            for channel_id in ids:
                leg = self.state.leg(link, channel_id)
                if leg is not None and not leg.up:
                    await self.pbx.answer(link, channel_id)
                    leg.mark_up()
            try:
                return await self.b.bridge(link, ids)
            except AriError as exc:
                raise ControlError(f"cannot bridge the call: {exc.message}", 409) from None
